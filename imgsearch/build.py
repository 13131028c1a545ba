"""Bring one method's FAISS index up to date with the catalog.

A method's index is synced to an ingest generation G (its state.json): every catalog row
changed in a later generation is re-encoded from the pixel cache and upserted, or removed if it
is no longer indexed. Syncing is idempotent, so a run interrupted between writing the index
and its state simply repeats the same upserts next time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .catalog import INDEXED
from .config import BASELINE_METHODS, LEARNED_METHODS
from .embedders import Embedder, load_embedder, new_embedder
from .errors import ImgSearchError, MethodNotBuilt
from .index import IVF_TRAIN, VectorIndex
from .workspace import Workspace

LOG = logging.getLogger(__name__)

ENCODE_BATCH = 1024
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class BuildReport:
    method: str
    fitted: bool
    encoded: int
    removed: int
    total: int
    kind: str
    seconds: float


@dataclass(frozen=True)
class LoadedMethod:
    """A built method's files, loaded together so that they match."""

    state: dict
    embedder: Embedder
    index: VectorIndex


def open_embedder(ws: Workspace, method: str) -> Embedder:
    """The fitted embedder saved for ``method`` in ``ws``."""
    with ws.reading():
        return load_embedder(method, ws.reader_dir(method), ws.config)


def load_method(ws: Workspace, method: str) -> LoadedMethod:
    """``method``'s state, embedder and index, loaded while no writer swaps them; from the last
    complete build, also when a writer was killed in the middle of a swap."""
    with ws.reading():
        folder = ws.reader_dir(method)
        state = ws.method_state(method, folder)
        if state is None:
            built = ", ".join(ws.built_methods()) or "none"
            raise MethodNotBuilt(f"method {method!r} is not built in index {ws.root} "
                                 f"(built: {built})")
        index = VectorIndex.load(folder / "index.faiss", ws.config.ivf_nprobe)
        embedder = load_embedder(method, folder, ws.config)
    return LoadedMethod(state, embedder, index)


def encode_batches(ws: Workspace, embedder: Embedder, ids: list[int],
                   on_progress: ProgressFn | None = None) -> Iterator[tuple[list[int], np.ndarray]]:
    """(ids, codes) of catalog rows ``ids``, from the pixel cache, a batch at a time."""
    done = 0
    for start in range(0, len(ids), ENCODE_BATCH):
        chunk = ids[start : start + ENCODE_BATCH]
        yield chunk, embedder.encode(ws.pixels.read(chunk))
        done += len(chunk)
        if on_progress:
            on_progress(done, len(ids))


def encode_ids(ws: Workspace, embedder: Embedder, ids: list[int],
               on_progress: ProgressFn | None = None) -> np.ndarray:
    """Codes of catalog rows ``ids`` in order, as one (N, dim) array."""
    parts = [codes for _, codes in encode_batches(ws, embedder, ids, on_progress)]
    return np.concatenate(parts) if parts else np.empty((0, embedder.dim), np.float32)


def build_index(ws: Workspace, embedder: Embedder, ids: list[int],
                on_progress: ProgressFn | None = None) -> VectorIndex:
    """A new index of every row in ``ids``, encoded a batch at a time (memory: index + batch)."""
    cfg = ws.config
    train = None
    if len(ids) > cfg.exact_threshold:
        rng = np.random.default_rng(0)
        sample = sorted(rng.choice(ids, size=min(len(ids), IVF_TRAIN), replace=False).tolist())
        train = encode_ids(ws, embedder, sample)
    index = VectorIndex.for_size(embedder.dim, len(ids), cfg.exact_threshold, cfg.ivf_nprobe,
                                 train)
    for chunk, codes in encode_batches(ws, embedder, ids, on_progress):
        index.add(codes, chunk)
    return index


def sync_method(ws: Workspace, method: str, embedder: Embedder | None = None,
                rebuild: bool = False, on_progress: ProgressFn | None = None) -> BuildReport:
    """Bring ``method``'s index up to date with the catalog, and save it.

    - ``embedder`` handed in (a freshly trained or imported model): saved, and every code
      re-encoded with it.
    - a baseline not built yet, or ``rebuild``: fitted on every indexed image, then encoded.
    - a learned method with ``rebuild``: its saved model is kept, every code re-encoded.
    - otherwise: only the rows changed since the index's generation are encoded or removed.

    The new index, its state and the embedder are written to a staging folder and swapped in
    whole (Workspace.commit_method).
    """
    t0 = time.perf_counter()
    cat = ws.catalog
    state = None if rebuild else ws.method_state(method)
    fitted = embedder is None and method in BASELINE_METHODS and state is None
    if fitted:
        ids = cat.indexed_ids()
        if not ids:
            raise ImgSearchError(f"index {ws.root} has no readable images to learn from")
        embedder = new_embedder(method, ws.config)
        LOG.info("fitting %s on %d images", method, len(ids))
        embedder.fit(lambda: ws.pixels.batches(ids, ENCODE_BATCH), len(ids))
    full = embedder is not None or state is None
    if embedder is None:
        if method in LEARNED_METHODS and not (ws.method_dir(method) / "model.pt").is_file():
            raise MethodNotBuilt(f"method {method!r} needs a trained model: run "
                                 f"`imgsearch train --model {method}`")
        embedder = open_embedder(ws, method)

    gen = cat.gen  # read before encoding: rows changed meanwhile are picked up next time
    LOG.info("encoding %s (%s)", method, "every image" if full else f"changes since "
             f"generation {state['gen']}")
    if full:
        ids = cat.indexed_ids()
        folder = ws.staging_dir(method)
        embedder.save(folder)
        index, removed = build_index(ws, embedder, ids, on_progress), 0
    else:
        folder = ws.staging_dir(method, keep_embedder=True)
        index = VectorIndex.load(ws.index_path(method), ws.config.ivf_nprobe)
        changed = cat.changed_since(int(state["gen"]))
        ids = [i for i, s in changed if s == INDEXED]
        removed = index.remove([i for i, s in changed if s != INDEXED])
        for chunk, codes in encode_batches(ws, embedder, ids, on_progress):
            index.upsert(codes, chunk)
        index = index.rebalanced(ws.config.exact_threshold, ws.config.ivf_nprobe)
    LOG.info("writing the %s index (%d codes)", method, index.ntotal)
    index.save(folder / "index.faiss")
    ws.save_method_state(method, {"gen": gen, "kind": index.kind, "dim": index.dim,
                                  "count": index.ntotal}, folder)
    ws.commit_method(method, folder)
    report = BuildReport(method, fitted, len(ids), removed, index.ntotal, index.kind,
                         time.perf_counter() - t0)
    LOG.info("%s", report)
    return report
