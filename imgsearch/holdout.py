"""Which images of a collection are held out of training to score the methods on it
(selfcheck.py), and which stand beside them as distractors.

Chosen by content, not by catalog id or position: an image's place in the draw comes from a
hash of its content hash, so the same photos are held out whatever their ids, the engine that
ingested them or the order they were found in, and an image added later never changes who
was held out before. Numpy only: the default query reads MIN_IMAGES without importing torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HELD_FRACTION = 0.1  # of the collection held out of training for the self-check
MAX_HELD = 300
MIN_HELD = 40  # held out of a small collection, up to MAX_SHARE of it: enough that two
#                methods' paired lead has a standard error near 0.02 (docs/RESULTS.md, "The
#                default on the same copies")
MAX_SHARE = 0.4
MIN_IMAGES = 20  # below this a collection is too small to hold images out and score
MAX_DISTRACTORS = 5000


def draw(key: str, salt: str = "") -> float:
    """An image's place in the draw, uniform in [0, 1), from its content key (``salt``:
    another draw, for measuring how much the score depends on it)."""
    digest = hashlib.blake2b((salt + key).encode(), digest_size=8).hexdigest()
    return int(digest, 16) / 2.0**64


def by_draw(keys: Sequence[str], salt: str = "") -> list[int]:
    """Positions of ``keys`` in draw order (ties, such as identical files, by position)."""
    return _drawn(keys, salt)[0]


def _drawn(keys: Sequence[str], salt: str) -> tuple[list[int], list[float]]:
    """(draw order, each key's place in the draw): one hash per key."""
    place = [draw(k, salt) for k in keys]
    return sorted(range(len(keys)), key=lambda p: (place[p], p)), place


def split(keys: Sequence[str], fraction: float = HELD_FRACTION, max_held: int = MAX_HELD,
          max_distractors: int = MAX_DISTRACTORS, salt: str = ""
          ) -> tuple[list[int], list[int]]:
    """(held, distractors): sorted positions of ``keys`` (content hashes) held out for the
    self-check, those whose draw falls under ``fraction`` but at least MIN_HELD (at most
    MAX_SHARE of the collection) and at most ``max_held``, and the others, at most
    ``max_distractors`` of them in draw order. Nothing is held out of fewer than MIN_IMAGES
    images."""
    if len(keys) < MIN_IMAGES:
        return [], []
    order, place = _drawn(keys, salt)
    held = [p for p in order if place[p] < fraction][:max_held]
    at_least = max(2, min(MIN_HELD, int(len(keys) * MAX_SHARE), max_held))
    if len(held) < at_least:
        held = order[:at_least]
    chosen = set(held)
    rest = [p for p in order if p not in chosen][:max_distractors]
    return sorted(held), sorted(rest)
