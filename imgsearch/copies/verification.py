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
from .evidence import Stored, file_features, pack_match, unpack_match
from .matching import NO_MATCH, Features, Match

LOG = logging.getLogger(__name__)

POOL_MIN = 24  # fewer images than this are read in the calling process
PAIR_POOL_MIN = 64  # fewer pairs than this are matched in the calling process
CHUNK = 32  # pairs a worker matches at a time


def verdict(fa: Features | None, fb: Features | None, dense: bool = True) -> bytes:
    """The packed verdict on a pair (evidence.pack_match), NO_MATCH where either picture has
    no features; dense maps tried as matching.match says. Every verdict is used as unpacked
    from these bytes, however it was found, so one matched here and one read back from the
    index are the same to the bit."""
    return pack_match(NO_MATCH if fa is None or fb is None else matching.match(fa, fb, dense))


_WORKER: dict = {}  # in a pool worker: the catalog it reads and the features it decoded


def _worker_init(db: str, own: dict) -> None:
    import faiss

    from ..catalog import Catalog

    # matching searches descriptors with FAISS: OpenMP's pool does not survive a fork (a
    # forked worker's first parallel region hangs), and the pool parallelises over pairs
    faiss.omp_set_num_threads(1)

    _WORKER.update(stored=Stored(Catalog(db, read_only=True)), own=own, cache={})


def _match_chunk(pairs: list[tuple[tuple[int, int], bool]]
                 ) -> list[tuple[tuple[int, int], bytes]]:
    """In a worker: the verdicts on ``pairs`` ((pair, dense maps allowed)), from the stored
    features (the few images that have none were decoded by the caller: ``own``)."""
    cache, own = _WORKER["cache"], _WORKER["own"]
    need = [i for i in {x for p, _ in pairs for x in p} if i not in cache and i not in own]
    if len(cache) > 4096:
        cache.clear()
    cache.update(_WORKER["stored"].get(need))

    def features(i: int) -> Features | None:
        return own[i] if i in own else cache.get(i)

    return [(p, verdict(features(p[0]), features(p[1]), dense)) for p, dense in pairs]


def _pooled(db: str, pairs: list[tuple[tuple[int, int], bool]], own: dict, workers: int):
    """(pair, verdict) of every (pair, dense) given, matched in a pool of processes reading
    ``db``."""
    import multiprocessing

    pairs = sorted(pairs)  # a worker's chunk shares its first images
    chunks = [pairs[i : i + CHUNK] for i in range(0, len(pairs), CHUNK)]
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ctx.Pool(workers, _worker_init, (db, own)) as pool:
        for chunk in pool.imap(_match_chunk, chunks):
            for p, blob in chunk:
                yield p, unpack_match(blob)


class Verifier:
    """``match(a, b)`` for catalog ids, whose files ``path_of`` names and whose features
    ``stored`` (evidence.Stored) holds, where it does."""

    def __init__(self, path_of: Callable[[int], str], workers: int | None = None,
                 stored: Stored | None = None):
        self.path_of = path_of
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.stored = stored
        self._features: dict[int, Features | None] = {}
        self._matches: dict[tuple[int, int], Match] = {}  # (a, b), a < b
        self._quick: set[tuple[int, int]] = set()  # of those, refused by keypoints alone
        self._new: dict[tuple[int, int], tuple[Match, bool]] = {}  # to save: (verdict, whole)
        self.decoded = 0  # images decoded from their files: indexed without stored features
        self.verified = 0  # pairs matched here: no verdict was stored

    def prepare(self, ids: Iterable[int]) -> None:
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
            for i, f in zip(todo, results):
                self._features[i] = f
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
        """The match of (a, b): a's picture against b's. Each pair is matched once, the
        smaller id's picture against the larger's (``verdict``), and its verdict kept
        (and stored with the index, ``save``); judged whole (a refusal by keypoints alone is
        matched again)."""
        return self._verdict(a, b, whole=True)

    def prepared(self, a: int, b: int) -> Match:
        """The verdict ``prepare_pairs`` gave (a, b), whole or by keypoints alone (their
        proven copies are the same)."""
        return self._verdict(a, b, whole=False)

    def _verdict(self, a: int, b: int, whole: bool) -> Match:
        key = (min(a, b), max(a, b))
        if key not in self._matches or (whole and key in self._quick):
            self.prepare_pairs([key])
        m = self._matches[key]
        return m if key == (a, b) else matching.reverse(m)

    def prepare_pairs(self, pairs: Iterable[tuple[int, int]], progress=None,
                      quick: Iterable[tuple[int, int]] = ()) -> None:
        """Verify the ``pairs`` (catalog ids) not verified yet: the verdicts stored with the
        index are read, the others matched on every core (PAIR_POOL_MIN pairs or more) from
        the stored features, and kept to ``save``. The pairs also in ``quick`` may be judged
        by their keypoints alone (matching.match, dense=False); the others are judged whole,
        and a refusal by keypoints alone is matched again for them."""
        quick = {(min(a, b), max(a, b)) for a, b in quick}
        todo = list(dict.fromkeys((min(a, b), max(a, b)) for a, b in pairs))
        todo = [p for p in todo if p not in self._matches
                or (p in self._quick and p not in quick)]
        if todo and self.stored is not None:
            for p, (m, whole) in self.stored.matches(todo).items():
                if whole or p in quick:
                    self._keep(p, m, whole)
            todo = [p for p in todo if p not in self._matches
                    or (p in self._quick and p not in quick)]
        if not todo:
            return
        self.verified += len(todo)
        asked = [(p, p not in quick) for p in todo]
        db = self.stored.path if self.stored is not None else None
        lacking = [i for i in {x for p in todo for x in p} if i not in self._features]
        if db is None or len(todo) < PAIR_POOL_MIN or self.workers == 1:
            self.prepare(lacking)
            found = ((p, unpack_match(verdict(self._features[p[0]], self._features[p[1]],
                                              dense)))
                     for p, dense in asked)
        else:
            unstored = self.stored.lacking(lacking)
            self.prepare(unstored)  # decoded here, once; the workers read the others
            found = _pooled(str(db), asked, {i: self._features[i] for i in unstored},
                            self.workers)
        whole = dict(asked)  # a proven copy is proven whole, however it was matched
        for n, (p, m) in enumerate(found, 1):
            self._keep(p, m, whole[p] or m.same)
            self._new[p] = (m, whole[p] or m.same)
            if progress is not None:
                progress("verifying", n, len(todo))
        LOG.info("verified %d pairs (%d by keypoints alone)", len(todo),
                 sum(not d for _, d in asked))

    def _keep(self, p: tuple[int, int], m: Match, whole: bool) -> None:
        self._matches[p] = m
        if whole:
            self._quick.discard(p)
        else:
            self._quick.add(p)

    def save(self) -> int:
        """Store the verdicts made since the last save with the index; returns how many."""
        n = len(self._new)
        if self.stored is not None and self._new:
            self.stored.save_matches(self._new)
        self._new = {}
        return n

    def colourful(self, i: int) -> bool:
        f = self.features(i)
        return f is not None and matching.colourful(f)
