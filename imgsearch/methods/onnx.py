"""A learned method's encoder run by onnxruntime: what a query uses, so that it never imports
torch. The encoder is exported beside the model when the method is built (learned.py), and
gives the model's codes (tests/test_methods.py checks them within 1e-4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Embedder

FILE = "encoder.onnx"
BATCH = 512


class OnnxEmbedder(Embedder):
    """(B, S, S, C) uint8 -> (B, dim) float32 codes through the exported encoder."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.name, self.dim = meta["method"], int(meta["code_dim"])

    def encode(self, images: np.ndarray) -> np.ndarray:
        if images.ndim == 3:
            images = images[..., None]
        out = []
        for start in range(0, len(images), BATCH):
            x = images[start : start + BATCH].transpose(0, 3, 1, 2).astype(np.float32) / 255
            out.append(self.session.run(None, {self.input: np.ascontiguousarray(x)})[0])
        return np.concatenate(out) if out else np.empty((0, self.dim), np.float32)

    def save(self, folder: Path) -> None:
        raise NotImplementedError("an exported encoder is saved by the learned embedder")
