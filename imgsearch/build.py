"""Bring one method's FAISS index up to date with the catalog.

A method's index is synced to an ingest generation G (its state.json): every catalog row
changed in a later generation is re-encoded from the pixel cache and upserted, or removed if it
is no longer indexed. Syncing is idempotent, so a run interrupted between writing the index
and its state simply repeats the same upserts next time.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .catalog import INDEXED
from .embedders import Embedder, load_embedder, new_embedder
from .errors import ImgSearchError
from .index import VectorIndex
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


def open_embedder(ws: Workspace, method: str) -> Embedder:
    """The fitted embedder saved for ``method`` in ``ws``."""
    return load_embedder(method, ws.method_dir(method), ws.config)


def encode_ids(ws: Workspace, embedder: Embedder, ids: list[int],
               on_progress: ProgressFn | None = None) -> np.ndarray:
    """Codes of catalog rows ``ids``, from the pixel cache, in order."""
    out = np.empty((len(ids), embedder.dim), np.float32)
    done = 0
    for batch in ws.pixels.batches(ids, ENCODE_BATCH):
        out[done : done + len(batch)] = embedder.encode(batch)
        done += len(batch)
        if on_progress:
            on_progress(done, len(ids))
    return out


def sync_method(ws: Workspace, method: str, embedder: Embedder | None = None,
                rebuild: bool = False, on_progress: ProgressFn | None = None) -> BuildReport:
    """Fit (if new, or ``rebuild``), encode what changed, and save the method's index.

    ``embedder`` may be handed in already fitted (a trained model); otherwise a baseline is
    fitted on every indexed image the first time.
    """
    t0 = time.perf_counter()
    cat, cfg = ws.catalog, ws.config
    state = None if rebuild else ws.method_state(method)
    if rebuild and ws.method_dir(method).exists() and embedder is None:
        shutil.rmtree(ws.method_dir(method))
    fitted = False
    if state is None or embedder is not None:
        if embedder is None:
            embedder = new_embedder(method, cfg)
            ids = cat.indexed_ids()
            if not ids:
                raise ImgSearchError(f"index {ws.root} has no readable images to learn from")
            embedder.fit(lambda: ws.pixels.batches(ids, ENCODE_BATCH), len(ids))
            fitted = True
        embedder.save(ws.method_dir(method))
        state = None  # a new embedder invalidates every code
    else:
        embedder = open_embedder(ws, method)

    gen = cat.gen
    if state is None:
        ids = cat.indexed_ids()
        index = VectorIndex.build(encode_ids(ws, embedder, ids, on_progress), ids,
                                  cfg.exact_threshold, cfg.ivf_nprobe)
        removed = 0
    else:
        index = VectorIndex.load(ws.index_path(method), cfg.ivf_nprobe)
        changed = cat.changed_since(int(state["gen"]))
        ids = [i for i, s in changed if s == INDEXED]
        gone = [i for i, s in changed if s != INDEXED]
        removed = index.remove(gone)
        index.upsert(encode_ids(ws, embedder, ids, on_progress), ids)
        index = index.rebalanced(cfg.exact_threshold, cfg.ivf_nprobe)
    index.save(ws.index_path(method))
    ws.save_method_state(method, {"gen": gen, "kind": index.kind, "dim": index.dim,
                                  "count": index.ntotal})
    report = BuildReport(method, fitted, len(ids), removed, index.ntotal, index.kind,
                         time.perf_counter() - t0)
    LOG.info("%s", report)
    return report

