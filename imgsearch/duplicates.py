"""Near-duplicates: groups of images that are copies of one picture.

Pairs come from each code's k nearest neighbours in FAISS (exact up to EXACT_MAX codes, a
temporary IVF index above, probing a few lists: near-duplicates sit in the same cell), so the
work grows like N log N and never builds an N x N matrix.

With verification (the default), codes only propose. The candidates are the pairs within
LOOSE times the threshold, and those that the *views* of each image's cached pixels propose
(its quarter turns, its crops, its picture less uniform margins: ``views``), since a turned,
cropped or bordered copy's code lies far from its original's. Each candidate pair is proven
or refused by geometry (matching.py), and groups grow around their originals
(``around_originals``): every member is proven a copy of the group's original, shares a part
of it with every other member, and is explained by it as well as by anything else. Two edits
of one photo (a caption, a crop) are often not copies of each other, so complete linkage over
proven pairs, which would demand it, split most groups of the benchmark (recall 0.63 against
0.84, docs/RESULTS.md).

Without verification, pairs within the threshold are joined by complete linkage: closest
pairs first, and two groups merge only when *every* pair across them is within the threshold,
so a group never chains distinct photos together through the edits between them (single
linkage did: photo A, a crop of it, a crop of that crop ... photo B).

Each group names a keeper: by default the original (``choose_keeper``).

The threshold of a method is calibrated on the collection itself, without labels
(``calibrate``): the distances between edited copies of held-out images and their originals
(what duplicates look like) against each held-out image's distance to its nearest other image
(what distinct photos look like), both from the self-check (selfcheck.py).
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from . import matching
from .catalog import Row
from .errors import ImgSearchError
from .index import list_count
from .store import replacing
from .verification import Verifier

LOG = logging.getLogger(__name__)

EXACT_MAX = 20_000  # above this many codes, neighbours come from a temporary IVF index
NEIGHBOURS = 16  # neighbours looked at per image
NPROBE = 12
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
    copies = np.linalg.norm(q - db[check.truth], axis=1)
    # every image's distance to its nearest other, not the held-out images' alone: the 2nd
    # percentile of a few dozen distances is their minimum, and moved the threshold by half
    # from one draw to the next (docs/RESULTS.md, "Self-check noise")
    d, _ = _neighbours(db, 2, exact=True)  # itself, then the nearest other
    return threshold_between(copies, d[:, 1])


def _neighbours(codes: np.ndarray, k: int, exact: bool | None = None,
                queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distances, positions) of the k nearest ``codes`` (L2) of each code (itself among
    them), or of each of ``queries``: exact up to EXACT_MAX codes, a temporary IVF above."""
    codes = np.ascontiguousarray(codes, np.float32)
    n, d = codes.shape
    k = min(k, n)
    if exact or (exact is None and n <= EXACT_MAX):
        index = faiss.IndexFlatL2(d)
    else:
        nlist = list_count(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        sample = codes[np.random.default_rng(0).permutation(n)[: 50 * nlist]]
        index.train(sample)
        index.nprobe = NPROBE
    index.add(codes)
    d2, pos = index.search(codes if queries is None
                           else np.ascontiguousarray(queries, np.float32), k)
    return np.sqrt(np.maximum(d2, 0)), pos


@dataclass(frozen=True)
class Member:
    id: int
    path: str
    distance: float  # to the group's keeper, L2 between codes
    width: int | None
    height: int | None
    size: int
    inliers: int | None = None  # verified: the matches the map to the keeper rests on
    shared: float | None = None  # verified: the share of this picture the keeper explains
    box: tuple[tuple[float, float], ...] | None = None  # the keeper's frame in this
    #                                                     picture's unit frame (4 corners)


@dataclass(frozen=True)
class Group:
    keeper: Member
    others: tuple[Member, ...]
    keeper_reason: str = "largest"  # why the keeper was chosen

    def as_dict(self) -> dict:
        return {"keeper": asdict(self.keeper), "others": [asdict(m) for m in self.others],
                "keeper_reason": self.keeper_reason}


def pairs_within(codes: np.ndarray, threshold: float, k: int = NEIGHBOURS
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) of the pairs of positions with i < j and ||code_i - code_j|| <=
    threshold, among each code's k nearest; closest first."""
    d, pos = _neighbours(codes, k + 1)
    i = np.repeat(np.arange(len(codes)), pos.shape[1])
    j, dist = pos.reshape(-1), d.reshape(-1)
    keep = (j >= 0) & (j != i) & (dist <= threshold)
    i, j, dist = i[keep], j[keep], dist[keep]
    a, b = np.minimum(i, j), np.maximum(i, j)
    if not len(a):
        return np.empty(0, int), np.empty(0, int), np.empty(0, np.float32)
    (a, b), first = np.unique(np.stack([a, b]), axis=1, return_index=True)
    dist = dist[first]
    order = np.argsort(dist, kind="stable")
    return a[order], b[order], dist[order]


#: The views of an image's cached pixels that propose candidates besides the image itself:
#: its quarter turns (a photo turned on its side), its picture less uniform margins (a
#: bordered copy), and crops of VIEW_CROP of the side at the corners and centre (a crop of
#: it, or it pasted into a larger picture, seen from the other side).
VIEW_CROP = 0.6
VIEW_NEIGHBOURS = 4  # neighbours looked at per view


def views(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(views, owner): the views of (N, S, S, 3) pixels as (V, S, S, 3), and for each the
    position of the image it was taken from."""
    import cv2

    n, s = len(pixels), pixels.shape[1]
    out = [np.rot90(pixels, r, axes=(1, 2)) for r in (1, 2, 3)]
    owner = [np.arange(n)] * 3
    c = round(VIEW_CROP * s)
    for fx, fy in ((0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5)):
        x0, y0 = round((s - c) * fx), round((s - c) * fy)
        crop = pixels[:, y0 : y0 + c, x0 : x0 + c]
        out.append(np.stack([cv2.resize(np.ascontiguousarray(p), (s, s),
                                        interpolation=cv2.INTER_LINEAR) for p in crop]))
        owner.append(np.arange(n))
    for i, p in enumerate(pixels):
        y0, y1, x0, x1 = matching.content_box(cv2.cvtColor(p, cv2.COLOR_RGB2GRAY))
        if (y1 - y0, x1 - x0) != (s, s):
            out.append(cv2.resize(np.ascontiguousarray(p[y0:y1, x0:x1]), (s, s),
                                  interpolation=cv2.INTER_LINEAR)[None])
            owner.append(np.array([i]))
    return np.concatenate(out), np.concatenate(owner)


def pairs_from(queries: np.ndarray, owner: np.ndarray, codes: np.ndarray, threshold: float,
               k: int = VIEW_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j: the pairs of ``owner[q]`` and each of the k nearest ``codes`` of query
    code q within ``threshold`` (the views of an image proposing its copies)."""
    dist, pos = _neighbours(codes, k, queries=queries)  # an IVF above EXACT_MAX codes too
    i = np.repeat(owner, pos.shape[1])
    j, d = pos.reshape(-1), dist.reshape(-1)
    keep = (j >= 0) & (j != i) & (d <= threshold)
    pairs = np.unique(np.sort(np.stack([i[keep], j[keep]], 1), axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def farthest_l2(codes: np.ndarray):
    """``farthest(A, B)``: the largest L2 distance between a code of positions A and one of B."""
    sq = (codes.astype(np.float64) ** 2).sum(1)

    def farthest(a: list[int], b: list[int]) -> float:
        d2 = sq[a][:, None] + sq[b][None, :] - 2.0 * (codes[a] @ codes[b].T)
        return float(np.sqrt(max(float(d2.max()), 0.0)))

    return farthest


def complete_groups(n: int, i: np.ndarray, j: np.ndarray, threshold: float, farthest
                    ) -> list[list[int]]:
    """Groups (of two or more) of n nodes by complete linkage over the candidate pairs (i, j),
    taken in the order given (closest first): the groups of i and j merge when
    ``farthest(A, B)``, the largest distance across them, is within ``threshold``. So every
    two members of a group are within the threshold. A refusal is remembered until either
    group changes, so repeated pairs between the same two groups cost nothing."""
    group = {x: [x] for x in range(n)}
    of = np.arange(n)
    refused: set[tuple[int, int, int, int]] = set()
    for a, b in zip(i.tolist(), j.tolist()):
        ra, rb = int(of[a]), int(of[b])
        if ra == rb:
            continue
        key = (min(ra, rb), max(ra, rb), len(group[min(ra, rb)]), len(group[max(ra, rb)]))
        if key in refused:
            continue
        if farthest(group[ra], group[rb]) > threshold:
            refused.add(key)
            continue
        if len(group[ra]) < len(group[rb]):
            ra, rb = rb, ra
        group[ra].extend(group[rb])
        of[group[rb]] = ra
        del group[rb]
    return [sorted(g) for g in sorted(group.values(), key=min) if len(g) > 1]


def keeper_order(row: Row) -> tuple:
    """Sort key: the keeper first (highest resolution, then largest file, then oldest)."""
    return (-(row.width or 0) * (row.height or 0), -row.size, row.mtime, row.id)


KEEP_RULES = ("original", "largest", "oldest", "newest")  # or a glob of paths to keep


def find_groups(ids: np.ndarray, codes: np.ndarray, rows: dict[int, Row], threshold: float,
                k: int = NEIGHBOURS, verifier: Verifier | None = None,
                keep: str = "original", progress=None,
                dismissed: Iterable[tuple[int, int]] = (),
                view_codes: tuple[np.ndarray, np.ndarray] | None = None) -> list[Group]:
    """Groups of near-duplicates among catalog rows ``ids`` with ``codes``, largest first.

    With a ``verifier``, codes only propose: every pair of each image's k nearest within
    LOOSE times ``threshold``, and of each of ``view_codes`` (codes of views of the images,
    with the position each comes from: ``view_codes``) with its VIEW_NEIGHBOURS nearest, is
    verified by geometry (matching.py), and groups grow around their originals
    (``around_originals``): every member proven a copy of the group's original. Without one,
    pairs within ``threshold`` join by code distance alone (complete linkage). Either way, two
    images of a ``dismissed`` pair (catalog ids, smaller first: marked "not duplicates" by
    the user, review.py) never share a group."""
    codes = np.ascontiguousarray(codes, np.float32)
    dismissed = set(dismissed)

    def apart(a: int, b: int) -> bool:  # positions of a dismissed pair
        x, y = int(ids[a]), int(ids[b])
        return (min(x, y), max(x, y)) in dismissed

    if verifier is None:
        i, j, _ = pairs_within(codes, threshold, k)
        l2 = farthest_l2(codes)

        def farthest(x: list[int], y: list[int]) -> float:
            return math.inf if any(apart(a, b) for a in x for b in y) else l2(x, y)

        found = complete_groups(len(ids), i, j, threshold, farthest)
    else:
        i, j, _ = pairs_within(codes, LOOSE * threshold, k)
        if view_codes is not None:
            vi, vj = pairs_from(*view_codes, codes, LOOSE * threshold)
            pairs = np.unique(np.concatenate([np.stack([i, j], 1), np.stack([vi, vj], 1)]),
                              axis=0)
            i, j = pairs[:, 0], pairs[:, 1]
        verifier.prepare([int(ids[x]) for x in np.union1d(i, j)], progress)
        proven = [(a, b) for a, b in zip(i.tolist(), j.tolist()) if not apart(a, b)
                  and verifier.match(int(ids[a]), int(ids[b])).same]
        def row(p: int) -> Row:
            return rows[int(ids[p])]

        def rank(pos: list[int], neighbours: dict[int, set[int]]) -> list[int]:
            key = {p: _original_key(row(p), [row(q) for q in neighbours[p]], verifier)
                   for p in pos}
            return sorted(pos, key=key.get)

        def beats(p: int, q: int) -> bool:  # p, not q, is the original of the pair
            return (_original_key(row(p), [row(q)], verifier)
                    < _original_key(row(q), [row(p)], verifier))

        found = around_originals(len(ids), proven, lambda p: int(ids[p]), verifier, rank,
                                 beats, apart)

    def member(p: int, keeper: int) -> Member:
        r = rows[int(ids[p])]
        dist = float(np.linalg.norm(codes[p] - codes[keeper]))
        if verifier is None or p == keeper:
            return Member(r.id, r.path, dist, r.width, r.height, r.size)
        m = verifier.match(int(ids[keeper]), r.id)  # a: the keeper, b: this member
        f = verifier.features(r.id)
        return Member(r.id, r.path, dist, r.width, r.height, r.size, m.inliers,
                      round(m.shared_b, 4), _box(m.homography, f.frame if f else None))

    out = []
    for members in found:
        group_rows = [rows[int(ids[p])] for p in members]
        if verifier is not None and keep == "original":  # the original the group grew from
            ranked, reason = group_rows, "original: " + _why_original(group_rows, verifier)
        else:
            ranked, reason = choose_keeper(group_rows, keep, verifier)
        at = {rows[int(ids[p])].id: p for p in members}
        first = at[ranked[0].id]
        others = sorted((member(at[r.id], first) for r in ranked[1:]), key=lambda m: m.distance)
        out.append(Group(member(first, first), tuple(others), reason))
    out.sort(key=lambda g: (-len(g.others), g.keeper.path))
    LOG.info("%d groups of near-duplicates (%d images) at distance %.4g%s", len(out),
             sum(1 + len(g.others) for g in out), threshold,
             ", verified" if verifier is not None else "")
    return out


def around_originals(n: int, proven: list[tuple[int, int]], id_of, verifier: Verifier,
                     rank, beats, apart=lambda a, b: False) -> list[list[int]]:
    """Groups (of two or more) of n positions from the ``proven`` pairs (positions proven the
    same picture), each built around its original: the member that ``rank(positions,
    neighbours)`` (each position's proven partners among them -> the positions, the original
    first) puts first among a connected set of proven pairs. The original's proven copies
    join it, most shared first, when each shares a part of the original with every member
    taken before (MIN_OVERLAP of the smaller footprint), so two pictures pasted side by side
    into one collage never join through it, and when the original explains as much of it as
    any picture it is proven a copy of (within CLOSEST), so that a picture wrongly proven a
    copy of the original (a second shot of one scene, explained better by its own copies)
    does not bring its own copies along. What is left of the set is grouped again.

    Every member is proven a copy of the group's original, but two members need not be
    copies of each other (a caption and a crop of one photo are not), which complete
    linkage over proven pairs would demand. Pairs of a set of at most HUB_CHECK positions
    that the codes did not propose are verified against the original too; ``apart``
    (positions) never join."""
    near: dict[int, set[int]] = {}
    for a, b in proven:
        near.setdefault(a, set()).add(b)
        near.setdefault(b, set()).add(a)
    out, seen = [], set()
    for start in sorted(near):
        if start in seen:
            continue
        component, stack = {start}, [start]
        while stack:
            for y in near[stack.pop()] - component:
                component.add(y)
                stack.append(y)
        seen |= component
        left = set(component)
        while len(left) > 1:
            hub = _champion(rank(sorted(left), {x: near.get(x, set()) & left for x in left}),
                            near, left, id_of, verifier, beats)
            copies = [x for x in left if x != hub and not apart(hub, x) and (
                x in near[hub] or (len(left) <= HUB_CHECK
                                   and verifier.match(id_of(hub), id_of(x)).same))]
            copies.sort(key=lambda x: -verifier.match(id_of(hub), id_of(x)).shared_b)
            members, where = [hub], []
            for x in copies:
                fx = matching.footprint(verifier.match(id_of(hub), id_of(x)))
                if fx is None or not fx.any() or any(apart(x, y) for y in members) or any(
                        (fx & f).sum() < MIN_OVERLAP * min(fx.sum(), f.sum()) for f in where):
                    continue
                best = max((verifier.match(id_of(y), id_of(x)).shared_b
                            for y in near[x] - set(members)), default=0.0)
                if verifier.match(id_of(hub), id_of(x)).shared_b < best - CLOSEST:
                    continue  # another picture explains x better: the original of its own
                members.append(x)
                where.append(fx)
            if len(members) > 1:
                out.append(members)
            left -= set(members)
            if len(members) == 1:  # the original had no copy left: group the rest
                left = {x for x in left if near[x] & left}
    return sorted(out, key=min)


def _champion(order: list[int], near: dict[int, set[int]], left: set[int], id_of,
              verifier: Verifier, beats) -> int:
    """The original of a connected set: the member that ``beats`` (contains, holds more
    detail than ...) the most of its proven copies in the set, pair by pair; ties go to
    ``order``'s first."""
    def copies(x: int) -> list[int]:
        if len(left) > HUB_CHECK:
            return sorted(near[x] & left)
        return [y for y in left if y != x and (y in near[x] or verifier.match(
            id_of(x), id_of(y)).same)]

    wins = {x: sum(beats(x, y) for y in copies(x)) for x in order}
    return max(order, key=lambda x: (wins[x], -order.index(x)))


HUB_CHECK = 64  # sets of proven pairs up to this size verify every member against the original
CLOSEST = 0.1  # the original explains a member within this share of the best that explains it
MIN_OVERLAP = 0.1  # two members share at least this much of the smaller one's footprint

LOOSE = 3.0  # with verification, code neighbours within LOOSE x the threshold are candidates


def _box(h: tuple[float, ...] | None, frame: tuple[float, float, float, float] | None
         ) -> tuple[tuple[float, float], ...] | None:
    """The keeper's picture drawn in the member's file: the corners of [0, 1]^2 through the
    inverse of ``h`` (member -> keeper, between their pictures less uniform margins),
    clipped, then placed in the member's ``frame`` (matching.Features.frame)."""
    if h is None or frame is None:
        return None
    inv = np.linalg.inv(np.array(h).reshape(3, 3))
    corners = np.array([[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float) @ inv.T
    xy = np.clip(corners[:, :2] / corners[:, 2:3], 0.0, 1.0)
    x0, y0, x1, y1 = frame
    xy = np.stack([x0 + xy[:, 0] * (x1 - x0), y0 + xy[:, 1] * (y1 - y0)], axis=1)
    return tuple((round(float(x), 4), round(float(y), 4)) for x, y in xy)


# -- the keeper ----------------------------------------------------------------------------
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
    keys = {r.id: _original_key(r, [o for o in rows if o.id != r.id], verifier) for r in rows}
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


def _original_key(r: Row, others: list[Row], verifier: Verifier) -> tuple:
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


def _why_original(rows: list[Row], verifier: Verifier) -> str:
    """Why ``rows[0]``, the original, wins over the others: the reason it beats the closest
    contender, each compared with it alone (matches already made)."""
    first, why = rows[0], len(_ORIGINAL_REASONS) - 1
    latest = 0
    for o in rows[1:]:
        a, b = _original_key(first, [o], verifier), _original_key(o, [first], verifier)
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


# -- moving the non-keepers aside ----------------------------------------------------------
def plan_moves(groups: list[Group], root: str | Path, dest: str | Path
               ) -> list[tuple[str, str]]:
    """(from, to) for every non-keeper: into ``dest``, keeping its path relative to ``root``
    (the indexed folder). Refused if ``dest`` is inside ``root`` (the next run would index the
    moved files again) or a target exists."""
    root, dest = Path(root).resolve(), Path(dest).resolve()
    if dest == root or root in dest.parents:
        raise ImgSearchError(f"--move-to {dest} is inside the indexed folder {root}; the moved "
                             "files would be indexed again. Choose a folder outside it")
    moves = []
    for g in groups:
        for m in g.others:
            src = Path(m.path)
            try:
                rel = src.resolve().relative_to(root)
            except ValueError:  # a file reached through a symlink from outside the folder
                rel = Path(*src.resolve().parts[1:])
            target = dest / rel
            if target.exists():
                raise ImgSearchError(f"{target} exists already; nothing was moved")
            moves.append((str(src), str(target)))
    return moves


#: The name of a move log (new_log): a second move in the same second gets a suffix.
MOVE_LOG = re.compile(r"imgsearch-moves-\d{8}-\d{6}(-\d+)?\.jsonl")


def new_log(dest: Path) -> Path:
    """A move log in ``dest`` that does not exist yet: imgsearch-moves-DATE-TIME.jsonl, with
    a suffix where two moves fall in the same second (the second would overwrite the first's
    undo)."""
    stamp = time.strftime("imgsearch-moves-%Y%m%d-%H%M%S")
    log, n = Path(dest) / f"{stamp}.jsonl", 2
    while log.exists():
        log, n = Path(dest) / f"{stamp}-{n}.jsonl", n + 1
    return log


def move(moves: list[tuple[str, str]], log: Path) -> int:
    """Move every file, after writing ``log`` (one JSON object a line: from, to) so that
    ``undo(log)`` can put them back. Never deletes. Returns how many were moved."""
    import json

    log.parent.mkdir(parents=True, exist_ok=True)
    with replacing(log) as tmp:
        tmp.write_text("".join(json.dumps({"from": a, "to": b}) + "\n" for a, b in moves))
    done = 0
    for src, dst in moves:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, dst)
        done += 1
    return done


def undo(log: Path) -> int:
    """Put back the files a ``move`` log lists (those still at their new place and whose old
    place is free). Returns how many were put back."""
    import json

    back = 0
    for line in Path(log).read_text().splitlines():
        entry = json.loads(line)
        src, dst = Path(entry["from"]), Path(entry["to"])
        if dst.exists() and not src.exists():
            src.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(dst), str(src))
            back += 1
    return back


# -- in an index ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Duplicates:
    """The groups of one method in one index, and where the threshold came from."""

    method: str
    threshold: float
    threshold_from: str  # "given", "calibrated" (when the method was built) or "calibrated now"
    groups: list[Group]
    images: int
    verified: bool = False  # every pair of every group proven by geometry

    def as_dict(self) -> dict:
        return {"method": self.method, "threshold": self.threshold,
                "threshold_from": self.threshold_from, "images": self.images,
                "verified": self.verified, "groups": [g.as_dict() for g in self.groups]}


def live_codes(ws, method: str):
    """(loaded method, catalog ids, their codes, their rows) of the images ``method``'s index
    holds that are still indexed."""
    from .build import load_method
    from .catalog import INDEXED

    loaded = load_method(ws, method)
    ids, codes = loaded.index.items()
    rows = ws.catalog.get_many(ids.tolist())
    live = np.array([rows.get(int(i)) is not None and rows[int(i)].state == INDEXED
                     for i in ids], bool)
    return loaded, ids[live], codes[live], rows


def in_index(ws, method: str, threshold: float | None = None, times: float = 1.0,
             verify: bool = True, keep: str = "original", progress=None) -> Duplicates:
    """Near-duplicate groups among an index's images by ``method``'s codes, at ``threshold``,
    else ``times`` the threshold calibrated when the method was built, else one calibrated
    now on a sample of the collection (a collection too small for a held-out self-check).
    With ``verify`` (the default), every pair is proven by geometry (find_groups). Pairs the
    user dismissed (review.py) never join."""
    from .holdout import MAX_DISTRACTORS, MAX_HELD, by_draw
    from .review import dismissed
    from .selfcheck import SelfCheck

    loaded, ids, codes, rows = live_codes(ws, method)
    source = "given"
    if threshold is None and loaded.state.duplicate_threshold is not None:
        threshold, source = loaded.state.duplicate_threshold, "calibrated"
    if threshold is None:
        if len(ids) < 2:
            raise ImgSearchError(f"index {ws.root} has {len(ids)} image(s): nothing to compare")
        order = ids[by_draw([rows[int(i)].hash or f"id {i}" for i in ids])]
        held = np.sort(order[:MAX_HELD])
        rest = np.sort(order[MAX_HELD : MAX_HELD + MAX_DISTRACTORS])
        check = SelfCheck(ws.cache.read(held), ws.cache.read(rest))
        threshold, source = calibrate(check, loaded.embedder.encode).threshold, "calibrated now"
    if source != "given" and times != 1.0:
        threshold, source = threshold * times, f"{times:g}x {source}"
    verifier = Verifier(lambda i: rows[i].path) if verify else None
    extra = view_codes(ws.cache, ids, loaded.embedder.encode, progress) if verify else None
    return Duplicates(method, float(threshold), source,
                      find_groups(ids, codes, rows, threshold, verifier=verifier, keep=keep,
                                  progress=progress, dismissed=dismissed(ws.root),
                                  view_codes=extra),
                      len(ids), verify)


def view_codes(cache, ids: np.ndarray, encode, progress=None, batch: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
    """(codes, owner): the codes of the views (``views``) of the cached pixels of ``ids``,
    and the position in ``ids`` of the image each comes from."""
    codes, owner = [], []
    for start in range(0, len(ids), batch):
        v, o = views(cache.read(ids[start : start + batch]))
        codes.append(np.concatenate([encode(v[x : x + 1024]) for x in range(0, len(v), 1024)]))
        owner.append(o + start)
        if progress is not None:
            progress("views", min(start + batch, len(ids)), len(ids))
    if not codes:
        return np.empty((0, 1), np.float32), np.empty(0, int)
    return np.concatenate(codes).astype(np.float32), np.concatenate(owner)
