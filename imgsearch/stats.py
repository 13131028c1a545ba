"""The self-check's statistics (selfcheck.py): the standard error of a score, and the lead of
one method over another scored on the same copies, with its error. Numpy only: the default
query method is chosen from them (methods.choose) without importing torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def paired_lead(a: Sequence[int], b: Sequence[int], per_image: int) -> tuple[float, float]:
    """(lead, its standard error) of method A's recall@1 over method B's on the same queries:
    ``a`` and ``b`` are each held-out image's hits (SelfCheck.per_image), ``per_image`` the
    copies each image has. The lead is the mean of the per-image differences of hit rates,
    and its error the cluster-robust one of that mean (each held-out image a cluster,
    ``clustered_error``): where both methods find or miss the same copies, the difference has
    little noise, which two separate errors (``hypot(se_a, se_b)``) would miss."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or per_image < 1:
        raise ValueError("paired scores need the same held-out images")
    return _mean(a / per_image - b / per_image)


def paired(outcomes: Mapping[str, Mapping | Sequence[Mapping] | None], a: str, b: str
           ) -> tuple[float, float] | None:
    """The lead of method ``a`` over ``b`` and its standard error from their stored outcomes
    ({"key", "per_image", "copies"}: MethodState.selfcheck_outcome; or a list of them, one per
    measure, such as the copies and the other shots), or None where either has none or they
    were not measured on the same queries (another key). With several measures, each held-out
    image's score is the mean of its hit rates on them (``rates``): the lead is the mean
    difference, its error the cluster-robust one, each image one cluster; with one measure
    that is ``paired_lead``."""
    x, y = _measures(outcomes.get(a)), _measures(outcomes.get(b))
    if not x or len(x) != len(y) or any(
            i["key"] != j["key"] or i["copies"] != j["copies"] for i, j in zip(x, y)):
        return None
    return _mean(rates(x) - rates(y))


def combined(outcomes: Mapping | Sequence[Mapping]) -> tuple[float, float]:
    """(score, its standard error) of a method over its measures' outcomes: the mean over the
    held-out images of each one's mean hit rate (``rates``)."""
    return _mean(rates(_measures(outcomes)))


def rates(measures: Sequence[Mapping]) -> np.ndarray:
    """Each held-out image's hit rate, the mean over ``measures`` (outcomes of the same
    held-out images) of its hits over its queries."""
    return np.mean([np.asarray(m["per_image"], np.float64) / m["copies"] for m in measures],
                   axis=0)


def _mean(per_image: np.ndarray) -> tuple[float, float]:
    """(mean, its cluster-robust standard error) of one value per held-out image."""
    return float(per_image.mean()), clustered_error(per_image, np.ones(len(per_image)))


def _measures(v: Mapping | Sequence[Mapping] | None) -> list[Mapping]:
    return [] if not v else [v] if isinstance(v, Mapping) else [m for m in v if m]


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
