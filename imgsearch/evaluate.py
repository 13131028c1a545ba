"""Retrieval metrics: free functions over numpy arrays of neighbour relevance.

``relevant`` is a (Q, K) boolean array: relevant[q, i] says whether the i-th neighbour
(best first) of query q is relevant to it. ``n_relevant`` (Q,) is how many relevant items the
whole database holds for each query.
"""

from __future__ import annotations

import math

import numpy as np


def _check(relevant: np.ndarray, k: int | None) -> tuple[np.ndarray, int]:
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.ndim != 2:
        raise ValueError(f"relevant must be (queries, neighbours), got shape {relevant.shape}")
    k = relevant.shape[1] if k is None else k
    if not 1 <= k <= relevant.shape[1]:
        raise ValueError(f"k must be in 1..{relevant.shape[1]}, got {k}")
    return relevant[:, :k], k


def relevance(neighbour_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """(Q, K) labels of the neighbours, (Q,) labels of the queries -> (Q, K) same-label mask."""
    return np.asarray(neighbour_labels) == np.asarray(query_labels)[:, None]


def precision_at_k(relevant: np.ndarray, k: int | None = None) -> float:
    """Mean over queries of the fraction of the top k that is relevant."""
    rel, k = _check(relevant, k)
    return float(rel.mean(axis=1).mean())


def recall_at_k(relevant: np.ndarray, n_relevant: np.ndarray, k: int | None = None) -> float:
    """Mean over queries of the fraction of all relevant items found in the top k."""
    rel, _ = _check(relevant, k)
    n = np.asarray(n_relevant, dtype=np.float64)
    return float(np.mean(rel.sum(axis=1) / np.maximum(n, 1)))


def average_precision(relevant: np.ndarray, n_relevant: np.ndarray | None = None,
                      k: int | None = None) -> np.ndarray:
    """(Q,) average precision of each ranking, cut at k.

    AP = sum_i P@i * rel_i / N, over ranks i <= k. N is ``n_relevant`` when given (with the
    whole ranking, k = database size, this is the classic AP), else the number of relevant
    items retrieved in the top k (the usual "mAP@k" of retrieval papers).
    """
    rel, _ = _check(relevant, k)
    hits = np.cumsum(rel, axis=1)
    ranks = np.arange(1, rel.shape[1] + 1)
    summed = (hits / ranks * rel).sum(axis=1)
    denom = rel.sum(axis=1) if n_relevant is None else np.asarray(n_relevant, dtype=np.float64)
    return np.where(denom > 0, summed / np.maximum(denom, 1), 0.0)


def mean_average_precision(relevant: np.ndarray, n_relevant: np.ndarray | None = None,
                           k: int | None = None) -> float:
    """Mean over queries of ``average_precision``."""
    return float(average_precision(relevant, n_relevant, k).mean())


def psnr(original: np.ndarray, reconstructed: np.ndarray, most: float = 100.0) -> float:
    """Peak signal-to-noise ratio in dB of ``reconstructed`` against ``original`` (same shape,
    values in [0, 1]): 10 log10(1 / MSE), the MSE over every value; at most ``most`` (an
    exact reconstruction, whose PSNR is infinite, which JSON cannot hold)."""
    if original.shape != reconstructed.shape:
        raise ValueError(f"shapes differ: {original.shape} and {reconstructed.shape}")
    mse = float(np.mean((np.asarray(original, np.float64) - reconstructed) ** 2))
    return most if mse == 0 else min(most, 10 * math.log10(1 / mse))


def knn_accuracy(neighbour_labels: np.ndarray, query_labels: np.ndarray, k: int) -> float:
    """Accuracy of majority-vote classification by the k nearest neighbours (ties: nearest)."""
    labels = np.asarray(neighbour_labels)[:, :k]
    correct = 0
    for row, truth in zip(labels, query_labels):
        values, counts = np.unique(row, return_counts=True)
        best = values[counts == counts.max()]
        vote = next(v for v in row if v in best)  # tie: the label reached first
        correct += vote == truth
    return correct / len(labels)


def same_picture_groups(images: np.ndarray, tol: float) -> np.ndarray:
    """For each image, the index of the first image that is the same picture (mean absolute
    difference of 16x16 grey thumbnails below tol, in 0..255), itself if none."""
    grey = images.astype(np.float32).mean(axis=3)  # (N, S, S)
    n, s = grey.shape[:2]
    f = s // 16
    thumbs = grey.reshape(n, 16, f, 16, f).mean(axis=(2, 4)).reshape(n, -1)
    first = np.arange(n)
    for i in range(n):
        d = np.abs(thumbs[:i] - thumbs[i]).mean(axis=1)
        if len(d) and d.min() < tol:
            first[i] = first[int(d.argmin())]
    return first
