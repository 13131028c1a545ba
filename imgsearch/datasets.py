"""Labelled evaluation data: Fashion-MNIST from IDX files (Debian's dataset-fashion-mnist),
a given folder, or torchvision's download where the internet is reachable."""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImgSearchError

LOG = logging.getLogger(__name__)

FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"), Path("data/fashion-mnist"))


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array."""
    path = Path(path)
    with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\0\0" or data[2] != 8:
        raise ImgSearchError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _from_folder(folder: Path) -> tuple[Split, Split]:
    def one(stem: str) -> np.ndarray:
        for name in (f"{stem}.gz", stem):
            if (folder / name).exists():
                return read_idx(folder / name)
        raise FileNotFoundError(folder / stem)

    train = Split(one("train-images-idx3-ubyte"), one("train-labels-idx1-ubyte").astype(np.int64))
    test = Split(one("t10k-images-idx3-ubyte"), one("t10k-labels-idx1-ubyte").astype(np.int64))
    return train, test


def fashion_mnist(folder: Path | None = None, download_to: Path | None = None
                  ) -> tuple[Split, Split]:
    """(train, test): 60,000 and 10,000 labelled 28x28 images.

    Looks in ``folder``, then Debian's and the repo's data folders; with ``download_to`` set,
    falls back to torchvision's download (needs the internet)."""
    for candidate in ([Path(folder)] if folder else []) + list(FASHION_DIRS):
        try:
            return _from_folder(candidate)
        except FileNotFoundError:
            continue
    if download_to is None:
        raise ImgSearchError("Fashion-MNIST not found: install Debian's dataset-fashion-mnist, "
                             "run scripts/fetch_data.sh, or pass --download")
    from torchvision.datasets import FashionMNIST

    splits = [FashionMNIST(str(download_to), train=t, download=True) for t in (True, False)]
    return tuple(Split(s.data.numpy(), s.targets.numpy().astype(np.int64)) for s in splits)
