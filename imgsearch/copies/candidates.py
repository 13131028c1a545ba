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


@dataclass(frozen=True)
class Proposals:
    """Which pairs the codes propose for verification: each image's k nearest within
    ``loose`` times the threshold, and (``views``) each of its views' ``view_neighbours``
    nearest within the same distance."""

    loose: float = LOOSE
    view_neighbours: int = VIEW_NEIGHBOURS
    views: bool = True


PROPOSALS = Proposals()  # the product's


def pairs_from(queries: np.ndarray, owner: np.ndarray, codes: np.ndarray, threshold: float,
               k: int = VIEW_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j: the pairs of ``owner[q]`` and each of the k nearest ``codes`` of query
    code q within ``threshold`` (the views of an image proposing its copies)."""
    dist, pos = neighbours(codes, k, queries=queries)  # an IVF above EXACT_MAX codes too
    i = np.repeat(owner, pos.shape[1])
    j, d = pos.reshape(-1), dist.reshape(-1)
    keep = (j >= 0) & (j != i) & (d <= threshold)
    pairs = np.unique(np.sort(np.stack([i[keep], j[keep]], 1), axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


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
