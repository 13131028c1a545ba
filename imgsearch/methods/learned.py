"""Learned codes as an Embedder: a trained model's code (an autoencoder's code, a VAE's mu).

Inference only: this module reads checkpoints (models/checkpoint.py) and never imports the
training loop.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..config import IndexConfig
from ..errors import ConfigMismatch
from ..models.checkpoint import (
    config_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    pick_device,
    to_batch,
    write_checkpoint,
)
from ..store import replacing
from .base import MODEL_FILE, Embedder
from .onnx import FILE as ONNX_FILE

LOG = logging.getLogger(__name__)

BATCH = 512  # images per encoding step


class _ExportedEncoder(torch.nn.Module):
    """The search code of a model: its encode()'s first output."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)[0]  # (B, code_dim)


class LearnedEmbedder(Embedder):
    """Encodes with a trained model: ``model.encode(x)[0]`` is the search code."""

    def __init__(self, ckpt: dict, device: str = "auto", batch_size: int = BATCH):
        self.ckpt = ckpt
        self.name = ckpt["method"]
        self.arch = ckpt["arch"]
        self.config = config_from_checkpoint(ckpt)
        self.model = model_from_checkpoint(ckpt)
        self.device = pick_device(device)
        self.model.to(self.device)
        self.batch_size = batch_size
        self.dim = self.config.code_dim
        self.input_size = self.config.input_size
        self.channels = self.config.channels

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
                         self.device)
            code = self.model.encode(x)[0]  # AE: (code, switches); VAE: (mu, logvar)
            out.append(code.float().cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.dim), np.float32)

    @torch.no_grad()
    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """(B, S, S, C) uint8 -> (B, S, S, C) float32 reconstructions in [0, 1]."""
        x = to_batch(np.ascontiguousarray(images), self.device)
        code, extra = self.model.encode(x)
        # the AE's switches variant unpools at the encoder's argmax; a VAE decodes mu
        recon = self.model.decode(code, extra) if self.arch == "ae" else self.model.decode(code)
        return recon.permute(0, 2, 3, 1).float().cpu().numpy()

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(B, code_dim) -> (B, S, S, C) images in [0, 1] from codes alone."""
        z = torch.as_tensor(codes, dtype=torch.float32, device=self.device)
        return self.model.decode(z).permute(0, 2, 3, 1).float().cpu().numpy()

    def save(self, folder: Path) -> None:
        """The weights in use, config and history (no optimizer state), and the encoder
        exported to ONNX for queries. Written atomically."""
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        kept = {k: v for k, v in self.ckpt.items() if k not in ("best", "optimizer", "model")}
        write_checkpoint(Path(folder) / MODEL_FILE, {**kept, "model": state, "optimizer": {}})
        self.export_onnx(Path(folder) / ONNX_FILE)

    def export_onnx(self, path: Path) -> None:
        """The encoder, (B, C, S, S) float in [0, 1] -> (B, code_dim), as an ONNX graph."""
        model = _ExportedEncoder(self.model).cpu().eval()
        x = torch.rand(2, self.channels, self.input_size, self.input_size)
        with replacing(path) as tmp, warnings.catch_warnings():
            # the TorchScript exporter: the torch.export one needs onnxscript, and this small
            # convolutional graph exports exactly either way (tests/test_methods.py)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (x,), str(tmp), input_names=["images"],
                              output_names=["codes"], opset_version=17, dynamo=False,
                              dynamic_axes={"images": {0: "batch"}, "codes": {0: "batch"}})
            import onnx  # the method's name and code size travel in the file

            graph = onnx.load(str(tmp))
            onnx.helper.set_model_props(graph, {"method": self.name, "code_dim": str(self.dim)})
            onnx.save(graph, str(tmp))
        self.model.to(self.device).eval()  # the exporter leaves modules in training mode

    @classmethod
    def load(cls, folder: Path, cfg: IndexConfig | None = None) -> LearnedEmbedder:
        return cls.from_file(Path(folder) / MODEL_FILE)
