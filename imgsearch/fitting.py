"""One method's work, for the planner (pipeline.py) and `imgsearch train`: its model and
training settings, the collection's self-check, fitting or training the method, assessing it
(self-check score, duplicate threshold, query margin), then building its vector index.

    check = self_check(ws)  # once per run: a SelfCheck, or None on a collection too small
    history, report = train_method(ws, "ae", model_config(ws, "ae"), train_config("ae"),
                                   check=check)

The self-check is the caller's, computed once and passed explicitly (``SelfCheck | None``):
every method of a run is scored on the same held-out images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import methods
from .build import ENCODE_BATCH, Assessment, BuildReport, build_method, sample_ids
from .config import TrainConfig
from .engine import LOCAL, Engine
from .errors import ConfigMismatch, ImgSearchError
from .imagecache import CachedImages
from .workspace import Workspace

if TYPE_CHECKING:
    from .selfcheck import SelfCheck

LOG = logging.getLogger(__name__)

#: progress(phase, done, total, note): ``total`` None while unknown.
Progress = Callable[[str, int, "int | None", str], None]


def quiet(phase: str, done: int, total: int | None, note: str = "") -> None:
    """A progress callback that shows nothing."""


def encode_phase(progress: Progress, method: str):
    """``progress`` as the (done, total) callback of encoding ``method``'s codes."""
    def on_encode(done: int, total: int) -> None:
        progress(f"encode {method}", done, total, "")
    return on_encode


# -- settings ------------------------------------------------------------------------------
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


def self_check(ws: Workspace, ids: list[int] | None = None) -> SelfCheck | None:
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
    from .methods.postprocess import processed, unwrap

    ids = ws.catalog.indexed_ids()
    if not ids:
        raise ImgSearchError(f"index {ws.root} has no readable images to learn from")
    out = processed(unwrap(embedder), methods.get(method).post if post is None else post)
    if out.fit_sample:  # the sample a streamed build fits on too (build.StreamedBuild)
        ids = sample_ids(ids, out.fit_sample)
    LOG.info("fitting %s on %d images", method, len(ids))
    out.fit(lambda: ws.cache.batches(ids, ENCODE_BATCH), len(ids))
    return out


MIN_REGION_INPUT = 48  # inputs at least this side are searched with regions too


def assess(ws: Workspace, check: SelfCheck | None, embedder, method: str) -> Assessment:
    """The self-check score of ``embedder`` and its duplicate threshold, calibrated on the
    same held-out images (copies.calibration.calibrate); nothing without a self-check."""
    from .copies.calibration import calibrate

    if check is None:
        return Assessment()
    codes = check.codes(embedder.encode)  # once, for the score and the threshold
    hits = check.hits(*codes)
    score, se = check.score(hits)
    shots = check.shots
    shot_hits = shots.hits(*shots.codes(embedder.encode))
    shot_score, shot_se = shots.score(shot_hits)
    LOG.info("%s other shots recall@1: %.4f ± %.4f", method, shot_score, shot_se)
    cal = calibrate(check, codes=codes)
    # query regions (search.search_regions) must beat the whole query by the median distance
    # of an edited copy to its original; photos only: a small image has no regions worth it
    margin = cal.copy_distances[0] if ws.config.input_size >= MIN_REGION_INPUT else None
    LOG.info("%s self-check recall@1: %.4f ± %.4f; duplicate threshold %.4g; query margin %s",
             method, score, se, cal.threshold, margin)
    return Assessment(score, cal.threshold, margin, se,
                      reconstruction=reconstruction(ws, check, embedder, method),
                      selfcheck_outcome=check.outcome(hits),
                      shots={"score": shot_score, "se": shot_se, **shots.outcome(shot_hits)})


def reconstruction(ws: Workspace, check: SelfCheck, embedder, method: str) -> dict | None:
    """How well ``method`` draws back the self-check's held-out images (never trained on):
    PSNR in dB at the pixel size (both sides box-filtered there, the reconstruction as 8-bit
    pixels, what a picture of it shows), and for a learned method the PSNR of PCA at the same
    code size fitted on a sample of the images it trained on, as Hinton and Salakhutdinov
    (Science 2006) compare a deep autoencoder with PCA (the index's own PCA is fitted on
    every image, the held-out ones too, so it is no held-out reference). None for a method
    that is not learned or does not reconstruct."""
    from .methods.postprocess import unwrap

    spec = methods.get(method)
    if not (spec.learned and spec.reconstructs):
        return None
    inner, size = unwrap(embedder), ws.config.pixel_size
    held = check.database[: check.held]
    pca = held_out_pca(ws, inner.dim)
    out = {"psnr": round(drawn_psnr(inner, held, size), 3), "images": len(held),
           "size": size, "pca_psnr": round(drawn_psnr(pca, held, size), 3), "pca_dim": pca.dim}
    LOG.info("%s held-out reconstruction: %s", method, out)
    return out


def held_out_pca(ws: Workspace, dim: int):
    """PCA at ``dim`` components fitted on a sample of the images the self-check does not
    hold out: the held-out reference a learned method's reconstructions are measured against."""
    from .methods.baselines import PCAEmbedder

    ids = ws.catalog.indexed_ids()
    kept = set(held_out(ws, ids)[0])
    train = sample_ids([i for i in ids if i not in kept], PCAEmbedder.fit_sample)
    pca = PCAEmbedder(ws.config.pixel_size, dim)
    pca.fit(lambda: ws.cache.batches(train, ENCODE_BATCH), len(train))
    return pca


def drawn(model, images: np.ndarray, batch: int = ENCODE_BATCH) -> np.ndarray:
    """``model``'s reconstructions of (N, S, S, C) uint8 ``images`` as 8-bit pixels (what a
    picture of them shows), a batch at a time."""
    parts = [np.clip(model.reconstruct(images[s : s + batch]) * 255 + 0.5, 0, 255)
             .astype(np.uint8) for s in range(0, len(images), batch)]
    return np.concatenate(parts) if parts else images[:0].copy()


def drawn_psnr(model, images: np.ndarray, size: int) -> float:
    """PSNR (dB) of ``model``'s reconstructions of ``images`` (``drawn``), both box-filtered
    to ``size``."""
    return psnr_of_drawn(images, drawn(model, images), size)


def psnr_of_drawn(images: np.ndarray, recon: np.ndarray, size: int) -> float:
    """PSNR (dB) of 8-bit reconstructions ``recon`` of ``images``, both box-filtered to
    ``size`` (methods.baselines.pixel_vectors)."""
    from .evaluate import psnr
    from .methods.baselines import pixel_vectors

    return psnr(pixel_vectors(images, size), pixel_vectors(recon, size))


# -- settings ------------------------------------------------------------------------------
def train_method(ws: Workspace, method: str, model_cfg, train_cfg: TrainConfig, *,
                 check: SelfCheck | None, fresh: bool = False, progress: Progress = quiet,
                 post: str | None = None, memory: int | None = None, engine: Engine = LOCAL
                 ) -> tuple[list, BuildReport]:
    """Train (or resume) ``method`` on the indexed images' cached pixels (less the images the
    self-check ``check`` holds out), keeping the weights that score best on it; then fit its
    post-processing and index its codes (on ``engine``; training itself always runs here).
    Returns (history, build report)."""
    from .methods.learned import LearnedEmbedder
    from .training import train

    ids = ws.catalog.indexed_ids()
    if len(ids) < 2:
        raise ImgSearchError(f"index {ws.root} has {len(ids)} indexed images; "
                             "training needs at least 2")
    held = set(held_out(ws, ids)[0]) if check is not None else set()
    train_ids = [i for i in ids if i not in held]
    ckpt = ws.training_checkpoint(method)  # resumable: with the optimizer state
    if fresh and ckpt.exists():
        ckpt.unlink()
    LOG.info("training %s on %d images (%d held out for the self-check)", method,
             len(train_ids), len(held))
    said = Said(ws, method, resumed_from(ckpt))
    resumed = f"resumed from step {said.first:,}, " if said.first else ""

    def on_train(step: int, steps: int, loss: float, rate: float) -> None:
        said.step(step, steps)
        best = f", self-check {said.best:.3f}" if said.best is not None else ""
        progress(f"train {method}", step, steps, f"{resumed}loss {loss:.4g}{best}")

    def scored(encode) -> float:
        score = check(encode)
        said.scored(score)
        return score

    if said.first:
        progress(f"train {method}", 0, None, f"resumed from step {said.first:,}")
    try:
        history = train(method, model_cfg, CachedImages(ws.cache, train_ids), train_cfg, ckpt,
                        on_train, scored if check is not None else None)
        learned = LearnedEmbedder.from_file(ckpt)
        embedder = prepare(ws, method, learned, post)
        done = {"steps": learned.ckpt.get("step", 0), "work": learned.ckpt.get("work", 0),
                "minutes": round(sum(h.seconds for h in history) / 60, 2),
                "cap_minutes": train_cfg.max_minutes,
                "capped": bool(learned.ckpt.get("capped"))}
        assessed = replace(assess(ws, check, embedder, method), training=done)
        report = build_method(ws, method, embedder, "train", encode_phase(progress, method),
                              assessed, memory, engine)
    except BaseException:  # Ctrl-C, a crash: the checkpoint keeps the steps and best weights
        said.stopped()
        raise
    said.done()
    return history, report


def resumed_from(ckpt: Path) -> int:
    """The step a training run resumes from: its checkpoint's, or 0 for a fresh run."""
    if not ckpt.exists():
        return 0
    from .models.checkpoint import load_checkpoint

    try:
        return int(load_checkpoint(ckpt).get("step", 0))
    except Exception:  # noqa: BLE001 - training itself reports a damaged checkpoint
        return 0


class Said:
    """What a training run tells the rest of the product while it runs: its step, planned
    steps and best self-check so far, in the workspace's progress file (Workspace.training),
    written every SAY_SECONDS at most and at each self-check; removed once the method is
    built. A run that stops before (Ctrl-C, a crash) leaves it, saying where it stopped."""

    SAY_SECONDS = 2.0

    def __init__(self, ws: Workspace, method: str, first: int) -> None:
        import os
        import time

        self.path, self.first, self.best = ws.training_progress_file(method), first, None
        self.clock, self.last = time.monotonic, -float("inf")
        self.record = {"method": method, "pid": os.getpid(), "step": first, "work": None,
                       "best_selfcheck": None, "started": time.time()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()

    def step(self, run_step: int, run_steps: int) -> None:
        """``run_step`` of this run's ``run_steps`` (as training reports them)."""
        first = self.record["work"] is None
        self.record.update(step=self.first + run_step, work=self.first + run_steps)
        if first or self.clock() - self.last >= self.SAY_SECONDS:
            self._write()

    def scored(self, score: float) -> None:
        self.best = score if self.best is None else max(self.best, score)
        self.record["best_selfcheck"] = self.best
        self._write()

    def stopped(self) -> None:
        """The run ends before its method is built: said "interrupted", where it stopped."""
        self.record["state"] = "interrupted"
        self._write()

    def done(self) -> None:
        self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        import time

        from .store import write_json

        self.record["updated"] = time.time()
        write_json(self.path, self.record)
        self.last = self.clock()
