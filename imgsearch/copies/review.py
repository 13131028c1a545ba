"""What the user decided while reviewing duplicates: pairs of photos that are *not* duplicates.

``dismiss(root, ids)`` records every pair of a group the user marked "not duplicates";
``dismissed(root)`` reads them back. Pairs are of catalog ids, normalised to (smaller, larger),
and kept in ``INDEX/dismissed.json``: {"pairs": [[a, b], ...]}, sorted, replaced atomically
(store.write_json). An exclusive file lock serialises the read, merge and write, so two
dismissals at once (two requests of the page, the page and a command) both count.
"""

from __future__ import annotations

import json
import logging
from itertools import combinations
from pathlib import Path

from ..errors import ImgSearchError, IndexFileError
from ..store import CommitLock, faults, write_json

LOG = logging.getLogger(__name__)

FILE = "dismissed.json"
LOCK = ".dismissed.lock"


def _read(path: Path) -> set[tuple[int, int]]:
    if not path.is_file():
        return set()
    try:
        with faults(path, "reading the dismissed pairs", reading=True):
            data = json.loads(path.read_text())
        return {(min(int(a), int(b)), max(int(a), int(b))) for a, b in data["pairs"]}
    except (ValueError, KeyError, TypeError) as e:
        raise IndexFileError(f"{path} is unreadable ({e}); delete it to forget the pairs "
                             "marked as not duplicates") from e


def dismissed(root: Path) -> set[tuple[int, int]]:
    """The pairs (a, b), a < b, of catalog ids marked as not duplicates in the index at
    ``root``."""
    return _read(Path(root) / FILE)


def dismiss(root: Path, ids: list[int]) -> int:
    """Record every pair of ``ids`` (a group) as not duplicates; returns how many pairs were
    not recorded before."""
    distinct = sorted({int(i) for i in ids})
    if len(distinct) < 2:
        raise ImgSearchError(f"a group to dismiss has two photos or more, got ids {ids}")
    path = Path(root) / FILE
    with CommitLock(Path(root) / LOCK).exclusive():  # a flock: read, merge, write as one
        pairs = _read(path)
        new = set(combinations(distinct, 2)) - pairs
        if new:
            write_json(path, {"pairs": [list(p) for p in sorted(pairs | new)]})
    LOG.info("dismissed %d new pair(s) among %d photos", len(new), len(distinct))
    return len(new)
