"""The duplicate threshold of a method, calibrated on the collection itself, without labels
(``calibrate``): the distances between edited copies of held-out images and their originals
(what duplicates look like) against each held-out image's distance to its nearest other image
(what distinct photos look like), both from the self-check (selfcheck.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .candidates import neighbours

COPY_QUANTILE = 0.95  # the threshold keeps this share of the calibration copies ...
DISTINCT_QUANTILE = 0.02  # ... unless more than this share of distinct nearest pairs fall in


@dataclass(frozen=True)
class Calibration:
    """A method's duplicate threshold and the evidence for it (L2 distances between codes)."""

    threshold: float
    copy_distances: tuple[float, float, float]  # 50th, 95th percentile, max: copy to original
    distinct_distances: tuple[float, float, float]  # 2nd, 10th, 50th: image to nearest other
    #                                                 (beyond the copies' median)
    copies_within: float  # share of the copies within the threshold
    distinct_within: float  # share of distinct nearest pairs within it

    def as_dict(self) -> dict:
        return asdict(self)


def threshold_between(copies: np.ndarray, nearest: np.ndarray) -> Calibration:
    """The distance that takes in COPY_QUANTILE of the copies, lowered (but not below the
    copies' median) where more than DISTINCT_QUANTILE of the images' nearest neighbours lie
    closer: a wrong group costs the user more than a missed one.

    The nearest-neighbour distances come from the collection itself, so its own duplicates are
    among them; those closer than the copies' median are taken for duplicates and left out of
    the distinct side, else a collection full of duplicates would calibrate to nothing."""
    copies, nearest = np.sort(np.asarray(copies, float)), np.sort(np.asarray(nearest, float))
    want = float(np.quantile(copies, COPY_QUANTILE))
    floor = float(np.quantile(copies, 0.5))
    distinct = nearest[nearest > floor]
    limit = float(np.quantile(distinct, DISTINCT_QUANTILE)) if len(distinct) else math.inf
    t = min(want, max(floor, limit))
    return Calibration(
        t, (floor, want, float(copies[-1])),
        tuple(float(np.quantile(distinct, q)) for q in (0.02, 0.1, 0.5)) if len(distinct)
        else (math.inf,) * 3,
        float(np.mean(copies <= t)), float(np.mean(distinct <= t)) if len(distinct) else 0.0)


def calibrate(check, encode=None, codes: tuple[np.ndarray, np.ndarray] | None = None
              ) -> Calibration:
    """The threshold of the codes ``encode`` makes, from a SelfCheck's held-out images (or of
    the ``codes`` it made already: SelfCheck.codes)."""
    db, q = codes if codes is not None else check.codes(encode)
    usual = check.usual  # the copies by the usual edits (selfcheck.EDITS): what a duplicate
    #                      is calibrated on, however many copies the self-check makes
    copies = np.linalg.norm(q[usual] - db[check.truth[usual]], axis=1)
    # every image's distance to its nearest other, not the held-out images' alone: the 2nd
    # percentile of a few dozen distances is their minimum, and moved the threshold by half
    # from one draw to the next (docs/RESULTS.md, "Self-check noise")
    d, _ = neighbours(db, 2, exact=True)  # itself, then the nearest other
    return threshold_between(copies, d[:, 1])
