"""Training on an in-memory array, for the evaluation scripts (scripts/evaluate_*.py) and
tests: no index, no catalog; the product trains through fitting.train_method."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from .config import TrainConfig


def train_on_array(method: str, model_cfg, images: np.ndarray, train_cfg: TrainConfig,
                   checkpoint: Path, resume: bool = False, check=None, post: str = "",
                   saved: bool = False):
    """Train ``method`` on an in-memory (N, S, S, C) uint8 array, as the evaluation scripts
    do (``check``: a SelfCheck, or None), then fit the post-processing ``post`` on the
    array; returns the embedder and a JSON-ready summary of the training. ``resume``: continue
    the saved run; ``saved``: the saved checkpoint as it is, no more training (trained afresh
    if there is none)."""
    from .methods.learned import LearnedEmbedder
    from .methods.postprocess import Processed, processed
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
    embedder = processed(LearnedEmbedder(ckpt), post)
    if isinstance(embedder, Processed):
        data = images if images.ndim == 4 else images[..., None]
        embedder.fit(lambda: (data[i : i + 1024] for i in range(0, len(data), 1024)),
                     len(data))
    return embedder, summary
