"""Train an autoencoder or VAE on cached pixels, with validation, a time budget and resumable,
atomic checkpoints.

A checkpoint is ``{"kind", "model", "optimizer", "config", "train_config", "epoch",
"history"}``: tensors and plain values only, so it loads with ``torch.load(weights_only=True)``.
Written to a temporary file and renamed: a run killed at any moment leaves the last good one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .augment import Corruption
from .config import TrainConfig
from .errors import ConfigMismatch, IndexFileError
from .files import replacing
from .models.autoencoder import AEConfig, ConvAutoencoder, ae_loss
from .models.vae import ConvVAE, VAEConfig, vae_loss

LOG = logging.getLogger(__name__)

MODELS = {"ae": (ConvAutoencoder, AEConfig), "vae": (ConvVAE, VAEConfig)}


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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def new_model(kind: str, config: AEConfig | VAEConfig) -> torch.nn.Module:
    if kind not in MODELS:
        raise ConfigMismatch(f"unknown model {kind!r}; choose ae or vae")
    return MODELS[kind][0](config)


def to_batch(images: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    """(B, S, S, C) uint8 -> (B, C, S, S) float in [0, 1] on ``device``."""
    if not images.flags.writeable:  # e.g. a decoded query image; torch wants writable memory
        images = images.copy()
    x = torch.from_numpy(images).to(device, non_blocking=True).permute(0, 3, 1, 2).float() / 255
    return x.contiguous(memory_format=torch.channels_last if channels_last else
                        torch.contiguous_format)


def loss_of(kind: str, model: torch.nn.Module, corrupt: Corruption, x: torch.Tensor):
    """The model's loss on a clean batch ``x`` (corrupted first when denoising)."""
    if kind == "ae":
        return ae_loss(model, corrupt(x), x)
    recon, mu, logvar = model(corrupt(x))
    return vae_loss(recon, x, mu, logvar, model.cfg.beta)


def split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) positions; validation gets at least one image if n > 1."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1 if n > 1 else 0, int(round(n * val_fraction))))
    return order[n_val:], order[:n_val]


# -- checkpoints --------------------------------------------------------------------------
def save_checkpoint(path: Path, kind: str, model: torch.nn.Module, optimizer, config,
                    train_cfg: TrainConfig, epoch: int, history: list[Epoch]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_checkpoint(path, {"kind": kind, "model": state,
                            "optimizer": optimizer.state_dict() if optimizer is not None else {},
                            "config": asdict(config), "train_config": asdict(train_cfg),
                            "epoch": epoch, "history": [asdict(h) for h in history]})


def write_checkpoint(path: Path, ckpt: dict) -> None:
    """Write a checkpoint dict atomically."""
    with replacing(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's dict, loaded without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise IndexFileError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise IndexFileError(
            f"checkpoint {path} is unreadable ({type(e).__name__}); train a new model with "
            "`imgsearch train --fresh`"
        ) from e


def model_from_checkpoint(ckpt: dict) -> tuple[str, torch.nn.Module]:
    """Rebuild the model a checkpoint describes, with its weights, in eval mode."""
    kind = ckpt["kind"]
    cls, cfg_cls = MODELS[kind]
    known = {f.name for f in fields(cfg_cls)}
    model = cls(cfg_cls(**{k: v for k, v in ckpt["config"].items() if k in known}))
    model.load_state_dict(ckpt["model"])
    return kind, model.eval()


# -- training -----------------------------------------------------------------------------
@torch.no_grad()
def evaluate(kind: str, model, data: ImageSource, positions: np.ndarray, cfg: TrainConfig,
             device: torch.device) -> float:
    """Mean validation loss on clean inputs."""
    if len(positions) == 0:
        return float("nan")
    model.eval()
    total, n = 0.0, 0
    none = Corruption("none", 0.0, 0)
    for start in range(0, len(positions), cfg.batch_size):
        pos = positions[start : start + cfg.batch_size]
        x = to_batch(data.get(pos), device, cfg.channels_last and device.type == "cuda")
        with torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            if kind == "ae":
                recon, _ = model(x)
                loss = torch.nn.functional.mse_loss(recon.float(), x)
            else:
                loss = loss_of(kind, model, none, x).total
        total += float(loss) * len(pos)
        n += len(pos)
    model.train()
    return total / n


def train(kind: str, config: AEConfig | VAEConfig, data: ImageSource, cfg: TrainConfig,
          checkpoint: Path, on_progress: TrainProgressFn | None = None) -> list[Epoch]:
    """Train (or resume training of) a model on ``data``; returns the history of every epoch.

    If ``checkpoint`` exists with the same kind and model config, training resumes after its
    last completed epoch, with its optimizer state. A checkpoint is written after every epoch
    and when the time budget or step limit stops the run.
    """
    if len(data) < 2:
        raise ConfigMismatch(f"need at least 2 images to train, have {len(data)}")
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = new_model(kind, config).to(device)
    # fused: one kernel for the whole update on CUDA instead of several per parameter
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device.type == "cuda")
    start_epoch, history = 0, []
    if Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint)
        if ckpt["kind"] != kind or ckpt["config"] != asdict(config):
            raise ConfigMismatch(f"checkpoint {checkpoint} is for another model "
                                 f"({ckpt['kind']}: {ckpt['config']}); delete it to start anew")
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
                    loss = loss_of(kind, net, corrupt, x).total
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
            save_checkpoint(checkpoint, kind, model, optimizer, config, cfg, epoch, history)
            raise
        train_loss = loss_sum.item() / max(seen, 1)  # waits for the epoch's last step
        seconds = time.perf_counter() - t0
        history.append(Epoch(epoch + 1, train_loss,
                             evaluate(kind, model, data, val_pos, cfg, device),
                             seen / seconds, seconds))
        LOG.info("%s", history[-1])
        save_checkpoint(checkpoint, kind, model, optimizer, config, cfg, epoch + 1, history)
        if stop:
            break
    return history
