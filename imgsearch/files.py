"""Files that must never be seen half-written: write a temporary file beside the target,
fsync it, then rename it over the target (atomic on POSIX)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
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
