"""Decoding images: one file to a square RGB array, as every part of imgsearch sees images.

EXIF orientation applied, every Pillow mode converted to RGB (transparency flattened as below,
16-bit scaled down), JPEGs decoded in draft mode so a 24-megapixel photo is never decoded at
full size, then the whole image resized (not cropped) to the index's square input.

Transparency (an alpha channel, a transparent palette entry, a PNG colour key) is flattened
onto the background that contrasts with what is visible: black behind light art, white behind
dark art. The choice is the one of the two whose mean distance
in luminance to the visible pixels (weighted by their alpha) is larger, so the art's silhouette
keeps as much contrast as a solid background can give it: white art on a transparent
background (a wallpaper, a logo for dark themes) stays white shapes on black, black line art
stays black on white. The alternatives lose the picture: always white (DECODE_VERSION 1) turns
white art into a blank square, so distinct images all look alike; always black does the same to
black art; mid-grey halves the contrast of white and black art and erases mid-tone art; a
checkerboard adds a texture that is not in the picture and is the same in every transparent
image, so it makes them look alike. Light art is most often made to stand on dark, and dark art
on light, so the flattened image is also the one most likely to match an opaque copy of it.
Opaque images (alpha 255 everywhere) are unchanged; a fully transparent image is white. Art
whose mean luminance is within a hair of one half may flip between the two backgrounds in two
copies of it; no solid background avoids a flip or a loss of contrast somewhere.
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
PNM = (".pgm", ".ppm", ".pbm", ".pnm")  # Pillow reads them
#: Camera RAW, read through rawpy (LibRaw), the `raw` extra. Always listed, so that a RAW file
#: without the extra is reported as unreadable with the fix, never silently skipped.
RAW = (".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2")
EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
                        *HEIF, *AVIF, *PNM, *RAW})
_HIGH_DEPTH = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_KEYED = {"P", "L", "RGB", "1"}  # modes whose info["transparency"] names a transparent colour
_OPAQUE_FORMATS = frozenset({"JPEG", "MPO"})  # formats that cannot hold transparency
WHITE, BLACK = (255, 255, 255), (0, 0, 0)

#: The version of the decoding rules, recorded with each image's cached pixels (the catalog's
#: ``decoding`` column) so that pixels decoded by older rules are decoded again (ingest.py).
#: 1: transparency composited on white; 2: on the contrasting background (flatten).
DECODE_VERSION = 2


def decoding_changed(fmt: str | None, since: int) -> bool:
    """Whether an image of format ``fmt`` (Pillow's name) whose pixels were decoded under
    DECODE_VERSION ``since`` may decode differently now. Version 2 changed transparency only,
    which a JPEG cannot have."""
    return since < 2 and fmt not in _OPAQUE_FORMATS


class TooLarge(Exception):
    """The image has more pixels than the user's limit."""


@dataclass(frozen=True)
class ImageInfo:
    """What decoding learns of a file: its upright size and its format."""

    width: int
    height: int
    format: str | None


def background(rgba: Image.Image) -> tuple[int, int, int]:
    """The colour an RGBA image is flattened onto: black when its visible pixels are light on
    average (alpha-weighted mean luminance over one half), else white; white when nothing is
    visible. Luminance is Pillow's "L" (ITU-R 601-2 luma)."""
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint32)
    total = int(alpha.sum(dtype=np.uint64))
    if total == 0:
        return WHITE
    luma = np.asarray(rgba.convert("L"), dtype=np.uint32)
    mean = int((luma * alpha).sum(dtype=np.uint64)) / (255 * total)
    return BLACK if mean > 0.5 else WHITE


def flatten(im: Image.Image) -> Image.Image:
    """An image with transparency as RGB, over its ``background``; opaque pixels unchanged."""
    rgba = im.convert("RGBA")
    alpha = rgba.getchannel("A")
    if alpha.getextrema()[0] == 255:  # opaque throughout: nothing to composite
        return rgba.convert("RGB")
    out = Image.new("RGB", rgba.size, background(rgba))
    out.paste(rgba, mask=alpha)
    return out


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: transparency flattened (``flatten``), 16/32-bit scaled
    to 8 bits."""
    if im.mode in _HIGH_DEPTH:
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if im.mode == "F" and a.max(initial=0) <= 1.0:
            top = 1.0
        im = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if im.mode in _ALPHA or (im.mode in _KEYED and "transparency" in im.info):
        return flatten(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def named(data: bytes, name: str | Path) -> BinaryIO:
    """A file's bytes in memory, under the file's name: how a RAW file read whole is still
    known as one (``is_raw``)."""
    import io

    buf = io.BytesIO(data)
    buf.name = str(name)
    return buf


RAW_NEEDS_EXTRA = "camera RAW needs the raw extra"  # how a RAW file failed without it


def raw_readable() -> bool:
    """Whether camera RAW files can be read here (rawpy, the raw extra, is installed)."""
    import importlib.util

    return importlib.util.find_spec("rawpy") is not None


def _read_raw(source: str | Path | BinaryIO):
    """LibRaw opened on ``source`` (a context manager), or the one-line error that names the
    extra where rawpy is not installed."""
    try:
        import rawpy
    except ImportError:
        raise ImageLoadError(f"{RAW_NEEDS_EXTRA}: pip install 'imgsearch[raw]'") from None
    return rawpy.imread(str(source) if isinstance(source, Path) else source)


def raw_size(source: str | Path | BinaryIO) -> tuple[int, int]:
    """A RAW file's (width, height), from its header: nothing is decoded."""
    try:
        with _read_raw(source) as raw:
            return raw.sizes.width, raw.sizes.height
    except Exception as e:
        raise ImageLoadError(f"{type(e).__name__}: {e}") from e


def is_raw(source: str | Path | BinaryIO) -> bool:
    """Whether ``source`` is a camera RAW file, by its name (a path, or a named file object)."""
    name = source if isinstance(source, (str, Path)) else getattr(source, "name", "")
    return isinstance(name, (str, Path)) and Path(name).suffix.lower() in RAW


#: LibRaw's flip codes -> the rotation that makes the picture upright (Pillow's transpose)
_RAW_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90,
             6: Image.Transpose.ROTATE_270}


def open_raw(source: str | Path | BinaryIO, need: int, max_megapixels: float = 0.0
             ) -> tuple[Image.Image, ImageInfo]:
    """A camera RAW file as an upright RGB image at least ``need`` pixels on its short side
    where the file allows, and its full size. The fast path is the preview the camera embedded
    (a JPEG or a bitmap), taken when it is that large; otherwise the sensor data is demosaiced
    by LibRaw at half size (camera white balance, sRGB, 8 bits)."""
    with _read_raw(source) as raw:
        import rawpy  # installed: _read_raw opened the file with it

        sizes = raw.sizes
        width, height = sizes.width, sizes.height
        if sizes.flip in (5, 6):
            width, height = height, width
        if max_megapixels and width * height > max_megapixels * 1e6:
            raise TooLarge(f"{width * height / 1e6:.1f} megapixels ({width}x{height}), over the "
                           f"limit of {max_megapixels:g}; raise --max-megapixels to index it")
        im = None
        try:
            thumb = raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            thumb = None
        if thumb is not None:
            if thumb.format == rawpy.ThumbFormat.JPEG:
                import io

                preview = Image.open(io.BytesIO(thumb.data))
                preview.draft("RGB", (need, need))
                preview = preview.convert("RGB")
            else:
                preview = Image.fromarray(np.asarray(thumb.data, np.uint8)).convert("RGB")
            if min(preview.size) >= min(need, width, height):
                im = preview.transpose(_RAW_FLIP[sizes.flip]) if sizes.flip in _RAW_FLIP \
                    else preview
        if im is None:  # demosaiced, and turned upright by LibRaw itself
            im = Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True,
                                                 output_bps=8))
    return im, ImageInfo(width, height, "RAW")


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
        if is_raw(source):
            im, info = open_raw(source, size, max_megapixels)
            im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(im, dtype=np.uint8), info
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
    except ImageLoadError:
        raise
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
    draft-decoded, camera RAW files from their preview where it is large enough). For
    pictures of a photo: thumbnails, contact sheets, edited copies."""
    if is_raw(source):
        im = open_raw(source, max_side)[0]
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return im
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
