"""Decoding images: one file to a square RGB array, as every part of imgsearch sees images.

EXIF orientation applied, every Pillow mode converted to RGB (transparency composited on white,
16-bit scaled down), JPEGs decoded in draft mode so a 24-megapixel photo is never decoded at
full size, then the whole image resized (not cropped) to the index's square input.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from .errors import ImageLoadError

LOG = logging.getLogger(__name__)

try:  # HEIC/HEIF, the format phones write: Pillow reads it through pillow-heif's plugin
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF = (".heic", ".heif")
except ImportError:  # pragma: no cover - a dependency; an install without it skips HEIC files
    HEIF = ()
AVIF = (".avif",) if features.check("avif") else ()  # Pillow's own plugin, where built in
EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
                        *HEIF, *AVIF})
_HIGH_DEPTH = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}


class TooLarge(Exception):
    """The image has more pixels than the user's limit."""


@dataclass(frozen=True)
class ImageInfo:
    """What decoding learns of a file: its upright size and its format."""

    width: int
    height: int
    format: str | None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha over white, 16/32-bit scaled to 8 bits."""
    if im.mode in _HIGH_DEPTH:
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if im.mode == "F" and a.max(initial=0) <= 1.0:
            top = 1.0
        im = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in _ALPHA:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im if im.mode == "RGB" else im.convert("RGB")


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a corrupt EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on corrupt EXIF
        LOG.debug("ignoring unreadable EXIF: %s", e)
        return im


def load_image(source: str | Path | BinaryIO, size: int, max_megapixels: float = 0.0
               ) -> tuple[np.ndarray, ImageInfo]:
    """Decode one image to a (size, size, 3) uint8 RGB array; raise ImageLoadError if it can't,
    or if it has more than ``max_megapixels`` million pixels (0: no limit of ours)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                fmt = im.format
                width, height = im.size
                if max_megapixels and width * height > max_megapixels * 1e6:
                    raise TooLarge(f"{width * height / 1e6:.1f} megapixels ({width}x{height}), "
                                   f"over the limit of {max_megapixels:g}; raise "
                                   "--max-megapixels to index it")
                if _orientation(im) in (5, 6, 7, 8):  # stored rotated by 90 degrees
                    width, height = height, width
                if fmt == "JPEG":
                    im.draft("RGB", (size, size))  # decode at 1/2, 1/4 or 1/8 scale
                im = to_rgb(_upright(im))
                im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
                pixels = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError as e:
        raise ImageLoadError("not a recognised image format") from e
    except TooLarge as e:
        raise ImageLoadError(str(e)) from None
    except Exception as e:  # any decoder failure is a bad file, not a crash
        raise ImageLoadError(f"{type(e).__name__}: {e}") from e
    return pixels, ImageInfo(width, height, fmt)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - corrupt EXIF means no usable orientation
        return 1


def open_upright(source: str | Path | BinaryIO, max_side: int) -> Image.Image:
    """The image upright in RGB, reduced to at most ``max_side`` on its long side (JPEGs
    draft-decoded). For pictures of a photo: thumbnails, contact sheets, edited copies."""
    with Image.open(source) as im:
        im.draft("RGB", (max_side, max_side))
        im = to_rgb(_upright(im))
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return im.copy()


#: The regions a query is also searched with (search.Searcher.search_regions): crops keeping
#: (side fraction, steps per axis) of the query, on a grid from corner to corner.
REGION_GRID = ((0.6, 3), (0.8, 2))


def load_regions(source: str | Path | BinaryIO, size: int,
                 grid: tuple[tuple[float, int], ...] = REGION_GRID
                 ) -> tuple[np.ndarray, ImageInfo]:
    """The image as ``load_image`` gives it, then crops of it on ``grid``, each resized whole
    to (size, size): (1 + regions, size, size, 3) uint8. A copy pasted into a larger picture,
    or photographed at an angle, is found by the crop that holds it."""
    full, info = load_image(source, size)
    if hasattr(source, "seek"):
        source.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = open_upright(source, 4 * size)
    except Exception as e:  # the whole image was read: a decoder that fails now is the file's
        raise ImageLoadError(f"{type(e).__name__}: {e}") from e
    w, h = im.size
    out = [full]
    for side, steps in grid:
        cw, ch = w * side, h * side
        for fy in np.linspace(0, 1, steps):
            for fx in np.linspace(0, 1, steps):
                x0, y0 = (w - cw) * fx, (h - ch) * fy
                crop = im.crop((round(x0), round(y0), round(x0 + cw), round(y0 + ch)))
                out.append(np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR,
                                                  reducing_gap=2.0), dtype=np.uint8))
    return np.stack(out), info
