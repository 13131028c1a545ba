"""Reading one photo file, in a worker: its bytes held still, its content hash, and its
pixels decoded and resized (images.py) unless the hash shows they are cached already, with its
same-picture evidence (copies/evidence.py: local features, from the same bytes in memory).
Both engines (engine.py) run ``read_one``: the local one in a pool of processes
(``read_all``), the Ray one in Ray Data tasks. The results go back to one writer (ingest.py)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator

from .copies import evidence
from .errors import FileChanging, ImageLoadError
from .images import load_image, named

_READ_TRIES = 3  # reads of a file that changes while it is read, before it is recorded failed


def read_stable(path: str) -> tuple[bytes, os.stat_result]:
    """The whole file, read while its size and mtime stayed the same, and its stat.

    A file that changes while it is read (a copy or a sync still writing it) is read again,
    up to _READ_TRIES times; then FileChanging.
    """
    for attempt in range(_READ_TRIES):
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            data = f.read()
            after = os.fstat(f.fileno())
        if len(data) == after.st_size and (before.st_size, before.st_mtime_ns) == (
                after.st_size, after.st_mtime_ns):
            return data, after
        if attempt + 1 < _READ_TRIES:
            time.sleep(0.05 * (attempt + 1))  # give the writer a moment
    raise FileChanging(f"changed while being read ({_READ_TRIES} tries; still being written?); "
                       "the next run reads it again")


def read_one(task: tuple[str, int, dict[str, int], float]) -> dict:
    """Runs in a worker: read, hash, and (unless the hash is already known) decode one file.

    The size and mtime returned are those of the bytes read, so a file changed since the scan
    is recorded as it was hashed and decoded. A file that would not hold still while it was
    read is recorded failed under the scan's size and mtime, which its finished version no
    longer has, so the next run reads it again.
    """
    path, size, known, max_megapixels = task
    out: dict = {"path": path}
    try:
        data, st = read_stable(path)
        out["size"], out["mtime"] = st.st_size, st.st_mtime
        out["hash"] = hashlib.blake2b(data, digest_size=16).hexdigest()
        if out["hash"] in known:
            out["reuse"] = known[out["hash"]]
            return out
        pixels, info = load_image(named(data, path), size, max_megapixels)
        out.update(pixels=pixels.tobytes(), width=info.width, height=info.height,
                   format=info.format, features=evidence.compute(named(data, path)))
    except (ImageLoadError, FileChanging) as e:
        out["error"] = str(e)
    except OSError as e:
        out["error"] = f"{type(e).__name__}: {e.strerror or e}"
    except Exception as e:  # noqa: BLE001 - a worker must never take the run down
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def read_all(tasks: list, workers: int | None, work=read_one) -> Iterator:
    """Yield ``work`` (read_one) of every task, in completion order; in-process when one
    worker is asked for."""
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(tasks) <= 1:
        yield from map(work, tasks)
        return
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    chunk = max(1, min(16, len(tasks) // (workers * 8)))
    with ctx.Pool(workers, initializer=_ignore_sigint) as pool:
        yield from pool.imap_unordered(work, tasks, chunksize=chunk)


def features_one(path: str) -> tuple[str, bytes | None]:
    """Runs in a worker: the packed features of a file indexed without them (or None)."""
    return path, evidence.compute(path)


def features_all(paths: list[str], workers: int | None) -> Iterator[tuple[str, bytes | None]]:
    """``features_one`` of every path, in completion order (read_all's pool)."""
    return read_all(paths, workers, features_one)


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool and keeps what is committed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
