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
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from .catalog import Row
from .errors import ImgSearchError
from .store import replacing

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


@dataclass(frozen=True)
class Group:
    keeper: Member
    others: tuple[Member, ...]

    def as_dict(self) -> dict:
        return {"keeper": asdict(self.keeper), "others": [asdict(m) for m in self.others]}


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


def find_groups(ids: np.ndarray, codes: np.ndarray, rows: dict[int, Row], threshold: float,
                k: int = NEIGHBOURS) -> list[Group]:
    """Groups of near-duplicates among catalog rows ``ids`` with ``codes``, largest first."""
    codes = np.ascontiguousarray(codes, np.float32)
    i, j, _ = pairs_within(codes, threshold, k)

    def member(p: int, keeper: int) -> Member:
        r = rows[int(ids[p])]
        return Member(r.id, r.path, float(np.linalg.norm(codes[p] - codes[keeper])), r.width,
                      r.height, r.size)

    out = []
    for members in complete_groups(len(ids), i, j, threshold, farthest_l2(codes)):
        ranked = sorted(members, key=lambda p: keeper_order(rows[int(ids[p])]))
        others = sorted((member(p, ranked[0]) for p in ranked[1:]), key=lambda m: m.distance)
        out.append(Group(member(ranked[0], ranked[0]), tuple(others)))
    out.sort(key=lambda g: (-len(g.others), g.keeper.path))
    LOG.info("%d groups of near-duplicates (%d images) at distance %.4g", len(out),
             sum(1 + len(g.others) for g in out), threshold)
    return out


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

    def as_dict(self) -> dict:
        return {"method": self.method, "threshold": self.threshold,
                "threshold_from": self.threshold_from, "images": self.images,
                "groups": [g.as_dict() for g in self.groups]}


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


def in_index(ws, method: str, threshold: float | None = None) -> Duplicates:
    """Near-duplicate groups among an index's images by ``method``'s codes, at ``threshold``,
    else the threshold calibrated when the method was built, else one calibrated now on a
    sample of the collection (a collection too small for a held-out self-check)."""
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
    return Duplicates(method, float(threshold), source,
                      find_groups(ids, codes, rows, threshold), len(ids))
