"""The two baselines every learned code is compared against: raw pixels, and their PCA."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import IndexConfig
from ..errors import IndexFileError
from ..store import replacing
from .base import BatchSource, Embedder

LOG = logging.getLogger(__name__)


def pixel_vectors(images: np.ndarray, size: int) -> np.ndarray:
    """(B, S, S, C) uint8 -> (B, size * size * C) float32 in [0, 1], box-filtered to size."""
    b, s, c = images.shape[0], images.shape[1], images.shape[-1]
    if s == size:
        small = images.astype(np.float32)
    elif s % size == 0:  # box filter == block mean: f * f strided adds, exact in float32
        f = s // size  # (numpy's mean over the block axes is 10x slower, with the same sums)
        small = np.zeros((b, size, size, c), np.float32)
        for i in range(f):
            for j in range(f):
                small += images[:, i::f, j::f]
        small /= f * f
    else:
        small = np.stack([
            np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BOX))
            for im in images
        ]).astype(np.float32)
    return (small / 255.0).reshape(b, size * size * c)


class PixelsEmbedder(Embedder):
    """Raw pixels: the image box-filtered to ``pixel_size`` squared RGB, flattened."""

    name = "pixels"

    def __init__(self, pixel_size: int):
        self.pixel_size = pixel_size
        self.dim = pixel_size * pixel_size * 3

    def encode(self, images: np.ndarray) -> np.ndarray:
        return pixel_vectors(images, self.pixel_size)

    def save(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)

    @classmethod
    def load(cls, folder: Path, cfg: IndexConfig) -> PixelsEmbedder:
        return cls(cfg.pixel_size)


class PCAEmbedder(Embedder):
    """PCA of the raw-pixel vectors to ``code_dim`` components.

    Fitted with ``torch.pca_lowrank`` (randomized SVD, seeded), about 20 times faster than a
    full eigendecomposition (faiss.PCAMatrix) on 10,000 images (scripts/bench_pca.py).
    Saved as ``pca.npz`` (mean, components): plain arrays, nothing unpickled.
    """

    name = "pca"
    FILE = "pca.npz"
    MAX_TRAIN = 20_000  # the most images fit uses (a uniform sample of more)
    #: what an index fits it on (build.sample_ids): Fashion-MNIST P@10 0.8088 with 4,096
    #: against 0.8089 with 20,000, in a third of the time (scripts/bench_pca.py
    #: --fit-samples; docs/BENCHMARKS.md, "The streaming index run")
    fit_sample = 4_096
    N_ITER = 4  # subspace iterations of the randomized SVD

    def __init__(self, pixel_size: int, code_dim: int, mean: np.ndarray | None = None,
                 components: np.ndarray | None = None):
        self.pixel_size = pixel_size
        self.code_dim = code_dim
        self.mean = mean  # (d_in,)
        self.components = components  # (dim, d_in), orthonormal rows
        self.dim = len(components) if components is not None else code_dim

    def fit(self, batches: BatchSource, count: int) -> None:
        import torch

        rng = np.random.default_rng(0)
        keep = min(count, self.MAX_TRAIN)
        chosen: list[np.ndarray] = []
        for batch in batches():
            vecs = pixel_vectors(batch, self.pixel_size)
            if count > keep:  # uniform sample without holding the collection in memory
                vecs = vecs[rng.random(len(vecs)) < keep / count]
            chosen.append(vecs)
        x = torch.from_numpy(np.concatenate(chosen))  # (N, d_in)
        d_out = min(self.code_dim, *x.shape)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            _, _, v = torch.pca_lowrank(x, q=d_out, center=True, niter=self.N_ITER)  # (d_in, k)
        self.mean = x.mean(dim=0).numpy()
        self.components = np.ascontiguousarray(v.T.numpy())
        self.dim = d_out
        LOG.info("PCA fitted on %d images: %d -> %d dims", len(x), x.shape[1], d_out)

    def encode(self, images: np.ndarray) -> np.ndarray:
        return (pixel_vectors(images, self.pixel_size) - self.mean) @ self.components.T

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(B, dim) codes -> (B, P, P, C) float32 images in [0, 1]: mean + codes @ components."""
        x = self.mean + np.asarray(codes, np.float32) @ self.components
        channels = x.shape[1] // (self.pixel_size * self.pixel_size)  # 3, or 1 (grey)
        return np.clip(x, 0, 1).reshape(len(codes), self.pixel_size, self.pixel_size, channels)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 -> (B, P, P, 3): the images as their PCA codes keep them."""
        return self.decode(self.encode(images))

    def save(self, folder: Path) -> None:
        with replacing(Path(folder) / self.FILE) as tmp, open(tmp, "wb") as f:
            np.savez(f, mean=self.mean, components=self.components)  # a file: no .npz added

    @classmethod
    def load(cls, folder: Path, cfg: IndexConfig) -> PCAEmbedder:
        path = Path(folder) / cls.FILE
        try:
            with np.load(path, allow_pickle=False) as f:
                mean, components = f["mean"], f["components"]
        except Exception as e:  # numpy/zipfile raise many types for a bad file
            raise IndexFileError(
                f"PCA file {path} is unreadable; re-run `imgsearch index PHOTOS_DIR --rebuild`"
            ) from e
        return cls(cfg.pixel_size, cfg.code_dim, mean, components)
