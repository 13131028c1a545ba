"""Learned methods in an index: train a model on the cached pixels, or import a checkpoint,
then encode the collection into the method's FAISS index."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .build import BuildReport, ProgressFn, sync_method
from .config import TrainConfig
from .errors import ImgSearchError
from .learned import LearnedEmbedder
from .models.autoencoder import AEConfig
from .models.vae import VAEConfig
from .pixelcache import CachedImages
from .train import ArraySource, Epoch, TrainProgressFn, load_checkpoint, train
from .workspace import Workspace

LOG = logging.getLogger(__name__)

def default_model_config(kind: str, ws: Workspace, **settings) -> AEConfig | VAEConfig:
    """The model for this index's images, with any settings given."""
    cls = AEConfig if kind == "ae" else VAEConfig
    return cls(input_size=ws.config.input_size, channels=3, code_dim=ws.config.code_dim,
               **settings)


def train_method(ws: Workspace, kind: str, model_cfg: AEConfig | VAEConfig,
                 train_cfg: TrainConfig, fresh: bool = False,
                 on_train: TrainProgressFn | None = None,
                 on_encode: ProgressFn | None = None) -> tuple[list[Epoch], BuildReport]:
    """Train (or resume) ``kind`` on every indexed image's cached pixels, then index its codes."""
    ids = ws.catalog.indexed_ids()
    if len(ids) < 2:
        raise ImgSearchError(f"index {ws.root} has {len(ids)} indexed images; "
                             "training needs at least 2")
    ckpt = ws.training_checkpoint(kind)  # resumable: with the optimizer state
    if fresh and ckpt.exists():
        ckpt.unlink()
    LOG.info("training %s on %d images", kind, len(ids))
    history = train(kind, model_cfg, CachedImages(ws.pixels, ids), train_cfg, ckpt, on_train)
    embedder = LearnedEmbedder.from_file(ckpt)
    return history, sync_method(ws, kind, embedder, on_progress=on_encode)


def open_model(ws: Workspace, path: Path) -> LearnedEmbedder:
    """A checkpoint trained elsewhere, checked against this index's images."""
    embedder = LearnedEmbedder.from_file(path)
    embedder.check_input(ws.config.input_size, 3)
    return embedder


def train_on_array(kind: str, model_cfg: AEConfig | VAEConfig, images: np.ndarray,
                   train_cfg: TrainConfig, checkpoint: Path, resume: bool = False
                   ) -> tuple[LearnedEmbedder, dict]:
    """Train ``kind`` on an in-memory (N, S, S, C) uint8 array, as the evaluation scripts do;
    returns the trained embedder and a JSON-ready summary of the training."""
    checkpoint = Path(checkpoint)
    if checkpoint.exists() and not resume:
        checkpoint.unlink()
    history = train(kind, model_cfg, ArraySource(images), train_cfg, checkpoint)
    summary = {"epochs": len(history), "minutes": sum(h.seconds for h in history) / 60,
               "images_per_s": history[-1].images_per_s, "val_loss": history[-1].val_loss,
               "model": asdict(model_cfg), "train_config": asdict(train_cfg)}
    return LearnedEmbedder(load_checkpoint(checkpoint)), summary
