"""Candidate pairs of near-duplicates, from codes.

Pairs come from each code's k nearest neighbours in FAISS (exact up to EXACT_MAX codes, a
temporary IVF index above, probing a few lists: near-duplicates sit in the same cell), so the
work grows like N log N and never builds an N x N matrix.

With verification, the candidates are the pairs within LOOSE times the threshold, and those
that the *views* of each image's cached pixels propose (its quarter turns, its crops, its
picture less uniform margins: ``views``, ``view_codes``), since a turned, cropped or bordered
copy's code lies far from its original's.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from ..index import list_count
from . import matching

EXACT_MAX = 20_000  # above this many codes, neighbours come from a temporary IVF index
NEIGHBOURS = 16  # neighbours looked at per image
NPROBE = 12
LOOSE = 3.0  # with verification, code neighbours within LOOSE x the threshold are candidates
CLOSE = 1.0  # ... and those within CLOSE x the threshold are compared as whole pictures too


def neighbours(codes: np.ndarray, k: int, exact: bool | None = None,
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


def pairs_within(codes: np.ndarray, threshold: float, k: int = NEIGHBOURS
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) of the pairs of positions with i < j and ||code_i - code_j|| <=
    threshold, among each code's k nearest; closest first."""
    d, pos = neighbours(codes, k + 1)
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


# -- proposals from local features ---------------------------------------------------------
#: Two images whose ORB descriptors match VOTES or more times are proposed. A descriptor
#: matches the descriptors within VOTE_DISTANCE bits (of 256) among its VOTE_NEIGHBOURS nearest
#: in a hash table of every image's descriptors (FAISS IndexBinaryHash: descriptors whose
#: first bits agree). ORB is oriented and multi-scale, and every image's mirrored descriptors
#: ask too, so quarter turns, crops and mirrors keep their votes where codes move far.
VOTE_DISTANCE = 40
VOTE_NEIGHBOURS = 8
VOTES = 10
VOTE_BATCH = 256  # images whose descriptors are looked up at a time (bounds the memory)


def hash_bits(total: int) -> int:
    """The bits of the hash table for ``total`` descriptors: about 64 a bucket, 16 to 20
    bits (more bits, fewer descriptors compared, and fewer true matches in one bucket)."""
    return int(np.clip(round(np.log2(max(total, 1) / 64)), 16, 20))


def votes(direct: list[np.ndarray], mirrored: list[np.ndarray], least: int = VOTES
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, votes), i < j: the pairs of images (positions in the lists) whose descriptors
    match at least ``least`` times, counting each descriptor of either image (of its
    picture, ``direct``, and of its mirror image, ``mirrored``: (n, 32) uint8 each) that finds
    a match in the other once. Every image is compared with every other through the table,
    so the work grows like the number of descriptors, not its square."""
    n = len(direct)
    sizes = np.array([len(d) for d in direct], np.int64)
    if n < 2 or not sizes.sum():
        return np.empty(0, int), np.empty(0, int), np.empty(0, int)
    owner = np.repeat(np.arange(n), sizes)
    index = faiss.IndexBinaryHash(256, hash_bits(int(sizes.sum())))
    index.nflip = 0
    index.add(np.ascontiguousarray(np.concatenate(direct)))
    keys = []
    for start in range(0, n, VOTE_BATCH):
        stop = min(n, start + VOTE_BATCH)
        asked = [np.concatenate([direct[p], mirrored[p]]) for p in range(start, stop)]
        asker = np.repeat(np.arange(start, stop), [len(q) for q in asked])
        if not len(asker):
            continue
        dist, found = index.search(np.ascontiguousarray(np.concatenate(asked)),
                                   VOTE_NEIGHBOURS)
        other = np.where((found >= 0) & (dist <= VOTE_DISTANCE),
                         owner[np.maximum(found, 0)], -1)
        other[other == asker[:, None]] = -1
        other.sort(axis=1)  # one vote per descriptor and other image
        other[:, 1:][other[:, 1:] == other[:, :-1]] = -1
        a, b = np.repeat(asker, other.shape[1]), other.reshape(-1)
        ok = b >= 0
        keys.append(np.minimum(a[ok], b[ok]) * n + np.maximum(a[ok], b[ok]))
    key, count = np.unique(np.concatenate(keys) if keys else np.empty(0, np.int64),
                           return_counts=True)
    keep = count >= least
    return key[keep] // n, key[keep] % n, count[keep]


@dataclass(frozen=True)
class Proposals:
    """Which pairs are verified: those the codes propose (each image's k nearest within
    ``loose`` times the threshold, and with ``views`` each of its views' ``view_neighbours``
    nearest within the same distance), and those whose local features match ``votes`` times
    or more (``votes``; 0: none). Dense maps (matching.match) are tried on the pairs whose
    codes, or views' codes, lie within ``close`` times the threshold: pictures that look
    alike as a whole; a pair proposed otherwise is judged by its keypoints."""

    loose: float = LOOSE
    view_neighbours: int = VIEW_NEIGHBOURS
    views: bool = True
    votes: int = VOTES
    close: float = CLOSE


PROPOSALS = Proposals()  # the product's


def proposed(codes: np.ndarray, threshold: float, proposals: Proposals = PROPOSALS,
             k: int = NEIGHBOURS, view_codes: tuple[np.ndarray, np.ndarray] | None = None,
             voted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, whole): the pairs of positions (P, 2), i < j, that ``proposals`` verify, from
    the ``codes`` at ``threshold``, the ``view_codes`` (view_codes: codes and owner) and the
    local features' ``voted`` pairs (votes: i, j, count); and for each pair whether it is
    compared whole (dense maps allowed: its codes or a view's lie within ``close``)."""
    i, j, far = pairs_within(codes, proposals.loose * threshold, k)
    found, near = [np.stack([i, j], 1)], [far <= proposals.close * threshold]
    if view_codes is not None and proposals.views:
        vi, vj, vfar = pairs_from(*view_codes, codes, proposals.loose * threshold,
                                  proposals.view_neighbours)
        found.append(np.stack([vi, vj], 1))
        near.append(vfar <= proposals.close * threshold)
    if voted is not None and proposals.votes:
        vi, vj, count = voted
        keep = count >= proposals.votes
        found.append(np.stack([vi[keep], vj[keep]], 1))
        near.append(np.zeros(int(keep.sum()), bool))
    pairs, at = np.unique(np.concatenate(found).astype(np.int64).reshape(-1, 2), axis=0,
                          return_inverse=True)
    whole = np.zeros(len(pairs), bool)
    np.logical_or.at(whole, at.reshape(-1), np.concatenate(near))
    return pairs, whole


def pairs_from(queries: np.ndarray, owner: np.ndarray, codes: np.ndarray, threshold: float,
               k: int = VIEW_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance), i < j: the pairs of ``owner[q]`` and each of the k nearest ``codes``
    of query code q within ``threshold`` (the views of an image proposing its copies), at
    the smallest distance any view found."""
    dist, pos = neighbours(codes, k, queries=queries)  # an IVF above EXACT_MAX codes too
    i = np.repeat(owner, pos.shape[1])
    j, d = pos.reshape(-1), dist.reshape(-1)
    keep = (j >= 0) & (j != i) & (d <= threshold)
    i, j, d = i[keep], j[keep], d[keep]
    order = np.argsort(d, kind="stable")  # each pair's smallest distance first
    pairs, first = np.unique(np.sort(np.stack([i[order], j[order]], 1), axis=1), axis=0,
                             return_index=True)
    return pairs[:, 0], pairs[:, 1], d[order][first]


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
