"""Durability in one place: atomic file replacement, the writer lock, the commit lock, staged
method folders (stage, commit, recover), and the state of a built method.

- **Atomic replace** (``replacing``): write a temporary file beside the target, fsync it, rename
  it over the target (atomic on POSIX). A crash leaves the old file or the new one.
- **Writer lock** (``WriteLock``): one writer per index, an ``flock`` on ``INDEX/lock`` holding
  the writer's pid. The kernel releases it the moment its holder dies, however it dies, so a
  lock file left by a killed run is stale by construction and the next writer takes it over.
- **Commit lock** (``CommitLock``): readers share it while they load a method's files; a writer
  takes it alone for the two renames that swap a new method folder in.
- **Staged folders** (``stage``, ``commit``, ``recover``): every new version of a method folder
  is written in ``.NAME.staging`` and swapped in whole, so a reader or a killed run only ever
  sees the old folder or the new one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import DiskFull, IndexFileError, IndexLocked, NotReadable, NotWritable

LOG = logging.getLogger(__name__)

_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


# -- faults of the machine ----------------------------------------------------------------
def machine_fault(e: BaseException, path, doing: str, need: int | None = None,
                  reading: bool = False) -> Exception | None:
    """The domain error for an OS, SQLite or FAISS error that says the disk is full or a path
    may not be written (or read), or None if it says something else."""
    text = str(e).lower()
    code = getattr(e, "errno", None)
    if code in _FULL or "no space left" in text or "disk is full" in text or "quota" in text:
        return DiskFull(path, doing, need)
    denied = code in _DENIED or "permission denied" in text or "read-only" in text or (
        "readonly database" in text)
    if denied:
        if reading:
            return NotReadable(path, getattr(e, "strerror", None) or "permission denied")
        return NotWritable(path, doing, getattr(e, "strerror", None) or "permission denied")
    return None


@contextmanager
def faults(path, doing: str, need: int | None = None, reading: bool = False) -> Iterator[None]:
    """Turn a full disk or a denied path met inside the block into one clear domain error."""
    try:
        yield
    except (OSError, RuntimeError, sqlite3.Error) as e:
        fault = machine_fault(e, path, doing, need, reading)
        if fault is None:
            raise
        raise fault from e


# -- atomic replace ------------------------------------------------------------------------
@contextmanager
def replacing(path: Path | str, need: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.
    A full disk or a folder that may not be written becomes DiskFull or NotWritable (``need``:
    the bytes the file will take, for the message)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with faults(path, f"writing {path.name}", need):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path | str, data: object) -> None:
    """Write ``data`` as JSON, atomically."""
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))


def fsync_dir(path: Path) -> None:
    """Make the renames inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the writer lock -----------------------------------------------------------------------
LOCK_FILE = "lock"


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
        self.path = Path(root) / LOCK_FILE
        self.command = command
        self.wait = wait
        self.fd: int | None = None

    def acquire(self) -> WriteLock:
        with faults(self.path.parent, "taking the index's write lock"):
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
        with faults(self.path, "taking the index's write lock"):
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


# -- the commit lock -----------------------------------------------------------------------
class CommitLock:
    """Readers (shared) load a method's files while no writer (exclusive) swaps them."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @contextmanager
    def _held(self, shared: bool) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def shared(self):
        """Hold while loading a method's state, embedder and index: they match each other."""
        return self._held(shared=True)

    def exclusive(self):
        """Hold while renaming method folders."""
        return self._held(shared=False)


# -- staged method folders -----------------------------------------------------------------
def swap_dirs(live: Path) -> tuple[Path, Path]:
    """(staging folder, previous folder moved aside) of a swap of the folder ``live``."""
    return live.with_name(f".{live.name}.staging"), live.with_name(f".{live.name}.old")


def reader_dir(live: Path) -> Path:
    """The folder a reader loads from: ``live``, or, if a writer was killed between the two
    renames of a swap (no live folder), the complete build ``recover`` will put in place: the
    staged one if it is complete (has its state), else the old one. Call holding the commit
    lock, shared."""
    if live.exists():
        return live
    staged, old = swap_dirs(live)
    if (staged / MethodState.FILE).is_file():
        return staged
    return old if old.is_dir() else live


def stage(live: Path, keep: tuple[str, ...] = ()) -> Path:
    """An empty folder to build the next version of ``live`` in, holding hard links to the
    live files named in ``keep`` (never modified in place, so linking is safe)."""
    path = swap_dirs(live)[0]
    shutil.rmtree(path, ignore_errors=True)
    with faults(path, "preparing a new build of a method"):
        path.mkdir(parents=True)
        for name in keep:
            if (live / name).is_file():
                os.link(live / name, path / name)
    return path


def commit(live: Path, staged: Path, lock: CommitLock) -> None:
    """Swap a fully built staging folder in as ``live``."""
    old = swap_dirs(live)[1]
    with lock.exclusive():
        shutil.rmtree(old, ignore_errors=True)
        if live.exists():
            os.rename(live, old)
        os.rename(staged, live)
        fsync_dir(live.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover(root: Path, lives: list[Path], lock: CommitLock) -> list[str]:
    """Finish or undo what a killed writer left under ``root``; call holding the write lock.

    For each folder in ``lives``: a staging folder that was complete when the run died is
    swapped in; an incomplete one is discarded, and the previous folder put back if it was
    moved aside. Temporary files of interrupted atomic writes are removed. Returns what it did.
    """
    done = []
    with lock.exclusive():  # a reader may be loading from a staged or old folder
        for live in lives:
            staged, old = swap_dirs(live)
            source = reader_dir(live)  # what readers use now becomes the live folder
            if source != live:
                os.rename(source, live)
                done.append(f"{live.name}: finished swapping in the new build"
                             if source == staged else f"{live.name}: restored the previous build")
            for leftover in (staged, old):
                if leftover.exists():
                    shutil.rmtree(leftover, ignore_errors=True)
                    done.append(f"{live.name}: removed unfinished {leftover.name}")
    for tmp in Path(root).rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        done.append(f"removed temporary file {tmp.name}")
    for line in done:
        LOG.info("recovered %s: %s", root, line)
    return done


# -- the state of a built method -----------------------------------------------------------
def from_known(cls, data: dict):
    """The dataclass ``cls`` from a saved dict, keeping the fields it knows: a file written
    by a newer version (with fields this one lacks) still loads, an older one gets defaults."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class MethodState:
    """What ``state.json`` says of a built method: the ingest generation its vector index is
    synced to, and what that index holds."""

    FILE = "state.json"

    gen: int  # every catalog row changed at or before this generation is in the index
    index_type: str  # the vector index's structure (index.py): flat, ivf-flat, ivf-sq8, ivf-pq
    dim: int  # code size
    count: int  # codes held
    selfcheck: float | None = None  # recall@1 of edited held-out copies (selfcheck.py)
    # the code distance calibrated as "a copy" (copies/calibration.py)
    duplicate_threshold: float | None = None
    recall: float | None = None  # recall@10 of the vector index against exact search, at build
    nprobe: int | None = None  # inverted lists a query visits (an inverted file's)
    query_margin: float | None = None  # a query region must beat the whole query by this
    selfcheck_se: float | None = None  # the self-check score's standard error
    # a learned method's training: steps taken, work planned (steps), minutes, the cap, and
    # whether the cap ended it before its work (capped)
    training: dict | None = None
    # a method that draws images back: held-out PSNR (dB) of its reconstructions, and of
    # PCA's at its code size (fitting.reconstruction)
    reconstruction: dict | None = None
    # the self-check's copies (their key) and each held-out image's hits: two methods scored
    # on the same copies are compared pair by pair (selfcheck.paired)
    selfcheck_outcome: dict | None = None
    # other shots of held-out images' scenes found (selfcheck.Shots): score, se, and as above
    shots: dict | None = None

    @classmethod
    def load(cls, folder: Path) -> MethodState | None:
        """The state saved in ``folder``, or None if the method is not built there."""
        path = Path(folder) / cls.FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if "kind" in data and "index_type" not in data:  # written before version 0.2
                data["index_type"] = {"ivf": "ivf-flat"}.get(data["kind"], data["kind"])
                del data["kind"]
            state = from_known(cls, data)
            int(state.gen)
            return state
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise IndexFileError(
                f"{path} is unreadable; re-run `imgsearch index PHOTOS_DIR --rebuild`"
            ) from e

    def save(self, folder: Path) -> None:
        write_json(Path(folder) / self.FILE, asdict(self))

    def as_dict(self) -> dict:
        return asdict(self)
