"""What inference needs of a trained model: the checkpoint format, the architectures that can
be rebuilt from one, and moving images onto a device. The training loop (training.py) writes
checkpoints; a query only reads them, and never imports training code.

A checkpoint is ``{"method", "arch", "model", "optimizer", "config", "train_config", "epoch",
"step", "history"}``, with ``best`` (the weights that scored best on the self-check) and, for an
adversarial architecture, ``optimizer_d`` (the discriminator's): ``model`` is the state dict,
``config`` the architecture's frozen config as a dict.
Tensors and plain values only, so it loads with ``torch.load(weights_only=True)``. Written to a
temporary file and renamed: a run killed at any moment leaves the last good one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigMismatch, IndexFileError
from ..store import from_known, replacing
from . import aae, autoencoder, vae


@dataclass(frozen=True)
class Architecture:
    """A model module's three parts: the nn.Module, its frozen config, and its training
    objective ``objective(model, inputs, target, train) -> (losses with .total, code)``."""

    module: type[nn.Module]
    config: type
    objective: Callable
    # adversarial architectures: the loss of a second step that trains ``model.discriminator``
    # alone on the step's codes, ``adversary(model, codes) -> loss``
    adversary: Callable | None = None


#: Architectures by name. A new one is a model module plus one line here.
ARCHITECTURES: dict[str, Architecture] = {
    "ae": Architecture(autoencoder.ConvAutoencoder, autoencoder.AEConfig, autoencoder.objective),
    "vae": Architecture(vae.ConvVAE, vae.VAEConfig, vae.objective),
    "aae": Architecture(aae.AdversarialAutoencoder, aae.AAEConfig, aae.objective,
                        aae.discriminator_objective),
}


def arch_of(config) -> str:
    """The architecture name of a model config."""
    for name, arch in ARCHITECTURES.items():
        if type(config) is arch.config:
            return name
    raise ConfigMismatch(f"no architecture takes a {type(config).__name__}")


def new_config(arch: str, **settings):
    """The frozen config of ``arch`` with ``settings``; unknown settings are refused."""
    if arch not in ARCHITECTURES:
        raise ConfigMismatch(f"unknown architecture {arch!r}; choose one of "
                             f"{', '.join(ARCHITECTURES)}")
    cfg_cls = ARCHITECTURES[arch].config
    known = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigMismatch(f"{arch} has no setting {', '.join(unknown)}")
    return cfg_cls(**settings)


def new_model(config) -> nn.Module:
    """An untrained model for a config."""
    return ARCHITECTURES[arch_of(config)].module(config)


def write_checkpoint(path: Path, ckpt: dict) -> None:
    """Write a checkpoint dict atomically."""
    with replacing(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's dict, loaded without unpickling arbitrary objects.

    Checkpoints written before version 0.2 name their architecture ``kind``; they read as
    ``arch`` and ``method`` of that name."""
    path = Path(path)
    if not path.is_file():
        raise IndexFileError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if "kind" in ckpt:
            ckpt.setdefault("arch", ckpt["kind"])
            ckpt.setdefault("method", ckpt.pop("kind"))
        ckpt["arch"], ckpt["method"], ckpt["config"], ckpt["model"]  # KeyError: no checkpoint
        return ckpt
    except Exception as e:  # torch raises many types for a bad file
        raise IndexFileError(
            f"checkpoint {path} is unreadable ({type(e).__name__}); train a new model with "
            "`imgsearch train --fresh`"
        ) from e


def config_from_checkpoint(ckpt: dict):
    """The frozen model config a checkpoint was trained with (settings it does not know of are
    left at their defaults, so older checkpoints load)."""
    arch = ckpt["arch"]
    if arch not in ARCHITECTURES:
        raise IndexFileError(f"checkpoint is for architecture {arch!r}, which this imgsearch "
                             "does not have; upgrade imgsearch")
    return from_known(ARCHITECTURES[arch].config, ckpt["config"])


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    """Rebuild the model a checkpoint describes, in eval mode, with the weights that scored
    best on the self-check if the checkpoint kept them, else its latest weights."""
    model = new_model(config_from_checkpoint(ckpt))
    model.load_state_dict(ckpt["best"]["model"] if ckpt.get("best") else ckpt["model"])
    return model.eval()


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU when torch sees one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_batch(images: np.ndarray | torch.Tensor, device: torch.device,
             channels_last: bool = False) -> torch.Tensor:
    """(B, S, S, C) uint8 (an array, or a tensor already on a device) -> (B, C, S, S) float in
    [0, 1] on ``device``."""
    if isinstance(images, np.ndarray):
        if not images.flags.writeable:  # e.g. a decoded query image; torch wants it writable
            images = images.copy()
        images = torch.from_numpy(images)
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float() / 255
    return x.contiguous(memory_format=torch.channels_last if channels_last else
                        torch.contiguous_format)
