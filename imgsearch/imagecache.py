"""The image cache: every image's resized pixels, so training and re-encoding never decode again.

A flat file of uint8 records, one per catalog id: record ``i`` is the (S, S, 3) RGB image of
catalog row ``i`` at byte offset ``i * S * S * 3``. Writes are positional (``os.pwrite``), reads
are a read-only memory map, and the file grows as ids grow.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .errors import CacheMiss
from .store import faults


class ImageCache:
    """Fixed-size RGB records keyed by catalog id."""

    def __init__(self, path: Path | str, size: int):
        self.path = Path(path)
        self.size = size
        self.shape = (size, size, 3)
        self.record = size * size * 3
        self._fd: int | None = None

    def _writer(self) -> int:
        if self._fd is None:
            with faults(self.path, "opening the image cache"):
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    def write(self, id_: int, pixels: np.ndarray | bytes) -> None:
        """Store the pixels of catalog row ``id_``."""
        data = pixels if isinstance(pixels, bytes) else np.ascontiguousarray(pixels).tobytes()
        if len(data) != self.record:
            raise ValueError(f"expected {self.record} bytes for {self.shape}, got {len(data)}")
        fd = self._writer()
        with faults(self.path, "caching the pixels of new photos"):
            if os.pwrite(fd, data, id_ * self.record) != len(data):
                raise OSError(errno.ENOSPC, "short write")

    def flush(self) -> None:
        if self._fd is not None:
            with faults(self.path, "caching the pixels of new photos"):
                os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __len__(self) -> int:
        """Number of record slots in the file (ids 0 .. len - 1)."""
        return self.path.stat().st_size // self.record if self.path.exists() else 0

    def read(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The pixels of rows ``ids`` as a (N, S, S, 3) uint8 array."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return np.empty((0, *self.shape), np.uint8)
        n = len(self)
        if ids.max() >= n or ids.min() < 0:
            bad = int(ids.max()) if ids.max() >= n else int(ids.min())
            raise CacheMiss(f"image cache {self.path} has no pixels for catalog id {bad}; "
                            "re-run `imgsearch index PHOTOS_DIR --rebuild` to ingest the "
                            "folder anew")
        mm = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(n, *self.shape))
        return np.array(mm[ids])

    def batches(self, ids: Sequence[int], batch_size: int = 1024) -> Iterator[np.ndarray]:
        """Yield the pixels of ``ids`` in order, ``batch_size`` images at a time."""
        for start in range(0, len(ids), batch_size):
            yield self.read(ids[start : start + batch_size])


class CachedImages:
    """The cached pixels of some catalog ids, handed out by position (for training)."""

    def __init__(self, cache: ImageCache, ids: Sequence[int]):
        self.cache = cache
        self.ids = np.asarray(ids, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, positions: np.ndarray) -> np.ndarray:
        return self.cache.read(np.sort(self.ids[positions]))
