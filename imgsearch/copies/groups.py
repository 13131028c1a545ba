"""Near-duplicates: groups of images that are copies of one picture.

Candidate pairs come from the codes (candidates.py). With verification (the default), codes
only propose: each candidate pair is proven or refused by geometry (matching.py), and groups
grow around their originals (``around_originals``): every member is proven a copy of the
group's original, shares a part of it with every other member, and is explained by it as well
as by anything else. Two edits of one photo (a caption, a crop) are often not copies of each
other, so complete linkage over proven pairs, which would demand it, split most groups of the
benchmark (recall 0.63 against 0.84, docs/RESULTS.md).

Without verification, pairs within the threshold are joined by complete linkage: closest
pairs first, and two groups merge only when *every* pair across them is within the threshold,
so a group never chains distinct photos together through the edits between them (single
linkage did: photo A, a crop of it, a crop of that crop ... photo B).

Each group names a keeper: by default the original (keeper.py). The threshold is calibrated
on the collection itself (calibration.py). ``in_index`` finds the groups of one method in an
index.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from ..catalog import Row
from ..errors import ImgSearchError
from . import matching
from .calibration import calibrate
from .candidates import (
    NEIGHBOURS,
    PROPOSALS,
    Proposals,
    pairs_within,
    proposed,
    view_codes,
    votes,
)
from .evidence import Stored
from .keeper import choose_keeper, original_key, why_original
from .verification import Verifier

LOG = logging.getLogger(__name__)


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


#: The orders the groups are reviewed in: by the bytes that moving the others away frees
#: (the default), by their number of pictures, or by confidence: the weakest member's share
#: explained by its keeper (unverified groups last), most certain first.
ORDERS = ("space", "size", "confidence")


def freed(g: Group) -> int:
    """The bytes that moving ``g``'s others away frees."""
    return sum(m.size for m in g.others)


def ordered(groups: list[Group], by: str = "space") -> list[Group]:
    """``groups`` in the review order ``by`` (ORDERS), ties by the keeper's path."""
    if by not in ORDERS:
        raise ImgSearchError(f"groups are ordered by {', '.join(ORDERS)}, not {by!r}")
    key = {"space": lambda g: -freed(g), "size": lambda g: -len(g.others),
           "confidence": lambda g: -min((m.shared if m.shared is not None else -1.0)
                                        for m in g.others)}[by]
    return sorted(groups, key=lambda g: (key(g), g.keeper.path))


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


def find_groups(ids: np.ndarray, codes: np.ndarray, rows: dict[int, Row], threshold: float,
                k: int = NEIGHBOURS, verifier: Verifier | None = None,
                keep: str = "original", progress=None,
                dismissed: Iterable[tuple[int, int]] = (),
                view_codes: tuple[np.ndarray, np.ndarray] | None = None,
                proposals: Proposals = PROPOSALS) -> list[Group]:
    """Groups of near-duplicates among catalog rows ``ids`` with ``codes``, largest first.

    With a ``verifier``, codes only propose (``proposals``): every pair of each image's k
    nearest within ``proposals.loose`` times ``threshold``, and of each of ``view_codes``
    (codes of views of the images, with the position each comes from: ``view_codes``) with
    its ``proposals.view_neighbours`` nearest, is
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
        voted = (stored_votes(ids, verifier.stored, proposals.votes)
                 if proposals.votes and verifier.stored is not None else None)
        pairs, whole = proposed(codes, threshold, proposals, k, view_codes, voted)
        asked = [(int(ids[a]), int(ids[b])) for a, b in pairs.tolist() if not apart(a, b)]
        quick = {(int(ids[a]), int(ids[b])) for a, b in pairs[~whole].tolist()}
        verifier.prepare_pairs(asked, progress, quick=quick)
        proven = [(a, b) for a, b in pairs.tolist() if not apart(a, b)
                  and verifier.prepared(int(ids[a]), int(ids[b])).same]

        def row(p: int) -> Row:
            return rows[int(ids[p])]

        def rank(pos: list[int], neighbours: dict[int, set[int]]) -> list[int]:
            key = {p: original_key(row(p), [row(q) for q in neighbours[p]], verifier)
                   for p in pos}
            return sorted(pos, key=key.get)

        def beats(p: int, q: int) -> bool:  # p, not q, is the original of the pair
            return (original_key(row(p), [row(q)], verifier)
                    < original_key(row(q), [row(p)], verifier))

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
            ranked, reason = group_rows, "original: " + why_original(group_rows, verifier)
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


def stored_votes(ids: np.ndarray, stored, least: int = 1
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, count): positions in ``ids`` of the pairs whose stored local features match at
    least ``least`` times, and how often (candidates.votes); images stored without features
    propose nothing."""
    found = stored.descriptors(ids.tolist())
    at = np.array([p for p, x in enumerate(ids.tolist()) if x in found], np.int64)
    both = [found[int(ids[p])] for p in at]
    vi, vj, count = votes([d for d, _ in both], [m for _, m in both], least)
    LOG.info("local features propose %d pairs among %d images", len(vi), len(at))
    return at[vi], at[vj], count


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
    from ..build import load_method
    from ..catalog import INDEXED

    loaded = load_method(ws, method)
    ids, codes = loaded.index.items()
    rows = ws.catalog.get_many(ids.tolist())
    live = np.array([rows.get(int(i)) is not None and rows[int(i)].state == INDEXED
                     for i in ids], bool)
    return loaded, ids[live], codes[live], rows


def in_index(ws, method: str, threshold: float | None = None, times: float = 1.0,
             verify: bool = True, keep: str = "original", progress=None,
             proposals: Proposals = PROPOSALS) -> Duplicates:
    """Near-duplicate groups among an index's images by ``method``'s codes, at ``threshold``,
    else ``times`` the threshold calibrated when the method was built, else one calibrated
    now on a sample of the collection (a collection too small for a held-out self-check).
    With ``verify`` (the default), every pair is proven by geometry (find_groups). Pairs the
    user dismissed (review.py) never join."""
    from ..holdout import MAX_DISTRACTORS, MAX_HELD, by_draw
    from ..selfcheck import SelfCheck
    from .review import dismissed

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
    verifier = Verifier(lambda i: rows[i].path, stored=Stored(ws.catalog)) if verify else None
    extra = (view_codes(ws.cache, ids, loaded.embedder.encode, progress)
             if verify and proposals.views else None)
    groups = find_groups(ids, codes, rows, threshold, verifier=verifier, keep=keep,
                         progress=progress, dismissed=dismissed(ws.root), view_codes=extra,
                         proposals=proposals)
    if verifier is not None:
        verifier.save()  # the verdicts made now: no pair is matched twice
    return Duplicates(method, float(threshold), source, groups,
                      len(ids), verify)
