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
from contextlib import contextmanager
from dataclasses import dataclass
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
        rng = np.random.default_rng(0)
        n_train = min(len(ids), max(IVF_TRAIN, 39 * plan.nlist))
        sample = sorted(rng.choice(ids, size=n_train, replace=False).tolist())
        train = encode_ids(ws, embedder, sample, None, engine, folder)
        index = VectorIndex.create(plan, embedder.dim, train)
        pick = rng.permutation(len(train))[:TUNE_QUERIES]
        truth = GroundTruth(train[pick], own=np.asarray(sample)[pick])
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


@dataclass(frozen=True)
class Assessment:
    """What the self-check says of a method on its collection (fitting.assess)."""

    selfcheck: float | None = None
    duplicate_threshold: float | None = None
    query_margin: float | None = None  # search.Searcher.search_regions
    selfcheck_se: float | None = None  # the score's standard error
    training: dict | None = None  # a learned method's: steps, work, minutes, cap_minutes


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
    MethodState(gen, index.index_type, index.dim, index.ntotal, assessed.selfcheck,
                assessed.duplicate_threshold, index.recall, index.nprobe,
                assessed.query_margin, assessed.selfcheck_se, assessed.training).save(folder)
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
    assessed = Assessment(state.selfcheck, state.duplicate_threshold,  # the same embedder
                          state.query_margin, state.selfcheck_se, state.training)
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
