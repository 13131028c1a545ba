"""The keeper of a group of near-duplicates: by default the original, the picture the
others were made from (``choose_keeper``, ``original_key``); else the largest, the oldest,
the newest, or the files matching a glob.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..catalog import Row
from . import matching
from .verification import Verifier


def keeper_order(row: Row) -> tuple:
    """Sort key: the keeper first (highest resolution, then largest file, then oldest)."""
    return (-(row.width or 0) * (row.height or 0), -row.size, row.mtime, row.id)


KEEP_RULES = ("original", "largest", "oldest", "newest")  # or a glob of paths to keep


#: Formats a camera or phone writes first, before any re-encoding (lower is more original).
FORMAT_RANK = {"DNG": 0, "RAW": 0, "HEIF": 1, "HEIC": 1, "PNG": 1, "TIFF": 1, "BMP": 1,
               "WEBP": 2, "JPEG": 2, "MPO": 2, "AVIF": 2, "GIF": 3}


def choose_keeper(rows: list[Row], keep: str, verifier: Verifier | None
                  ) -> tuple[list[Row], str]:
    """The group's rows, keeper first, and the reason for the keeper.

    ``original`` (the default; needs a verifier, else ``largest``): the picture the others
    were made from. In order: the one that contains the most of the others (a crop is
    contained in its original), the most detail for the content they share (a downscale loses
    it), colour (a grey copy loses it), the oldest file, an original format (RAW, HEIC, PNG
    before JPEG). ``largest``: the most pixels, then bytes, then oldest. ``oldest``,
    ``newest``: by modification time. Anything else is a glob: a path (or name) matching it
    is kept first, then ``original``."""
    import fnmatch

    if keep == "largest":
        return sorted(rows, key=keeper_order), "largest"
    if keep in ("oldest", "newest"):
        sign = 1 if keep == "oldest" else -1
        return sorted(rows, key=lambda r: (sign * r.mtime, r.id)), keep
    if keep not in KEEP_RULES:
        def wanted(r: Row) -> bool:
            return fnmatch.fnmatch(r.path, keep) or fnmatch.fnmatch(Path(r.path).name, keep)

        chosen = [r for r in rows if wanted(r)]
        if chosen and len(chosen) < len(rows):
            rest = [r for r in rows if not wanted(r)]
            ranked, _ = choose_keeper(chosen, "original", verifier)
            return ranked + choose_keeper(rest, "original", verifier)[0], f"matches {keep}"
        keep = "original"
    if verifier is None:
        return sorted(rows, key=keeper_order), "largest"
    if len(rows) == 1:
        return rows, "original"
    keys = {r.id: original_key(r, [o for o in rows if o.id != r.id], verifier) for r in rows}
    ranked = sorted(rows, key=lambda r: keys[r.id])
    a, b = keys[ranked[0].id], keys[ranked[1].id]
    why = next(n for n, x, y in zip(_ORIGINAL_REASONS, a, b) if x != y)
    return ranked, "original: " + why


#: r contains another picture when it explains this share of the other's detailed cells: a
#: crop is contained in its original (its whole detail explained), the original is not in the
#: crop. A count, not an average, so that small differences of agreement (a downscale seen at
#: its coarser resolution agrees a little more easily) do not outrank real containment.
CONTAINED = 0.85

_ORIGINAL_REASONS = ("not pasted into another picture", "contains the others", "most detail",
                     "in colour", "oldest", "original format", "first indexed")


def original_key(r: Row, others: list[Row], verifier: Verifier) -> tuple:
    """Sort key of ``original`` (smaller first), in _ORIGINAL_REASONS' order. r holds
    another as pasted when the other's outline leaves a seam in r (matching.seam: a
    screenshot, a collage), which rules r out first; else r contains
    another when it explains CONTAINED of the other's detail, the other's corners fall within
    r (EDGE) and it covers at most 1 - LARGER of r: a crop of r. Two full copies (a re-save,
    a 10 degree turn that loses its corners) contain neither."""
    contains, pasted, detail = 0, 0, 0.0
    fr = verifier.features(r.id)
    for o in others:
        m = verifier.match(r.id, o.id)  # a: r, b: o
        fp, xy = matching.footprint(m), matching.corners(m)
        if (m.detail_b >= CONTAINED and fp is not None and fp.mean() <= 1 - LARGER
                and ((xy > -EDGE) & (xy < 1 + EDGE)).all()):
            if fr is not None and matching.seam(fr, m):
                pasted += 1
            else:
                contains += 1
        detail += _detail_ratio(m, r, o, verifier)
    n = max(1, len(others))
    colour = verifier.colourful(r.id)
    return (pasted > 0, -contains, -round(detail / n, 1), -int(colour),
            round(r.mtime, 3), FORMAT_RANK.get((r.format or "").upper(), 4), r.id)


def why_original(rows: list[Row], verifier: Verifier) -> str:
    """Why ``rows[0]``, the original, wins over the others: the reason it beats the closest
    contender, each compared with it alone (matches already made)."""
    first, why = rows[0], len(_ORIGINAL_REASONS) - 1
    latest = 0
    for o in rows[1:]:
        a, b = original_key(first, [o], verifier), original_key(o, [first], verifier)
        at = next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), why)
        latest = max(latest, at)
    return _ORIGINAL_REASONS[latest]


EDGE = 0.02  # how far outside a picture's frame a contained corner may fall
LARGER = 0.1  # a picture contains another only when it holds at least this much more area
SAME_DETAIL = 0.05  # detail ratios (log of pixels per pixel) closer to 0 than this are noise


def _detail_ratio(m, r: Row, o: Row, verifier: Verifier) -> float:
    """log of how many of r's pixels stand for one of o's in what they share (> 0: r holds
    more detail), from the map between their unit frames (their pictures less uniform
    margins) and the pixels of those frames; 0 within SAME_DETAIL (the fit's noise)."""
    fr, fo = verifier.features(r.id), verifier.features(o.id)
    if m.homography is None or fr is None or fo is None or not (
            r.width and r.height and o.width and o.height):
        return 0.0
    h = np.array(m.homography).reshape(3, 3)  # o's unit frame -> r's
    unit_scale = abs(np.linalg.det(h[:2, :2] / h[2, 2]))  # area of o's frame in r's
    ratio = float(0.5 * np.log(max(unit_scale, 1e-6) * r.width * r.height * fr.content
                               / (o.width * o.height * fo.content)))
    return 0.0 if abs(ratio) < SAME_DETAIL else ratio
