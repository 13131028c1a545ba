"""Verifying pairs of indexed images by geometry (matching.py): each image's features are
computed once, from its file, in worker processes, and each pair is matched once.

Features are computed on demand, not stored at ingest: only the images that codes propose as
copies of something are ever read again (a few per query, the candidate pairs of a duplicates
run), so a collection pays nothing for the photos that have no copy. docs/BENCHMARKS.md
("Verification") measures both costs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack

from . import matching
from .matching import NO_MATCH, Features, Match

LOG = logging.getLogger(__name__)

POOL_MIN = 24  # fewer images than this are read in the calling process


def file_features(path: str) -> Features | None:
    """matching.load_features of a file, or None where it is gone or unreadable."""
    try:
        return matching.load_features(path)
    except Exception as e:  # noqa: BLE001 - a file gone or unreadable since it was indexed
        LOG.debug("no features for %s: %s", path, e)
        return None


class Verifier:
    """``match(a, b)`` for catalog ids, whose files ``path_of`` names."""

    def __init__(self, path_of: Callable[[int], str], workers: int | None = None):
        self.path_of = path_of
        self.workers = workers or min(8, os.cpu_count() or 1)
        self._features: dict[int, Features | None] = {}
        self._matches: dict[tuple[int, int], Match] = {}

    def prepare(self, ids: Iterable[int], progress=None) -> None:
        """Compute the features of ``ids`` not computed yet, in parallel."""
        todo = [i for i in dict.fromkeys(ids) if i not in self._features]
        if not todo:
            return
        paths = [self.path_of(i) for i in todo]
        with ExitStack() as stack:
            if len(todo) < POOL_MIN or self.workers == 1:
                results: Iterable = map(file_features, paths)
            else:
                pool = stack.enter_context(ProcessPoolExecutor(self.workers))
                results = pool.map(file_features, paths, chunksize=8)
            for n, (i, f) in enumerate(zip(todo, results), 1):
                self._features[i] = f
                if progress is not None:
                    progress("verifying", n, len(todo))
        LOG.info("features of %d images for verification", len(todo))

    def features(self, i: int) -> Features | None:
        if i not in self._features:
            self._features[i] = file_features(self.path_of(i))
        return self._features[i]

    def match(self, a: int, b: int) -> Match:
        """The match of (a, b): a's picture against b's."""
        if (a, b) in self._matches:
            return self._matches[a, b]
        if (b, a) in self._matches:
            return matching.reverse(self._matches[b, a])
        fa, fb = self.features(a), self.features(b)
        m = NO_MATCH if fa is None or fb is None else matching.match(fa, fb)
        self._matches[a, b] = m
        return m

    def colourful(self, i: int) -> bool:
        f = self.features(i)
        return f is not None and matching.colourful(f)
