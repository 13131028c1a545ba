"""Flattening transparency (images.flatten): art on a transparent background keeps its picture,
whichever way it is decoded, and an index of such images does not collapse into one group."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from imgsearch.config import IndexConfig
from imgsearch.copies.groups import in_index
from imgsearch.images import (
    BLACK,
    DECODE_VERSION,
    WHITE,
    background,
    decoding_changed,
    load_image,
    load_regions,
    open_upright,
    to_rgb,
)
from imgsearch.pipeline import update_index
from imgsearch.workspace import Workspace

from .conftest import pattern

SIDE = 256  # the drawn art; decoded at 32, as a small index would


def art(kind: str, ink: int = 255) -> Image.Image:
    """Grey-level ``ink`` art of ``kind`` on a fully transparent background (RGBA)."""
    im = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    fill = (ink, ink, ink, 255)
    if kind == "circle":
        d.ellipse((48, 48, 208, 208), fill=fill)
    elif kind == "text":
        d.text((16, 70), "MATE", fill=fill, font=ImageFont.load_default(size=90))
    elif kind == "stripes":
        for y in range(0, SIDE, 64):
            d.rectangle((0, y, SIDE, y + 24), fill=fill)
    elif kind == "triangle":
        d.polygon([(128, 20), (236, 230), (20, 230)], fill=fill)
    elif kind == "ring":
        d.ellipse((20, 20, 236, 236), outline=fill, width=30)
    elif kind == "cross":
        d.line((0, 0, SIDE, SIDE), fill=fill, width=40)
        d.line((0, SIDE, SIDE, 0), fill=fill, width=40)
    elif kind == "corner":
        d.rectangle((140, 0, SIDE, 116), fill=fill)
    return im


WALLPAPERS = ("circle", "text", "stripes", "triangle", "ring", "cross", "corner")


def saved(im: Image.Image, path, fmt: str = "PNG"):
    im.save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return path


def decoded(im: Image.Image, tmp_path, name: str = "x.png", size: int = 32) -> np.ndarray:
    return load_image(saved(im, tmp_path / name), size)[0]


# -- the rule ------------------------------------------------------------------------------
@pytest.mark.parametrize("ink, behind", [(255, BLACK), (0, WHITE)])
def test_white_and_black_art_on_transparent_keep_their_picture(tmp_path, ink, behind):
    pixels = decoded(art("circle", ink), tmp_path)
    assert tuple(pixels[0, 0]) == behind  # the transparent corner: the contrasting colour
    assert tuple(pixels[16, 16]) == (ink,) * 3  # the art itself, as drawn
    assert pixels.std() > 80, "flattened to a near-uniform image"


def test_background_is_the_one_farther_from_the_visible_pixels():
    """Known answers for the alpha-weighted mean luminance (visible pixels only)."""
    im = Image.new("RGBA", (4, 1), (0, 0, 0, 0))
    assert background(im) == WHITE  # nothing visible
    im.putpixel((0, 0), (255, 255, 255, 255))
    im.putpixel((1, 0), (0, 0, 0, 0))  # black but invisible: does not count
    assert background(im) == BLACK
    im.putpixel((2, 0), (0, 0, 0, 255))  # mean 0.5 exactly: not light, so white
    assert background(im) == WHITE
    im.putpixel((2, 0), (0, 0, 0, 100))  # half-transparent black weighs less: light wins
    assert background(im) == BLACK
    im.putpixel((3, 0), (255, 0, 0, 255))  # white, red (luma 0.299), faint black: 0.54
    assert background(im) == BLACK
    im.putpixel((2, 0), (0, 0, 0, 255))  # white, red, black, all opaque: mean 0.43
    assert background(im) == WHITE


def test_opaque_images_are_unchanged_and_transparent_ones_do_not_crash(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((40, 30), 255, np.uint8)])
    assert np.array_equal(np.asarray(to_rgb(Image.fromarray(rgba, "RGBA"))), rgb)
    assert np.array_equal(decoded(Image.fromarray(rgba, "RGBA"), tmp_path, "a.png"),
                          decoded(Image.fromarray(rgb), tmp_path, "b.png"))
    empty = decoded(Image.new("RGBA", (20, 20), (0, 0, 0, 0)), tmp_path, "empty.png")
    assert (empty == 255).all()  # nothing visible: white


def test_every_mode_with_transparency_follows_the_rule(tmp_path):
    """LA, a palette with a transparent entry, and an RGB colour key (PNG tRNS)."""
    la = Image.new("LA", (20, 20), (0, 0))
    ImageDraw.Draw(la).rectangle((5, 5, 14, 14), fill=(250, 255))
    p = Image.new("P", (20, 20), 0)
    p.putpalette([9, 9, 9, 250, 250, 250] + [0] * 762)
    ImageDraw.Draw(p).rectangle((5, 5, 14, 14), fill=1)
    p.info["transparency"] = 0
    keyed = Image.new("RGB", (20, 20), (9, 9, 9))
    ImageDraw.Draw(keyed).rectangle((5, 5, 14, 14), fill=(250, 250, 250))
    for name, im, extra in [("la", la, {}), ("p", p, {"transparency": 0}),
                            ("key", keyed, {"transparency": (9, 9, 9)})]:
        im.save(tmp_path / f"{name}.png", **extra)
        pixels = load_image(tmp_path / f"{name}.png", 20)[0]
        assert tuple(pixels[0, 0]) == BLACK, name  # the light square's background
        assert tuple(pixels[10, 10]) == (250, 250, 250), name


def test_thumbnails_and_regions_flatten_as_the_cache_does(tmp_path):
    path = saved(art("circle"), tmp_path / "c.png")
    thumb = np.asarray(open_upright(path, 64))
    assert tuple(thumb[0, 0]) == BLACK and tuple(thumb[32, 32]) == WHITE
    full, _ = load_image(path, 32)
    regions, _ = load_regions(path, 32)
    assert np.array_equal(regions[0], full)
    assert all(r.std() > 40 for r in regions), "a region flattened to a blank image"


def test_distinct_transparent_images_decode_apart(tmp_path):
    """White circle, white text, white stripes: none blank, every pair far apart (a mean
    difference of over 40 of 255; under the old rule all three were uniform white)."""
    arrays = {k: decoded(art(k), tmp_path, f"{k}.png").astype(np.float64)
              for k in ("circle", "text", "stripes")}
    for k, a in arrays.items():
        assert a.std() > 40, f"{k} decoded to a near-blank image"
    for (k1, a), (k2, b) in itertools.combinations(arrays.items(), 2):
        assert np.abs(a - b).mean() > 40, (k1, k2)


@pytest.mark.parametrize("ink, behind", [(220, BLACK), (40, WHITE)])
def test_a_transparent_picture_finds_its_opaque_twin(tmp_path, ink, behind):
    """A photo-like picture (a textured disc) cut out onto transparency decodes to the pixels
    of the same picture on the plain background the rule picks for it: light pictures on
    black, dark ones on white, which is how such art is most often shown. The colour stored
    under alpha 0 (noise here) does not matter."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    tone = ink + 30 * np.sin(12 * x) * np.cos(9 * y)  # a texture around the ink level
    picture = np.clip(np.dstack([tone, tone * 0.9, tone * 1.05]), 0, 255).astype(np.uint8)
    disc = (x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.35**2
    opaque = np.where(disc[..., None], picture, np.array(behind, np.uint8))
    hidden = rng.integers(0, 256, picture.shape, dtype=np.uint8)
    cut_out = np.dstack([np.where(disc[..., None], picture, hidden),
                         np.where(disc, 255, 0).astype(np.uint8)])
    twin = decoded(Image.fromarray(opaque), tmp_path, "opaque.png")
    got = decoded(Image.fromarray(cut_out, "RGBA"), tmp_path, "cut.png")
    assert np.abs(got.astype(int) - twin).max() <= 1


def test_decoding_version_marks_what_changed():
    assert DECODE_VERSION == 2
    assert decoding_changed("PNG", 1) and decoding_changed("WEBP", 1)
    assert decoding_changed("GIF", 1) and decoding_changed(None, 1)  # unknown: decode again
    assert not decoding_changed("JPEG", 1)  # no alpha: version 2 decodes it the same
    assert not decoding_changed("PNG", DECODE_VERSION)


# -- in an index ---------------------------------------------------------------------------
def test_distinct_transparent_wallpapers_do_not_form_a_duplicate_group(tmp_path):
    """Seven white-on-transparent wallpapers among sixteen photos (issue 20: the wallpapers
    were one group when transparency was composited on white) stay apart at the duplicate
    threshold the index calibrates, while an opaque copy of one of them (the ring exported
    on black as a JPEG) is found with it."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in WALLPAPERS:
        saved(art(k), photos / f"{k}.png")
    on_black = Image.new("RGB", (SIDE, SIDE), BLACK)
    on_black.paste(art("ring"), mask=art("ring").getchannel("A"))
    on_black.save(photos / "ring-export.jpg", quality=90)
    for i in range(16):
        Image.fromarray(pattern(i, 64)).save(photos / f"photo{i:02d}.jpg", quality=90)
    ws = Workspace.create(tmp_path / "index", IndexConfig(input_size=32))
    try:
        update_index(ws, photos, ["pixels"], workers=1)
        found = in_index(ws, "pixels")
    finally:
        ws.close()
    names = [sorted(Path(m.path).name for m in (g.keeper, *g.others)) for g in found.groups]
    assert found.threshold_from == "calibrated"  # by the self-check, as a real index is
    assert names == [["ring-export.jpg", "ring.png"]], (found.threshold, names)
