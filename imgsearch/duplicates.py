"""Near-duplicates: groups of images whose codes lie within a distance of each other.

Pairs come from each code's k nearest neighbours in FAISS (exact up to EXACT_MAX codes, a
temporary IVF index above, probing a few lists: near-duplicates sit in the same cell), so the
work grows like N log N and never builds an N x N matrix. Pairs within the threshold are joined
into groups by complete linkage: closest pairs first, and two groups merge only when *every*
pair across them is within the threshold, so a group never chains distinct photos together
through the edits between them (single linkage, connected components, did: photo A, a crop of
it, a crop of that crop ... photo B). Each group names a keeper: the highest resolution, then
the largest file, then the oldest.

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

from .catalog import Row
from .errors import ImgSearchError
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


def calibrate(check, encode) -> Calibration:
    """The threshold of the codes ``encode`` makes, from a SelfCheck's held-out images."""
    db = np.asarray(encode(check.database), np.float32)
    q = np.asarray(encode(check.queries), np.float32)
    copies = np.linalg.norm(q - db[check.truth], axis=1)
    held = db[: check.held]
    d, _ = _neighbours(db, 2, exact=True)  # itself, then the nearest other
    return threshold_between(copies, d[: len(held), 1])


def _neighbours(codes: np.ndarray, k: int, exact: bool | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(distances, positions) of each code's k nearest codes (itself among them), L2."""
    codes = np.ascontiguousarray(codes, np.float32)
    n, d = codes.shape
    k = min(k, n)
    if exact or (exact is None and n <= EXACT_MAX):
        index = faiss.IndexFlatL2(d)
    else:
        nlist = int(min(4 * math.sqrt(n), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        sample = codes[np.random.default_rng(0).permutation(n)[: 50 * nlist]]
        index.train(sample)
        index.nprobe = NPROBE
    index.add(codes)
    d2, pos = index.search(codes, k)
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
                dismissed: Iterable[tuple[int, int]] = ()) -> list[Group]:
    """Groups of near-duplicates among catalog rows ``ids`` with ``codes``, largest first.

    With a ``verifier``, codes only propose: every pair of each image's k nearest within
    LOOSE times ``threshold`` is verified by geometry (matching.py), and complete linkage
    runs on verified pairs, so every two members of a group are proven the same picture.
    Without one, pairs within ``threshold`` join by code distance alone. Either way, two
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
        verifier.prepare([int(ids[x]) for x in np.union1d(i, j)], progress)

        def same(a: int, b: int) -> bool:
            return not apart(a, b) and verifier.match(int(ids[a]), int(ids[b])).same

        proven = np.array([same(a, b) for a, b in zip(i.tolist(), j.tolist())], bool)
        i, j = i[proven], j[proven]
        order = np.argsort([-verifier.match(int(ids[a]), int(ids[b])).shared
                            for a, b in zip(i, j)], kind="stable")  # most shared first
        found = complete_groups(
            len(ids), i[order], j[order], 0.5,
            lambda x, y: 0.0 if all(same(a, b) for a in x for b in y) else 1.0)

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
        ranked, reason = choose_keeper([rows[int(ids[p])] for p in members], keep, verifier)
        at = {rows[int(ids[p])].id: p for p in members}
        first = at[ranked[0].id]
        others = sorted((member(at[r.id], first) for r in ranked[1:]), key=lambda m: m.distance)
        out.append(Group(member(first, first), tuple(others), reason))
    out.sort(key=lambda g: (-len(g.others), g.keeper.path))
    LOG.info("%d groups of near-duplicates (%d images) at distance %.4g%s", len(out),
             sum(1 + len(g.others) for g in out), threshold,
             ", verified" if verifier is not None else "")
    return out


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

_ORIGINAL_REASONS = ("contains the others", "most detail", "in colour", "oldest",
                     "original format", "first indexed")


def _original_key(r: Row, others: list[Row], verifier: Verifier) -> tuple:
    """Sort key of ``original`` (smaller first), in _ORIGINAL_REASONS' order."""
    contains, detail = 0, 0.0
    for o in others:
        m = verifier.match(r.id, o.id)  # a: r, b: o
        contains += m.detail_b >= CONTAINED  # r explains the other's detail: it holds it
        detail += _detail_ratio(m, r, o, verifier)
    n = max(1, len(others))
    colour = verifier.colourful(r.id)
    return (-contains, -round(detail / n / 0.1), -int(colour),
            round(r.mtime, 3), FORMAT_RANK.get((r.format or "").upper(), 4), r.id)


def _detail_ratio(m, r: Row, o: Row, verifier: Verifier) -> float:
    """log of how many of r's pixels stand for one of o's in what they share (> 0: r holds
    more detail), from the map between their unit frames (their pictures less uniform
    margins) and the pixels of those frames."""
    fr, fo = verifier.features(r.id), verifier.features(o.id)
    if m.homography is None or fr is None or fo is None or not (
            r.width and r.height and o.width and o.height):
        return 0.0
    h = np.array(m.homography).reshape(3, 3)  # o's unit frame -> r's
    unit_scale = abs(np.linalg.det(h[:2, :2] / h[2, 2]))  # area of o's frame in r's
    return float(0.5 * np.log(max(unit_scale, 1e-6) * r.width * r.height * fr.content
                              / (o.width * o.height * fo.content)))


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
    from .review import dismissed
    from .selfcheck import MAX_DISTRACTORS, MAX_HELD, SelfCheck

    loaded, ids, codes, rows = live_codes(ws, method)
    source = "given"
    if threshold is None and loaded.state.duplicate_threshold is not None:
        threshold, source = loaded.state.duplicate_threshold, "calibrated"
    if threshold is None:
        if len(ids) < 2:
            raise ImgSearchError(f"index {ws.root} has {len(ids)} image(s): nothing to compare")
        rng = np.random.default_rng(0)
        order = rng.permutation(np.sort(ids))
        held = np.sort(order[:MAX_HELD])
        rest = np.sort(order[MAX_HELD : MAX_HELD + MAX_DISTRACTORS])
        check = SelfCheck(ws.cache.read(held), ws.cache.read(rest))
        threshold, source = calibrate(check, loaded.embedder.encode).threshold, "calibrated now"
    if source != "given" and times != 1.0:
        threshold, source = threshold * times, f"{times:g}x {source}"
    verifier = Verifier(lambda i: rows[i].path) if verify else None
    return Duplicates(method, float(threshold), source,
                      find_groups(ids, codes, rows, threshold, verifier=verifier, keep=keep,
                                  progress=progress, dismissed=dismissed(ws.root)),
                      len(ids), verify)
