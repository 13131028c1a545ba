"""The planner: bring an index up to date with a folder of photos, deciding once per method
what to do, then doing it.

    update_index(ws, photos, ["pixels", "pca", "ae"]) -> IndexReport

For each method the plan is one of:
- ``import``: a model trained elsewhere (``model=PATH``) becomes the method's embedder;
- ``train``: a learned method with no trained model is trained on the cached pixels;
- ``fit``: a baseline not built yet (or ``rebuild``) is fitted on the cached pixels;
- ``encode``: a learned method's saved model re-encodes every image (``rebuild``, or no index);
- ``sync``: only the catalog rows changed since the method's generation are encoded or removed.

Progress is reported through one callback, ``progress(phase, done, total, note)``; the CLI
draws it as bars. Nothing here prints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import methods
from .build import ENCODE_BATCH, BuildReport, build_method, sync_method
from .config import TrainConfig
from .errors import CatalogError, ConfigMismatch, ImgSearchError
from .imagecache import CachedImages
from .ingest import IngestReport, ingest
from .store import WriteLock
from .workspace import Workspace

LOG = logging.getLogger(__name__)

#: progress(phase, done, total, note): ``total`` None while unknown.
Progress = Callable[[str, int, "int | None", str], None]

ACTIONS = ("import", "train", "fit", "encode", "sync")


@dataclass(frozen=True)
class Step:
    """What the planner decided for one method, and why."""

    method: str
    action: str  # one of ACTIONS
    reason: str


@dataclass
class IndexReport:
    """What one update_index run did."""

    root: str
    ingest: IngestReport
    built: list[BuildReport] = field(default_factory=list)  # one per planned step
    recovered: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings worth showing the user


def _quiet(phase: str, done: int, total: int | None, note: str = "") -> None:
    pass


# -- the plan ------------------------------------------------------------------------------
def plan(ws: Workspace, wanted: list[str], imported: str | None = None,
         rebuild: bool = False) -> list[Step]:
    """One step per method: the imported method first, then ``wanted`` in order."""
    steps = [Step(imported, "import", "a model trained elsewhere was given")] if imported else []
    for name in wanted:
        if name == imported:
            continue
        spec = methods.get(name)
        built = not rebuild and ws.method_state(name) is not None  # rebuild: state unread
        if spec.learned and not ws.has_model(name):
            steps.append(Step(name, "train", "no trained model yet"))
        elif spec.learned and (rebuild or not built):
            steps.append(Step(name, "encode", "rebuild asked for" if rebuild else
                              "trained model without a vector index"))
        elif rebuild or not built:
            steps.append(Step(name, "fit", "rebuild asked for" if rebuild else "not built yet"))
        else:
            steps.append(Step(name, "sync", "built: encode only what changed"))
    return steps


# -- learned methods -----------------------------------------------------------------------
def model_config(ws: Workspace, method: str, **settings):
    """The model config of learned ``method`` for this index's images: the method's default
    settings, overridden by ``settings``."""
    from .models.checkpoint import new_config

    spec = methods.get(method)
    if not spec.learned:
        raise ConfigMismatch(f"method {method!r} is not learned; learned methods: "
                             f"{', '.join(methods.names(learned=True))}")
    return new_config(spec.arch, input_size=ws.config.input_size, channels=3,
                      code_dim=ws.config.code_dim, **{**spec.settings, **settings})


def import_model(ws: Workspace, path: Path):
    """A checkpoint trained elsewhere, checked against this index's images and the registry."""
    from .methods.learned import LearnedEmbedder

    embedder = LearnedEmbedder.from_file(path)
    spec = methods.get(embedder.name)
    if spec.arch != embedder.arch:
        raise ConfigMismatch(f"checkpoint {path} holds a {embedder.arch} model, but method "
                             f"{spec.name!r} is a {spec.arch}")
    embedder.check_input(ws.config.input_size, 3)
    return embedder


def train_method(ws: Workspace, method: str, model_cfg, train_cfg: TrainConfig,
                 fresh: bool = False, progress: Progress = _quiet
                 ) -> tuple[list, BuildReport]:
    """Train (or resume) ``method`` on every indexed image's cached pixels, then index its
    codes; returns (history, build report)."""
    from .methods.learned import LearnedEmbedder
    from .training import train

    ids = ws.catalog.indexed_ids()
    if len(ids) < 2:
        raise ImgSearchError(f"index {ws.root} has {len(ids)} indexed images; "
                             "training needs at least 2")
    ckpt = ws.training_checkpoint(method)  # resumable: with the optimizer state
    if fresh and ckpt.exists():
        ckpt.unlink()
    LOG.info("training %s on %d images", method, len(ids))

    def on_train(step: int, steps: int, loss: float, rate: float) -> None:
        progress(f"train {method}", step, steps, f"loss {loss:.4g}")

    history = train(method, model_cfg, CachedImages(ws.cache, ids), train_cfg, ckpt, on_train)
    embedder = LearnedEmbedder.from_file(ckpt)
    return history, build_method(ws, method, embedder, "train", _phase(progress, method))


def train_on_array(method: str, model_cfg, images: np.ndarray, train_cfg: TrainConfig,
                   checkpoint: Path, resume: bool = False):
    """Train ``method`` on an in-memory (N, S, S, C) uint8 array, as the evaluation scripts
    do; returns the trained embedder and a JSON-ready summary of the training."""
    from .methods.learned import LearnedEmbedder
    from .models.checkpoint import load_checkpoint
    from .training import ArraySource, train

    checkpoint = Path(checkpoint)
    if checkpoint.exists() and not resume:
        checkpoint.unlink()
    history = train(method, model_cfg, ArraySource(images), train_cfg, checkpoint)
    summary = {"epochs": len(history), "minutes": sum(h.seconds for h in history) / 60,
               "images_per_s": history[-1].images_per_s, "val_loss": history[-1].val_loss,
               "model": asdict(model_cfg), "train_config": asdict(train_cfg)}
    return LearnedEmbedder(load_checkpoint(checkpoint)), summary


# -- baselines -----------------------------------------------------------------------------
def fit_baseline(ws: Workspace, method: str):
    """A new embedder for baseline ``method``, fitted on every indexed image."""
    ids = ws.catalog.indexed_ids()
    if not ids:
        raise ImgSearchError(f"index {ws.root} has no readable images to learn from")
    embedder = methods.get(method).create(ws.config)
    LOG.info("fitting %s on %d images", method, len(ids))
    embedder.fit(lambda: ws.cache.batches(ids, ENCODE_BATCH), len(ids))
    return embedder


# -- the whole update ----------------------------------------------------------------------
def _phase(progress: Progress, method: str):
    def on_encode(done: int, total: int) -> None:
        progress(f"encode {method}", done, total, "")
    return on_encode


def run_step(ws: Workspace, step: Step, budget: TrainConfig, imported=None,
             progress: Progress = _quiet) -> BuildReport:
    """Carry out one planned step."""
    m = step.method
    if step.action == "import":
        return build_method(ws, m, imported, "import", _phase(progress, m))
    if step.action == "train":
        return train_method(ws, m, model_config(ws, m), budget, progress=progress)[1]
    if step.action == "fit":
        return build_method(ws, m, fit_baseline(ws, m), "fit", _phase(progress, m))
    if step.action == "encode":
        from .build import open_embedder

        return build_method(ws, m, open_embedder(ws, m), "encode", _phase(progress, m))
    return sync_method(ws, m, _phase(progress, m))


def update_methods(ws: Workspace, wanted: list[str], *, imported=None, rebuild: bool = False,
                   budget: TrainConfig | None = None, progress: Progress = _quiet
                   ) -> list[BuildReport]:
    """Plan and carry out every method in ``wanted`` (and an ``imported`` model's method) on
    the catalog as it is; the caller holds the write lock. Returns a report per step."""
    steps = plan(ws, wanted, imported.name if imported is not None else None, rebuild)
    LOG.info("plan: %s", "; ".join(f"{s.method}: {s.action} ({s.reason})" for s in steps))
    return [run_step(ws, s, budget or TrainConfig(), imported, progress) for s in steps]


def update_index(ws: Workspace, photos: Path, wanted: list[str], *, model: Path | None = None,
                 budget: TrainConfig | None = None, workers: int | None = None,
                 rebuild: bool = False, wait: float | None = 0,
                 progress: Progress = _quiet) -> IndexReport:
    """Ingest ``photos`` (new, changed and deleted files only) and bring every method in
    ``wanted`` up to date, holding the index's write lock throughout.

    A learned method with no model is trained within ``budget``; ``model`` imports a
    checkpoint trained elsewhere instead; ``rebuild`` re-fits every method from the cache (and
    moves a corrupt catalog aside, ingesting the folder anew).
    """
    budget = budget or TrainConfig()
    for name in wanted:
        methods.get(name)
    with WriteLock(ws.root, "imgsearch index", wait):
        recovered = ws.recover()
        notes = []
        if rebuild:
            try:
                ws.catalog  # noqa: B018 - opening it is the check
            except CatalogError as e:
                moved = ws.reset_catalog()
                notes.append(f"{e}; moved it to {moved} and ingesting the folder anew")
                LOG.warning("%s", notes[-1])
        imported = import_model(ws, model) if model is not None else None  # before any work

        def on_ingest(done: int, total: int) -> None:
            progress("ingest", done, total, "")

        ingested = ingest(photos, ws.catalog, ws.cache, workers, on_ingest)
        built = update_methods(ws, wanted, imported=imported, rebuild=rebuild, budget=budget,
                               progress=progress)
    return IndexReport(str(ws.root), ingested, built, recovered, notes)
