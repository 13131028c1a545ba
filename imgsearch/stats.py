"""The self-check's statistics (selfcheck.py): the standard error of a score, and the lead of
one method over another scored on the same copies, with its error. Numpy only: the default
query method is chosen from them (methods.choose) without importing torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def paired_lead(a: Sequence[int], b: Sequence[int], per_image: int) -> tuple[float, float]:
    """(lead, its standard error) of method A's recall@1 over method B's on the same queries:
    ``a`` and ``b`` are each held-out image's hits (SelfCheck.per_image), ``per_image`` the
    copies each image has. The lead is the mean of the per-copy differences, and its error the
    cluster-robust one of that mean (each held-out image a cluster, ``clustered_error``):
    where both methods find or miss the same copies, the difference has little noise, which
    two separate errors (``hypot(se_a, se_b)``) would miss."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.shape != (len(b),) or per_image < 1:
        raise ValueError("paired scores need the same held-out images")
    n = np.full(len(d), float(per_image))
    return float(d.sum() / n.sum()), clustered_error(d, n)


def paired(outcomes: Mapping[str, Mapping | None], a: str, b: str
           ) -> tuple[float, float] | None:
    """``paired_lead`` of method ``a`` over ``b`` from their stored outcomes
    ({"key", "per_image", "copies"}: MethodState.selfcheck_outcome), or None where either
    has none or they were not scored on the same copies (different keys)."""
    x, y = outcomes.get(a), outcomes.get(b)
    if not x or not y or x["key"] != y["key"] or x["copies"] != y["copies"]:
        return None
    return paired_lead(x["per_image"], y["per_image"], x["copies"])


def clustered_error(sums: np.ndarray, counts: np.ndarray) -> float:
    """Standard error of a mean over items in clusters, from each cluster's sum of its items'
    values and its count: sqrt(sum_c (s_c - n_c m)^2 * C / (C - 1)) / N, m the mean, for C
    clusters, N items in all (Cameron and Miller, "A practitioner's guide to cluster-robust
    inference", J. Human Resources 2015). NaN with fewer than two clusters."""
    sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.float64)
    k = len(sums)
    if k < 2:
        return float("nan")
    m = sums.sum() / counts.sum()
    return float(np.sqrt(((sums - counts * m) ** 2).sum() * k / (k - 1)) / counts.sum())


def standard_error(hits: np.ndarray, cluster: np.ndarray) -> float:
    """Standard error of the mean of ``hits`` (0/1) whose items come in clusters (the
    copies of one held-out image): sqrt(sum_c (h_c - n_c p)^2 * C / (C - 1)) / N, for C
    clusters of n_c items with h_c hits, N items in all (Cameron and Miller, "A
    practitioner's guide to cluster-robust inference", J. Human Resources 2015)."""
    hits = np.asarray(hits, np.float64)
    _, c = np.unique(cluster, return_inverse=True)
    k = int(c.max()) + 1 if len(c) else 0
    return clustered_error(np.bincount(c, hits, k), np.bincount(c, None, k))
