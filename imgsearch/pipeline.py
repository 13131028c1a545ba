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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import methods
from .build import ENCODE_BATCH, Assessment, BuildReport, build_method, sync_method
from .config import TrainConfig
from .engine import LOCAL, Engine
from .errors import CatalogError, ConfigMismatch, ImgSearchError
from .imagecache import CachedImages
from .ingest import IngestReport, ScanRules, ingest
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
    seconds: float = 0.0  # the whole update

    def as_dict(self) -> dict:
        """JSON-ready: ``imgsearch index --json`` prints it."""
        ingested = asdict(self.ingest)
        ingested["failed"] = [{"path": p, "reason": r} for p, r in self.ingest.failed]
        return {"root": self.root, "seconds": self.seconds, "ingest": ingested,
                "methods": [asdict(b) for b in self.built], "recovered": self.recovered,
                "notes": self.notes}


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


def train_config(method: str, **overrides) -> TrainConfig:
    """How ``method`` trains: its recipe in the registry, overridden by ``overrides``."""
    return TrainConfig(**{**methods.get(method).training, **overrides})


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


# -- the self-check ------------------------------------------------------------------------
def held_out(ws: Workspace, ids: list[int]) -> tuple[list[int], list[int]]:
    """(held, distractors): the catalog ids of ``ids`` that the self-check holds out of
    training, and those it searches among (holdout.split, by content hash)."""
    from .holdout import split

    rows = ws.catalog.get_many(ids)
    held, rest = split([rows[i].hash or f"id {i}" for i in ids])
    return [ids[p] for p in held], [ids[p] for p in rest]


def self_check(ws: Workspace, ids: list[int] | None = None):
    """The index's self-check (selfcheck.py): edited copies of its held-out images searched
    among them and a sample of the rest; None if the collection is too small."""
    from .selfcheck import SelfCheck

    ids = ws.catalog.indexed_ids() if ids is None else ids
    held, rest = held_out(ws, ids)
    if not held:
        return None
    return SelfCheck(ws.cache.read(held), ws.cache.read(rest))


def prepare(ws: Workspace, method: str, embedder, post: str | None = None):
    """``embedder`` (a new baseline, or a trained model) with the method's post-processing,
    fitted on the indexed images; a baseline's own fit happens here too."""
    from .methods.postprocess import Processed, parse, unwrap

    steps = parse(methods.get(method).post if post is None else post)
    ids = ws.catalog.indexed_ids()
    if not ids:
        raise ImgSearchError(f"index {ws.root} has no readable images to learn from")
    out = Processed(unwrap(embedder), steps) if steps else unwrap(embedder)
    LOG.info("fitting %s on %d images", method, len(ids))
    out.fit(lambda: ws.cache.batches(ids, ENCODE_BATCH), len(ids))
    return out


MIN_REGION_INPUT = 48  # inputs at least this side are searched with regions too


def assess(ws: Workspace, check, embedder, method: str) -> Assessment:
    """The self-check score of ``embedder`` and its duplicate threshold, calibrated on the
    same held-out images (duplicates.calibrate); nothing without a self-check."""
    from .duplicates import calibrate

    if check is None:
        return Assessment()
    score, se = check.measure(embedder.encode)
    cal = calibrate(check, embedder.encode)
    # query regions (search.search_regions) must beat the whole query by the median distance
    # of an edited copy to its original; photos only: a small image has no regions worth it
    margin = cal.copy_distances[0] if ws.config.input_size >= MIN_REGION_INPUT else None
    LOG.info("%s self-check recall@1: %.4f ± %.4f; duplicate threshold %.4g; query margin %s",
             method, score, se, cal.threshold, margin)
    return Assessment(score, cal.threshold, margin, se)


# -- learned methods -----------------------------------------------------------------------
def train_method(ws: Workspace, method: str, model_cfg, train_cfg: TrainConfig,
                 fresh: bool = False, progress: Progress = _quiet, post: str | None = None,
                 check=False, memory: int | None = None, engine: Engine = LOCAL
                 ) -> tuple[list, BuildReport]:
    """Train (or resume) ``method`` on the indexed images' cached pixels (less the images the
    self-check holds out), keeping the weights that score best on the self-check; then fit its
    post-processing and index its codes (on ``engine``; training itself always runs here).
    Returns (history, build report)."""
    from .methods.learned import LearnedEmbedder
    from .training import train

    ids = ws.catalog.indexed_ids()
    if len(ids) < 2:
        raise ImgSearchError(f"index {ws.root} has {len(ids)} indexed images; "
                             "training needs at least 2")
    check = self_check(ws, ids) if check is False else check
    held = set(held_out(ws, ids)[0]) if check is not None else set()
    train_ids = [i for i in ids if i not in held]
    ckpt = ws.training_checkpoint(method)  # resumable: with the optimizer state
    if fresh and ckpt.exists():
        ckpt.unlink()
    LOG.info("training %s on %d images (%d held out for the self-check)", method,
             len(train_ids), len(held))
    last_score = [""]

    def on_train(step: int, steps: int, loss: float, rate: float) -> None:
        progress(f"train {method}", step, steps, f"loss {loss:.4g}{last_score[0]}")

    def scored(encode) -> float:
        score = check(encode)
        last_score[0] = f", self-check {score:.3f}"
        return score

    history = train(method, model_cfg, CachedImages(ws.cache, train_ids), train_cfg, ckpt,
                    on_train, scored if check is not None else None)
    learned = LearnedEmbedder.from_file(ckpt)
    embedder = prepare(ws, method, learned, post)
    done = {"steps": learned.ckpt.get("step", 0), "work": learned.ckpt.get("work", 0),
            "minutes": round(sum(h.seconds for h in history) / 60, 2),
            "cap_minutes": train_cfg.max_minutes}
    assessed = replace(assess(ws, check, embedder, method), training=done)
    return history, build_method(ws, method, embedder, "train", _phase(progress, method),
                                 assessed, memory, engine)


def train_on_array(method: str, model_cfg, images: np.ndarray, train_cfg: TrainConfig,
                   checkpoint: Path, resume: bool = False, check=None, post: str = "",
                   saved: bool = False):
    """Train ``method`` on an in-memory (N, S, S, C) uint8 array, as the evaluation scripts
    do (``check``: a SelfCheck, or None), then fit the post-processing ``post`` on the
    array; returns the embedder and a JSON-ready summary of the training. ``resume``: continue
    the saved run; ``saved``: the saved checkpoint as it is, no more training (trained afresh
    if there is none)."""
    from .methods.learned import LearnedEmbedder
    from .methods.postprocess import Processed, parse
    from .models.checkpoint import load_checkpoint
    from .training import ArraySource, train

    checkpoint = Path(checkpoint)
    if checkpoint.exists() and not (resume or saved):
        checkpoint.unlink()
    saved = saved and checkpoint.exists()
    if not saved:
        history = train(method, model_cfg, ArraySource(images), train_cfg, checkpoint,
                        check=check)
    ckpt = load_checkpoint(checkpoint)
    if saved:
        from .training import Epoch

        history = [Epoch(**h) for h in ckpt["history"]]
    summary = {"epochs": len(history), "steps": ckpt.get("step", 0),
               "minutes": sum(h.seconds for h in history) / 60,
               "images_per_s": history[-1].images_per_s, "val_loss": history[-1].val_loss,
               "best_epoch": ckpt["best"]["epoch"] if ckpt.get("best") else None,
               "selfcheck": [h.selfcheck for h in history],
               "model": asdict(model_cfg), "train_config": asdict(train_cfg), "post": post}
    embedder = LearnedEmbedder(ckpt)
    steps = parse(post)
    if steps:
        embedder = Processed(embedder, steps)
        data = images if images.ndim == 4 else images[..., None]
        embedder.fit(lambda: (data[i : i + 1024] for i in range(0, len(data), 1024)),
                     len(data))
    return embedder, summary


# -- the whole update ----------------------------------------------------------------------
def _phase(progress: Progress, method: str):
    def on_encode(done: int, total: int) -> None:
        progress(f"encode {method}", done, total, "")
    return on_encode


def run_step(ws: Workspace, step: Step, training: dict | None = None, imported=None,
             progress: Progress = _quiet, check=False, memory: int | None = None,
             engine: Engine = LOCAL) -> BuildReport:
    """Carry out one planned step (``training``: TrainConfig overrides of the recipe;
    ``memory``: the vector index's budget in bytes, default a quarter of the machine's); the
    codes are encoded on ``engine``, fitting and training run here."""
    t0 = time.perf_counter()
    m, phase = step.method, _phase(progress, step.method)
    if step.action == "sync":
        report = sync_method(ws, m, phase, memory, engine)
    elif step.action == "train":
        check = self_check(ws) if check is False else check
        report = train_method(ws, m, model_config(ws, m), train_config(m, **(training or {})),
                              progress=progress, check=check, memory=memory, engine=engine)[1]
    else:
        check = self_check(ws) if check is False else check
        if step.action == "import":
            embedder = prepare(ws, m, imported)
        elif step.action == "fit":
            embedder = prepare(ws, m, methods.get(m).create(ws.config))
        else:  # encode: the saved model, its post-processing fitted anew on the collection
            from .build import open_embedder

            embedder = prepare(ws, m, open_embedder(ws, m))
        report = build_method(ws, m, embedder, step.action, phase,
                              assess(ws, check, embedder, m), memory, engine)
    # the whole step: training, fitting and the self-check included
    return replace(report, seconds=time.perf_counter() - t0)


def update_methods(ws: Workspace, wanted: list[str], *, imported=None, rebuild: bool = False,
                   training: dict | None = None, progress: Progress = _quiet,
                   memory: int | None = None, engine: Engine = LOCAL) -> list[BuildReport]:
    """Plan and carry out every method in ``wanted`` (and an ``imported`` model's method) on
    the catalog as it is, encoding on ``engine``; the caller holds the write lock. Returns a
    report per step."""
    steps = plan(ws, wanted, imported.name if imported is not None else None, rebuild)
    LOG.info("plan: %s", "; ".join(f"{s.method}: {s.action} ({s.reason})" for s in steps))
    check = self_check(ws) if any(s.action != "sync" for s in steps) else None
    return [run_step(ws, s, training, imported, progress, check, memory, engine)
            for s in steps]


def update_index(ws: Workspace, photos: Path, wanted: list[str], *, model: Path | None = None,
                 training: dict | None = None, workers: int | None = None,
                 rules: ScanRules | None = None, index_memory: int | None = None,
                 rebuild: bool = False, wait: float | None = 0,
                 progress: Progress = _quiet, engine: Engine = LOCAL) -> IndexReport:
    """Ingest ``photos`` (new, changed and deleted files only; the files ``rules`` keep) and
    bring every method in ``wanted`` up to date, holding the index's write lock throughout.

    A learned method with no model is trained by its recipe, ``training`` overriding its
    TrainConfig settings (the time budget, say); ``model`` imports a
    checkpoint trained elsewhere instead; ``rebuild`` re-fits every method from the cache (and
    moves a corrupt catalog aside, ingesting the folder anew). ``engine`` reads the photos
    and encodes the codes (engine.py: this machine, or a Ray cluster); this process writes the
    catalog, the image cache and the vector indexes, and trains.
    """
    for name in wanted:
        methods.get(name)
    t0 = time.perf_counter()
    with ws.writing("imgsearch index", wait) as recovered:
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

        ingested = ingest(photos, ws.catalog, ws.cache, workers, on_ingest,
                          rules or ScanRules(), engine)
        built = update_methods(ws, wanted, imported=imported, rebuild=rebuild,
                               training=training, progress=progress, memory=index_memory,
                               engine=engine)
    return IndexReport(str(ws.root), ingested, built, recovered, notes,
                       time.perf_counter() - t0)
