"""Verifying pairs of indexed images by geometry (matching.py), each pair matched once.

Each image's features are read from the index, where ingest stored them while it decoded the
image (evidence.py). Only an image indexed without them (a file the index could not decode
for features, or an index whose next ``imgsearch index`` has not run yet) is decoded from its
file again, in worker processes, and the log says how many. docs/BENCHMARKS.md
("Verification", "Stored features") measures both costs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack

from . import matching
from .evidence import Stored
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
    """``match(a, b)`` for catalog ids, whose files ``path_of`` names and whose features
    ``stored`` (evidence.Stored) holds, where it does."""

    def __init__(self, path_of: Callable[[int], str], workers: int | None = None,
                 stored: Stored | None = None):
        self.path_of = path_of
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.stored = stored
        self._features: dict[int, Features | None] = {}
        self._matches: dict[tuple[int, int], Match] = {}
        self.decoded = 0  # images decoded from their files: indexed without stored features

    def prepare(self, ids: Iterable[int], progress=None) -> None:
        """Read the features of ``ids`` not read yet: stored ones from the index, the others
        computed from their files, in parallel."""
        todo = [i for i in dict.fromkeys(ids) if i not in self._features]
        if todo and self.stored is not None:
            self._features.update(self.stored.get(todo))
            todo = [i for i in todo if i not in self._features]
        if not todo:
            return
        self._decoding(len(todo))
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
            self.prepare([i])
        return self._features[i]

    def _decoding(self, n: int) -> None:
        self.decoded += n
        if self.stored is not None:
            LOG.info("%d image(s) indexed without stored features: decoding their files "
                     "(the next `imgsearch index` stores them)", n)

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
