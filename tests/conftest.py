"""Shared fixtures: generated images (nothing binary is committed) and fresh index folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgsearch.config import IndexConfig
from imgsearch.workspace import Workspace


def pattern(seed: int, size: int = 96) -> np.ndarray:
    """A distinct, smooth RGB test image: seeded blobs over a seeded gradient."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.empty((size, size, 3))
    for c in range(3):
        a, b, p = rng.uniform(-3, 3, 3)
        img[..., c] = 0.5 + 0.5 * np.sin(a * x * 3 + b * y * 3 + p)
    for _ in range(3):
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2
        img[mask] = rng.uniform(0, 1, 3)
    return (img * 255).astype(np.uint8)


@pytest.fixture
def photo_dir(tmp_path):
    """A folder of 12 distinct generated images in nested folders and several formats."""
    root = tmp_path / "photos"
    (root / "a" / "b").mkdir(parents=True)
    formats = ["jpg", "png", "webp", "bmp", "tiff", "gif"]
    for i in range(12):
        sub = root / ("a/b" if i % 3 == 0 else "a" if i % 3 == 1 else "")
        ext = formats[i % len(formats)]
        Image.fromarray(pattern(i)).save(sub / f"img{i:02d}.{ext}", quality=95)
    return root


@pytest.fixture
def tiny_config():
    return IndexConfig(input_size=16, pixel_size=8, code_dim=8)


@pytest.fixture
def ws(tmp_path, tiny_config):
    w = Workspace.create(tmp_path / "index", tiny_config)
    yield w
    w.close()
