"""One writer per index: an advisory lock on ``INDEX/lock`` that holds the writer's pid.

The lock is a ``flock`` on the file, so the kernel releases it the moment its holder dies,
however it dies: a lock file left by a killed run is stale by construction and the next
writer simply takes it over (logging whose it was). The pid, host and start time written into
the file are there for the message a second writer gets.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from .errors import IndexLocked

LOG = logging.getLogger(__name__)

FILE = "lock"


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"pid {holder['pid']} on {holder.get('host', '?')} (since {since})"


class WriteLock:
    """Exclusive write access to one index folder, as a context manager.

    ``wait`` seconds: 0 refuses at once when another writer holds the lock, a positive number
    waits up to that long, None waits for as long as it takes.
    """

    def __init__(self, root: Path, command: str = "imgsearch", wait: float | None = 0):
        self.path = Path(root) / FILE
        self.command = command
        self.wait = wait
        self.fd: int | None = None

    def acquire(self) -> WriteLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if self.wait is None else time.monotonic() + self.wait
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if deadline is not None and time.monotonic() >= deadline:
                    os.close(fd)
                    raise IndexLocked(
                        f"index {self.path.parent} is being updated by {_describe(holder)} "
                        f"({holder.get('command', '?')}); wait for it to finish, or pass "
                        "--wait to queue behind it"
                    ) from None
                if not announced:
                    LOG.warning("waiting for %s to release %s", _describe(holder), self.path)
                    announced = True
                time.sleep(0.2)
        stale = _holder(fd)
        if stale.get("pid") and stale["pid"] != os.getpid():
            LOG.info("took over the lock left by %s (no longer running)", _describe(stale))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.time(), "command": self.command}).encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)  # an empty file: nobody holds it
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> WriteLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
