"""Learned codes as an Embedder: a trained autoencoder's code, or a VAE's mu."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .embedders import Embedder
from .errors import ConfigMismatch
from .train import load_checkpoint, model_from_checkpoint, pick_device, to_batch, write_checkpoint

LOG = logging.getLogger(__name__)

FILE = "model.pt"
BATCH = 512  # images per encoding step


class LearnedEmbedder(Embedder):
    """Encodes with a trained ConvAutoencoder (its code) or ConvVAE (mu)."""

    def __init__(self, ckpt: dict, device: str = "auto", batch_size: int = BATCH):
        self.ckpt = ckpt
        self.name, self.model = model_from_checkpoint(ckpt)
        self.device = pick_device(device)
        self.model.to(self.device)
        self.batch_size = batch_size
        self.dim = self.model.cfg.code_dim
        self.input_size = self.model.cfg.input_size
        self.channels = self.model.cfg.channels

    @classmethod
    def from_file(cls, path: Path, device: str = "auto") -> LearnedEmbedder:
        return cls(load_checkpoint(path), device)

    def check_input(self, input_size: int, channels: int = 3) -> None:
        """Refuse a model trained for other images than the index holds."""
        if (self.input_size, self.channels) != (input_size, channels):
            raise ConfigMismatch(
                f"model expects {self.channels}-channel {self.input_size}x{self.input_size} "
                f"images; this index holds {channels}-channel {input_size}x{input_size} images"
            )

    @torch.no_grad()
    def encode(self, images: np.ndarray) -> np.ndarray:
        """(B, S, S, C) uint8 -> (B, code_dim) float32."""
        if images.ndim == 3:
            images = images[..., None]
        out = []
        for start in range(0, len(images), self.batch_size):
            x = to_batch(np.ascontiguousarray(images[start : start + self.batch_size]),
                         self.device, False)
            code = self.model.encode(x)[0]  # AE: (code, switches); VAE: (mu, logvar)
            out.append(code.float().cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.dim), np.float32)

    @torch.no_grad()
    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """(B, S, S, C) uint8 -> (B, S, S, C) float32 reconstructions in [0, 1]."""
        x = to_batch(np.ascontiguousarray(images), self.device, False)
        if self.name == "ae":
            code, switches = self.model.encode(x)
            recon = self.model.decode(code, switches)
        else:
            recon = self.model.decode(self.model.encode(x)[0])  # decode mu
        return recon.permute(0, 2, 3, 1).float().cpu().numpy()

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(B, code_dim) -> (B, S, S, C) images in [0, 1] from codes alone."""
        z = torch.as_tensor(codes, dtype=torch.float32, device=self.device)
        return self.model.decode(z).permute(0, 2, 3, 1).float().cpu().numpy()

    def save(self, folder: Path) -> None:
        """Weights, config and history; no optimizer state. Written atomically."""
        write_checkpoint(Path(folder) / FILE, {**self.ckpt, "optimizer": {}})

    @classmethod
    def load(cls, folder: Path) -> LearnedEmbedder:
        return cls.from_file(Path(folder) / FILE)
