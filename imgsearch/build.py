"""Write a method's codes into its vector index, and load a built method back for reading.

A method's vector index is synced to an ingest generation G (its MethodState): every catalog
row changed in a later generation is re-encoded from the image cache and upserted, or removed
if it is no longer indexed. Syncing is idempotent, so a run interrupted between writing the
vector index and its state simply repeats the same upserts next time.

Every new version of a method folder is written in a staging folder and swapped in whole
(Workspace.commit_method). What to do for a method (fit, train, import, re-encode, sync) is
decided by the planner (pipeline.py), not here.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from . import methods
from .catalog import INDEXED
from .engine import LOCAL, Engine
from .errors import MethodNotBuilt
from .index import IVF_TRAIN, GroundTruth, IndexPlan, VectorIndex, plan_index
from .methods import Embedder
from .store import MethodState
from .workspace import Workspace

LOG = logging.getLogger(__name__)

ENCODE_BATCH = 1024
TUNE_QUERIES = 1000  # codes whose exact neighbours the nprobe of an inverted file is tuned on
ProgressFn = Callable[[int, int], None]  # done, total


@dataclass(frozen=True)
class BuildReport:
    """What writing one method's vector index did."""

    method: str
    action: str  # what the planner decided (one of pipeline.ACTIONS)
    encoded: int
    removed: int
    total: int
    index_type: str
    seconds: float


@dataclass(frozen=True)
class LoadedMethod:
    """A built method's files, loaded together so that they match."""

    state: MethodState
    embedder: Embedder
    index: VectorIndex


def open_embedder(ws: Workspace, method: str) -> Embedder:
    """The fitted embedder saved for ``method`` in ``ws`` (a learned method's torch model: to
    encode a collection, decode or sample; queries use load_method's exported encoder)."""
    with ws.reading():
        return methods.open_embedder(method, ws.reader_dir(method), ws.config)


def load_method(ws: Workspace, method: str) -> LoadedMethod:
    """``method``'s state, embedder and vector index, loaded while no writer swaps them; from
    the last complete build, also when a writer was killed in the middle of a swap."""
    methods.get(method)
    with ws.reading():
        folder = ws.reader_dir(method)
        state = ws.method_state(method, folder)
        if state is None:
            built = ", ".join(ws.built_methods()) or "none"
            raise MethodNotBuilt(f"method {method!r} is not built in index {ws.root} "
                                 f"(built: {built})")
        index = VectorIndex.load(folder / ws.INDEX_FILE, mmap=True)
        embedder = methods.open_embedder(method, folder, ws.config, exported=True)
    return LoadedMethod(state, embedder, index)


def encode_batches(ws: Workspace, embedder: Embedder, ids: list[int],
                   on_progress: ProgressFn | None = None, engine: Engine = LOCAL,
                   folder: Path | None = None) -> Iterator[tuple[list[int], np.ndarray]]:
    """(ids, codes) of catalog rows ``ids``, from the image cache, a batch at a time, in
    order; ``engine`` encodes (a cluster engine opens the embedder saved in ``folder``)."""
    chunks = (ids[start : start + ENCODE_BATCH] for start in range(0, len(ids), ENCODE_BATCH))
    batches = ((chunk, ws.cache.read(chunk)) for chunk in chunks)
    done = 0
    for chunk, codes in engine.encode(embedder.name, embedder, folder, ws.config, batches):
        yield chunk, codes
        done += len(chunk)
        if on_progress:
            on_progress(done, len(ids))


def encode_ids(ws: Workspace, embedder: Embedder, ids: list[int],
               on_progress: ProgressFn | None = None, engine: Engine = LOCAL,
               folder: Path | None = None) -> np.ndarray:
    """Codes of catalog rows ``ids`` in order, as one (N, dim) array."""
    parts = [codes for _, codes in encode_batches(ws, embedder, ids, on_progress, engine,
                                                  folder)]
    return np.concatenate(parts) if parts else np.empty((0, embedder.dim), np.float32)


def new_index(ws: Workspace, embedder: Embedder, ids: list[int],
              on_progress: ProgressFn | None = None, memory: int | None = None,
              engine: Engine = LOCAL, folder: Path | None = None) -> VectorIndex:
    """A new vector index of every row in ``ids``, its structure chosen by their number and
    the ``memory`` budget (index.plan_index), encoded a batch at a time (memory: the index and
    a few batches) by ``engine`` (the embedder saved in ``folder``). An inverted file is
    trained on a sample of the codes and its nprobe tuned against exact search for
    TUNE_QUERIES of them, kept up to date as the codes stream past."""
    plan = index_plan(ws, embedder.dim, len(ids), memory)
    index, truth = VectorIndex.empty(embedder.dim), None
    if plan.index_type != "flat":
        sample = train_sample(ids, plan)
        index, truth = trained_index(plan, embedder.dim, sample,
                                     encode_ids(ws, embedder, sample, None, engine, folder))
    for chunk, codes in encode_batches(ws, embedder, ids, on_progress, engine, folder):
        index.add(codes, chunk)
        if truth is not None:
            truth.add(codes, chunk)
    if truth is not None:
        index.tune(truth)
    return index


def index_plan(ws: Workspace, dim: int, n: int, memory: int | None = None) -> IndexPlan:
    """The vector index structure for ``n`` codes of this index within ``memory`` bytes."""
    return plan_index(n, dim, memory, ws.config.exact_threshold)


def sample_ids(ids: list[int], n: int, seed: int = 0) -> list[int]:
    """A seeded sample of ``n`` of ``ids`` (all of them if they are fewer), sorted: what a fit
    or an inverted file's training sees, the same whether the codes stream or not."""
    if n >= len(ids):
        return sorted(ids)
    return sorted(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist())


def train_sample(ids: list[int], plan: IndexPlan) -> list[int]:
    """The ids whose codes train an inverted file of ``plan`` over ``ids`` (39 a list at
    least, as FAISS asks, and at least IVF_TRAIN)."""
    return sample_ids(ids, max(IVF_TRAIN, 39 * plan.nlist))


def trained_index(plan: IndexPlan, dim: int, sample: list[int], codes: np.ndarray
                  ) -> tuple[VectorIndex, GroundTruth]:
    """An empty inverted file of ``plan`` trained on the ``codes`` of ids ``sample``, and the
    exact neighbours of TUNE_QUERIES of them that its nprobe is tuned on (kept up to date as
    the codes are added)."""
    index = VectorIndex.create(plan, dim, codes)
    pick = np.random.default_rng(1).permutation(len(codes))[:TUNE_QUERIES]
    return index, GroundTruth(codes[pick], own=np.asarray(sample)[pick])


@dataclass(frozen=True)
class Assessment:
    """What the self-check says of a method on its collection (fitting.assess)."""

    selfcheck: float | None = None
    duplicate_threshold: float | None = None
    query_margin: float | None = None  # search.Searcher.search_regions
    selfcheck_se: float | None = None  # the score's standard error
    training: dict | None = None  # a learned method's: steps, work, minutes, cap_minutes
    reconstruction: dict | None = None  # fitting.reconstruction
    selfcheck_outcome: dict | None = None  # selfcheck.SelfCheck.outcome: for paired leads
    shots: dict | None = None  # selfcheck.Shots: score, se and its outcome

    @classmethod
    def of(cls, state: MethodState) -> Assessment:
        """The assessment kept in a method's state (the fields of both have the same names)."""
        return cls(**{f.name: getattr(state, f.name) for f in fields(cls)})


@contextmanager
def _discarded_on_failure(folder: Path) -> Iterator[None]:
    """A staging folder whose build fails is removed at once (it would be ignored by readers
    and removed by the next run's recovery anyway; on a full disk this frees the space now).
    A killed process leaves it to recovery."""
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _write(ws: Workspace, method: str, folder, index: VectorIndex, gen: int,
           assessed: Assessment) -> None:
    LOG.info("writing the %s vector index (%d codes)", method, index.ntotal)
    index.save(folder / ws.INDEX_FILE)
    MethodState(gen, index.index_type, index.dim, index.ntotal, recall=index.recall,
                nprobe=index.nprobe, **asdict(assessed)).save(folder)
    ws.commit_method(method, folder)


def build_method(ws: Workspace, method: str, embedder: Embedder, action: str = "encode",
                 on_progress: ProgressFn | None = None,
                 assessed: Assessment = Assessment(), memory: int | None = None,
                 engine: Engine = LOCAL) -> BuildReport:
    """Save ``embedder`` as ``method``'s and encode every indexed image with it (on
    ``engine``, from the saved copy) into a new vector index, swapped in with the embedder;
    ``assessed``: its self-check score and duplicate threshold, kept in its state."""
    t0 = time.perf_counter()
    gen = ws.catalog.gen  # read before encoding: rows changed meanwhile are picked up next time
    ids = ws.catalog.indexed_ids()
    LOG.info("encoding %s: every image (%d)", method, len(ids))
    folder = ws.staging_dir(method)
    with _discarded_on_failure(folder):
        embedder.save(folder)
        index = new_index(ws, embedder, ids, on_progress, memory, engine, folder)
        _write(ws, method, folder, index, gen, assessed)
    report = BuildReport(method, action, len(ids), 0, index.ntotal, index.index_type,
                         time.perf_counter() - t0)
    LOG.info("%s", report)
    return report


def sync_method(ws: Workspace, method: str, on_progress: ProgressFn | None = None,
                memory: int | None = None, engine: Engine = LOCAL) -> BuildReport:
    """Bring a built method's vector index up to date with the catalog: encode the rows
    changed since its generation with its saved embedder (on ``engine``), remove the rows
    gone. If the collection has grown (or shrunk) past what its structure is for, it is built
    anew from the image cache, with the same embedder."""
    t0 = time.perf_counter()
    state = ws.method_state(method)
    if state is None:
        raise MethodNotBuilt(f"method {method!r} is not built in index {ws.root}")
    cat = ws.catalog
    gen = cat.gen
    assessed = Assessment.of(state)  # the same embedder
    index = VectorIndex.load(ws.index_path(method))
    n = cat.counts()[INDEXED]  # what the index holds once in sync
    if not index.matches(index_plan(ws, index.dim, n, memory)):
        LOG.info("%s: %d codes need another index structure; building it anew", method, n)
        return build_method(ws, method, open_embedder(ws, method), "sync", on_progress,
                            assessed, memory, engine)  # the same embedder, saved again
    embedder = open_embedder(ws, method)
    LOG.info("encoding %s: changes since generation %d", method, state.gen)
    folder = ws.staging_dir(method, keep_embedder=True)
    with _discarded_on_failure(folder):
        changed = cat.changed_since(state.gen)
        ids = [i for i, s in changed if s == INDEXED]
        removed = index.remove([i for i, s in changed if s != INDEXED])
        for chunk, codes in encode_batches(ws, embedder, ids, on_progress, engine, folder):
            index.upsert(codes, chunk)
        if index.recall is None:  # an inverted file's, measured when it was built
            index.recall = state.recall
        _write(ws, method, folder, index, gen, assessed)
    report = BuildReport(method, "sync", len(ids), removed, index.ntotal, index.index_type,
                         time.perf_counter() - t0)
    LOG.info("%s", report)
    return report


@contextmanager
def beside_decoding(controller=None) -> Iterator[None]:
    """Numeric work in one thread while worker processes decode on every core (BLAS,
    OpenMP, torch's own pool): more threads would only take the cores from the decoders,
    and their spin-waiting slowed a 10,000-photo run by a third (docs/BENCHMARKS.md).
    ``controller``: a threadpoolctl ThreadpoolController made once (finding the thread pools
    anew takes about a millisecond, once a batch of rows)."""
    import sys

    from threadpoolctl import ThreadpoolController

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        with (controller or ThreadpoolController()).limit(limits=1):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


class StreamedBuild:
    """One baseline's first vector index, built while the photos are decoded
    (pipeline.update_index hands it to ingest.ingest as a sink), to the same result as
    build_method after decoding: the fit's sample and an inverted file's training sample are
    those build_method would draw (sample_ids), decoded first, so the embedder is fitted and
    the index trained as soon as they are in, and every later code is added as its photo's
    row is committed. Nothing is written until ``write``: a run that stops leaves no trace.

        stream = StreamedBuild(ws, "pca", memory)
        ingest(..., sink=stream)          # first(ids), then indexed(ids) / failed(ids)
        embedder = stream.complete()      # None: build it the usual way (see complete)
        report = stream.write(assessed)
    """

    def __init__(self, ws: Workspace, method: str, memory: int | None = None):
        self.ws, self.method, self.memory = ws, method, memory
        self.embedder = methods.get(method).create(ws.config)
        self.plan: IndexPlan | None = None
        self.index: VectorIndex | None = None  # once fitted and trained: codes go straight in
        self.truth: GroundTruth | None = None
        self.fit_ids: list[int] = []
        self.train_ids: list[int] = []
        self.waiting: set[int] = set()  # samples' ids not decoded (nor failed) yet
        self.held: list[int] = []  # ids decoded before the index was ready
        self.added: set[int] = set()
        self.pools = None  # the thread pools beside_decoding limits, found once ready
        self.t0 = time.perf_counter()

    def first(self, ids: list[int]) -> list[int]:
        """``ids``: the catalog ids of the files about to be decoded; returns those to decode
        first (the samples: the fit's, then the rest of the training sample's)."""
        self.plan = index_plan(self.ws, self.embedder.dim, len(ids), self.memory)
        if self.embedder.fit_sample:
            self.fit_ids = sample_ids(ids, self.embedder.fit_sample)
        if self.plan.index_type != "flat":
            self.train_ids = train_sample(ids, self.plan)
        self.waiting = set(self.fit_ids) | set(self.train_ids)
        return self.fit_ids + sorted(set(self.train_ids) - set(self.fit_ids))

    def indexed(self, ids: list[int], decoding: bool = True) -> None:
        """Rows ``ids`` are committed, their pixels in the image cache (``decoding``: while
        the readers still decode, on every core)."""
        if self.index is None:
            self.held += ids
            self._resolved(ids, decoding)
        else:
            with beside_decoding(self.pools) if decoding else nullcontext():
                self._add(ids)

    def failed(self, ids: list[int], decoding: bool = True) -> None:
        """Files ``ids`` could not be read: no codes for them."""
        if self.index is None:
            self._resolved(ids, decoding)

    def _resolved(self, ids: list[int], decoding: bool) -> None:
        self.waiting.difference_update(ids)
        if not self.waiting:
            with beside_decoding() if decoding else nullcontext():
                self._ready()
            if decoding:  # the pools the fit loaded (torch's, for PCA) are known now
                from threadpoolctl import ThreadpoolController

                self.pools = ThreadpoolController()

    def _ready(self) -> None:
        """Fit on the fit sample, train on the training sample (what of them was read), then
        add what was held."""
        held = set(self.held)
        if self.fit_ids:
            fit = [i for i in self.fit_ids if i in held]
            self.embedder.fit(lambda: self.ws.cache.batches(fit, ENCODE_BATCH), len(fit))
        dim = self.embedder.dim
        if self.train_ids:
            train = [i for i in self.train_ids if i in held]
            self.index, self.truth = trained_index(self.plan, dim, train,
                                                   encode_ids(self.ws, self.embedder, train))
        else:
            self.index = VectorIndex.empty(dim)
        LOG.info("%s: fitted and ready after %d photos; the rest are encoded as they come",
                 self.method, len(held))
        pending, self.held = sorted(held), []
        self._add(pending)

    def _add(self, ids: list[int]) -> None:
        """Encode rows ``ids`` from the image cache, a batch at a time, into the index."""
        for chunk, codes in encode_batches(self.ws, self.embedder, ids):
            self.index.add(codes, chunk)
            if self.truth is not None:
                self.truth.add(codes, chunk)
        self.added.update(ids)

    def complete(self) -> Embedder | None:
        """After the ingest: the fitted embedder, its index holding exactly the catalog's
        indexed rows (any not streamed encoded now, any no longer indexed removed), its nprobe
        tuned. None if the collection ended up needing another structure than the one planned
        (so many files failed that the code count crossed a threshold): build it the usual
        way then."""
        if self.index is None:
            self._ready()
        ids = self.ws.catalog.indexed_ids()
        if not ids or not self.index.matches(index_plan(self.ws, self.embedder.dim, len(ids),
                                                        self.memory)):
            return None
        self.index.remove(sorted(self.added - set(ids)))
        self._add([i for i in ids if i not in self.added])
        if self.truth is not None:
            self.index.tune(self.truth)
        self.gen = self.ws.catalog.gen
        return self.embedder

    def write(self, assessed: Assessment = Assessment()) -> BuildReport:
        """Save the embedder and index in a staging folder and swap them in, as build_method
        does."""
        folder = self.ws.staging_dir(self.method)
        with _discarded_on_failure(folder):
            self.embedder.save(folder)
            _write(self.ws, self.method, folder, self.index, self.gen, assessed)
        report = BuildReport(self.method, "fit", self.index.ntotal, 0, self.index.ntotal,
                             self.index.index_type, time.perf_counter() - self.t0)
        LOG.info("%s (streamed while decoding)", report)
        return report


class Streams:
    """Several StreamedBuilds as one sink for ingest.ingest."""

    def __init__(self, builds: dict[str, StreamedBuild]):
        self.builds = builds

    def first(self, ids: list[int]) -> list[int]:
        """The builds' samples, the smallest first: the build that needs least is ready
        soonest, whatever the others wait for."""
        order: dict[int, None] = {}
        for wanted in sorted((b.first(ids) for b in self.builds.values()), key=len):
            order.update(dict.fromkeys(wanted))
        return list(order)

    def indexed(self, ids: list[int], decoding: bool = True) -> None:
        for b in self.builds.values():
            b.indexed(ids, decoding)

    def failed(self, ids: list[int], decoding: bool = True) -> None:
        for b in self.builds.values():
            b.failed(ids, decoding)
