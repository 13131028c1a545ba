"""Train a model on cached pixels, with validation, a time budget and resumable, atomic
checkpoints (their format: models/checkpoint.py). Never imported by a query."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .augment import Corruption
from .config import TrainConfig
from .errors import ConfigMismatch
from .models.checkpoint import (
    ARCHITECTURES,
    arch_of,
    load_checkpoint,
    new_model,
    pick_device,
    to_batch,
    write_checkpoint,
)

LOG = logging.getLogger(__name__)


class ImageSource(Protocol):
    """Anything that hands out (B, S, S, C) uint8 images by position."""

    def __len__(self) -> int: ...

    def get(self, positions: np.ndarray) -> np.ndarray: ...


class ArraySource:
    """Images held in a (N, S, S, C) uint8 array (or memory map)."""

    def __init__(self, images: np.ndarray):
        self.images = images if images.ndim == 4 else images[..., None]

    def __len__(self) -> int:
        return len(self.images)

    def get(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.images[np.sort(positions)])


@dataclass
class Epoch:
    epoch: int
    train_loss: float
    val_loss: float
    images_per_s: float
    seconds: float


TrainProgressFn = Callable[[int, int, float, float], None]  # step, steps, loss, images/s
PROGRESS_SECONDS = 0.2  # at most this often a progress report (and a GPU sync)


def split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) positions; validation gets at least one image if n > 1."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1 if n > 1 else 0, round(n * val_fraction)))
    return order[n_val:], order[:n_val]


# -- checkpoints --------------------------------------------------------------------------
def save_checkpoint(path: Path, method: str, model: torch.nn.Module, optimizer, config,
                    train_cfg: TrainConfig, epoch: int, history: list[Epoch]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_checkpoint(path, {"method": method, "arch": arch_of(config), "model": state,
                            "optimizer": optimizer.state_dict() if optimizer is not None else {},
                            "config": asdict(config), "train_config": asdict(train_cfg),
                            "epoch": epoch, "history": [asdict(h) for h in history]})


# -- training -----------------------------------------------------------------------------
@torch.no_grad()
def evaluate(arch: str, model, data: ImageSource, positions: np.ndarray, cfg: TrainConfig,
             device: torch.device) -> float:
    """Mean validation loss on clean inputs."""
    if len(positions) == 0:
        return float("nan")
    model.eval()
    total, n = 0.0, 0
    objective = ARCHITECTURES[arch].objective
    for start in range(0, len(positions), cfg.batch_size):
        pos = positions[start : start + cfg.batch_size]
        x = to_batch(data.get(pos), device, cfg.channels_last and device.type == "cuda")
        with torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            loss = objective(model, x, x, train=False)[0].total
        total += float(loss) * len(pos)
        n += len(pos)
    model.train()
    return total / n


def train(method: str, config, data: ImageSource, cfg: TrainConfig, checkpoint: Path,
          on_progress: TrainProgressFn | None = None) -> list[Epoch]:
    """Train (or resume training of) ``method``'s model, of architecture and settings
    ``config``, on ``data``; returns the history of every epoch.

    If ``checkpoint`` exists for the same method and model config, training resumes after its
    last completed epoch, with its optimizer state. A checkpoint is written after every epoch
    and when the time budget or step limit stops the run.
    """
    if len(data) < 2:
        raise ConfigMismatch(f"need at least 2 images to train, have {len(data)}")
    arch = arch_of(config)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = new_model(config).to(device)
    # fused: one kernel for the whole update on CUDA instead of several per parameter
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device.type == "cuda")
    start_epoch, history = 0, []
    if Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint)
        if (ckpt["method"], ckpt["arch"], ckpt["config"]) != (method, arch, asdict(config)):
            raise ConfigMismatch(f"checkpoint {checkpoint} is for another model "
                                 f"({ckpt['method']}: {ckpt['config']}); delete it to start anew")
        model.load_state_dict(ckpt["model"])
        if ckpt["optimizer"]:
            optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch = ckpt["epoch"]
        history = [Epoch(**h) for h in ckpt["history"]]
        LOG.info("resuming %s from epoch %d", checkpoint, start_epoch)
    cl = cfg.channels_last and device.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if cfg.compile else model  # attribute access reaches `model`
    amp = cfg.amp and device.type == "cuda"
    corrupt = Corruption(config.denoise, config.noise, config.input_size)
    objective = ARCHITECTURES[arch].objective
    train_pos, val_pos = split(len(data), cfg.val_fraction, cfg.seed)
    steps_per_epoch = max(1, math.ceil(len(train_pos) / cfg.batch_size))
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))
    total_steps = steps_per_epoch * max(0, epochs - start_epoch)
    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
    rng = np.random.default_rng(cfg.seed + start_epoch)
    step, stop = 0, False
    model.train()
    for epoch in range(start_epoch, epochs):
        t0, seen = time.perf_counter(), 0
        loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
        reported = -math.inf
        order = rng.permutation(train_pos)
        try:
            for start in range(0, len(order), cfg.batch_size):
                x = to_batch(data.get(order[start : start + cfg.batch_size]), device, cl)
                with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                    loss = objective(net, corrupt(x), x)[0].total
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                seen += len(x)
                loss_sum += loss.detach().float() * len(x)
                now = time.perf_counter()
                if on_progress and now - reported >= PROGRESS_SECONDS:
                    reported = now  # .item() waits for the GPU, so only a few times a second
                    on_progress(step, total_steps, loss.item(), seen / (now - t0))
                if time.monotonic() > deadline or (cfg.max_steps and step >= cfg.max_steps):
                    stop = True  # the budget ends this epoch early; it counts as done
                    break
        except KeyboardInterrupt:  # keep the weights; a resumed run redoes this epoch
            save_checkpoint(checkpoint, method, model, optimizer, config, cfg, epoch, history)
            raise
        train_loss = loss_sum.item() / max(seen, 1)  # waits for the epoch's last step
        seconds = time.perf_counter() - t0
        history.append(Epoch(epoch + 1, train_loss,
                             evaluate(arch, model, data, val_pos, cfg, device),
                             seen / seconds, seconds))
        LOG.info("%s", history[-1])
        save_checkpoint(checkpoint, method, model, optimizer, config, cfg, epoch + 1, history)
        if stop:
            break
    return history
