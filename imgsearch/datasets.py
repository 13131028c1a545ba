"""Evaluation data: Fashion-MNIST from IDX files (Debian's dataset-fashion-mnist), a given
folder, or torchvision's download where the internet is reachable; folders of real photos
(Debian's opencv-doc and mate-backgrounds, fetched by scripts/fetch_data.sh) and generated
stand-ins for quick runs."""

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
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError:
        raise ImgSearchError("downloading Fashion-MNIST needs torchvision: pip install "
                             "'imgsearch[eval]'") from None

    splits = [FashionMNIST(str(download_to), train=t, download=True) for t in (True, False)]
    return tuple(Split(s.data.numpy(), s.targets.numpy().astype(np.int64)) for s in splits)


# -- photos --------------------------------------------------------------------------------
#: Where the evaluation scripts look for real photos: the repo's data folder (fetch_data.sh),
#: then Debian's opencv-doc examples and mate-backgrounds where they are installed.
PHOTO_DIRS = (Path("data/photos"), Path("/usr/share/doc/opencv-doc/examples/data"),
              Path("/usr/share/backgrounds/mate"))


def photo_files(roots: list[Path] | None = None) -> list[Path]:
    """Every image file under ``roots`` (default: the first of PHOTO_DIRS that exists, plus the
    system folders when that is the repo's), sorted."""
    from .images import EXTENSIONS

    if roots is None:
        roots = [p for p in PHOTO_DIRS if p.is_dir()][:1]
        if roots and roots[0] != PHOTO_DIRS[0]:
            roots += [p for p in PHOTO_DIRS[2:] if p.is_dir()]
    files: list[Path] = []
    for root in roots:
        files += [p for p in sorted(Path(root).rglob("*"))
                  if p.is_file() and p.suffix.lower() in EXTENSIONS]
    return files


def generated_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Stand-in pictures for quick runs without photos: smooth random colour fields with
    shapes, saved as PNG."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        base = rng.uniform(0, 255, (4, 6, 3)).astype(np.uint8)
        im = Image.fromarray(base).resize((240, 160), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(im)
        for _ in range(4):
            x, y = rng.integers(0, 200), rng.integers(0, 120)
            draw.ellipse((x, y, x + rng.integers(10, 60), y + rng.integers(10, 60)),
                         fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        paths.append(folder / f"gen{i:03d}.png")
        im.save(paths[-1])
    return paths


def distinct_photos(files: list[Path], size: int, tol: float = 6.0
                    ) -> tuple[list[Path], np.ndarray, int]:
    """The readable photos among ``files`` that are not the same picture as an earlier one
    (evaluate.same_picture_groups), their (N, size, size, 3) pixels, and how many were
    dropped as the same picture."""
    from .errors import ImageLoadError
    from .evaluate import same_picture_groups
    from .images import load_image

    kept, pixels = [], []
    for f in files:
        try:
            pixels.append(load_image(f, size)[0])
            kept.append(f)
        except ImageLoadError:
            continue
    pixels = np.stack(pixels)
    first = same_picture_groups(pixels, tol)
    keep = first == np.arange(len(first))
    return [f for f, k in zip(kept, keep) if k], pixels[keep], int((~keep).sum())
