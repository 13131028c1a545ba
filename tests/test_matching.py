"""Verification by geometry: copies (crops, quarter turns, mirrors, captions, borders, a
photo pasted into a page) are the same picture; distinct pictures and two shots of one scene
(a board moved before a fixed camera, a stereo pair) are not."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from imgsearch.copies import matching

from .conftest import scene


def feats(im: Image.Image) -> matching.Features:
    return matching.features(np.asarray(im.convert("RGB")))


def crop(im: Image.Image, f: float, fx: float = 0.3, fy: float = 0.6) -> Image.Image:
    w, h = round(im.width * f), round(im.height * f)
    x, y = round((im.width - w) * fx), round((im.height - h) * fy)
    return im.crop((x, y, x + w, y + h))


def caption(im: Image.Image) -> Image.Image:
    out = im.copy()
    ImageDraw.Draw(out).text((30, im.height * 0.75), "Summer holiday 2019", fill="white",
                             stroke_width=2, stroke_fill="black", font_size=32)
    return out


def border(im: Image.Image, px: int = 60) -> Image.Image:
    return ImageOps.expand(im, border=px, fill="white")


def pasted(im: Image.Image) -> Image.Image:
    """The picture at 60% of a page's side, as in a screenshot of it."""
    page = Image.new("RGB", (round(im.width / 0.6), round(im.height / 0.6)), (235, 235, 240))
    ImageDraw.Draw(page).rectangle((0, 0, page.width, 40), fill=(40, 40, 60))
    page.paste(im, (50, 70))
    return page


EDITS = {
    "crop 70%": lambda im: crop(im, 0.7),
    "crop 50%": lambda im: crop(im, 0.5),
    "rotate 90": lambda im: im.rotate(90, expand=True),
    "rotate 180": lambda im: im.rotate(180),
    "rotate 270": lambda im: im.rotate(270, expand=True),
    "mirror": ImageOps.mirror,
    "mirror + rotate 90": lambda im: ImageOps.mirror(im).rotate(90, expand=True),
    "caption": caption,
    "white border": border,
    "grayscale": lambda im: im.convert("L").convert("RGB"),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "downscale 25%": lambda im: im.resize((im.width // 4, im.height // 4)),
    "screenshot": pasted,
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_copy_is_the_same_picture(edit):
    original = scene(1)
    m = matching.match(feats(original), feats(EDITS[edit](original)))
    assert m.same, (edit, m)
    assert m.shared >= matching.MIN_SHARED
    assert m.homography is not None and len(m.homography) == 9


def test_the_verdict_is_the_same_both_ways():
    original = scene(2)
    copy = crop(original, 0.6)
    ab, ba = matching.match(feats(original), feats(copy)), matching.match(feats(copy),
                                                                          feats(original))
    assert ab.same and ba.same
    # the crop is explained whole by its original; the original only over the crop's area
    assert ab.shared_b > 0.85 and ab.shared_a < 0.6, ab
    assert ba.shared_a > 0.85 and ba.shared_b < 0.6, ba


def test_a_mirror_is_matched_as_one():
    original = scene(3)
    m = matching.match(feats(original), feats(ImageOps.mirror(original)))
    assert m.same and m.mirrored


def test_distinct_pictures_are_not_the_same():
    fs = [feats(scene(s)) for s in range(10, 16)]
    for i in range(len(fs)):
        for j in range(i + 1, len(fs)):
            m = matching.match(fs[i], fs[j])
            assert not m.same, (i, j, m)


def board(x: int, y: int, angle: float) -> Image.Image:
    """A checkerboard held before a fixed camera, in front of the same room."""
    room = scene(40, 640, 480)
    squares = Image.new("RGB", (240, 180), "white")
    d = ImageDraw.Draw(squares)
    for i in range(8):
        for j in range(6):
            if (i + j) % 2:
                d.rectangle((i * 30, j * 30, i * 30 + 29, j * 30 + 29), fill="black")
    squares = squares.rotate(angle, expand=True, fillcolor=(0, 0, 0))
    mask = Image.new("L", (240, 180), 255).rotate(angle, expand=True)
    room.paste(squares, (x, y), mask)
    return room


def test_two_shots_of_one_board_are_not_copies():
    shots = [board(40, 60, 0), board(300, 200, 15), board(200, 40, -20)]
    fs = [feats(s) for s in shots]
    for i in range(3):
        for j in range(i + 1, 3):
            m = matching.match(fs[i], fs[j])
            assert not m.same, (i, j, m)
            assert m.shared < matching.MIN_SHARED


def test_a_stereo_pair_is_not_a_copy():
    """Two views of a scene in depth: the near layer shifts more than the far one."""
    far, near = scene(50, 700, 360), scene(51, 300, 200)
    mask = Image.new("L", near.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, 300, 200), fill=255)

    def view(shift_far: int, shift_near: int) -> Image.Image:
        v = far.crop((shift_far, 0, shift_far + 480, 360))
        v.paste(near, (90 + shift_near, 80), mask)
        return v

    m = matching.match(feats(view(0, 0)), feats(view(12, 90)))
    assert not m.same, m


def test_a_recoloured_picture_is_not_a_copy_but_a_grey_one_is():
    original = scene(60)
    a = np.asarray(original)
    swapped = Image.fromarray(np.ascontiguousarray(a[..., ::-1]))  # red and blue exchanged
    f = feats(original)
    assert not matching.match(f, feats(swapped)).same
    assert matching.match(f, feats(original.convert("L").convert("RGB"))).same


def test_blank_and_tiny_pictures_do_not_crash_or_match():
    white = Image.new("RGB", (200, 150), "white")
    m = matching.match(feats(scene(70)), feats(white))
    assert not m.same
    tiny = matching.match(feats(Image.new("RGB", (3, 2), "red")), feats(scene(71)))
    assert not tiny.same


def test_load_features_reads_a_file(tmp_path):
    path = tmp_path / "a.jpg"
    scene(80, 1600, 1200).save(path, quality=90)
    f = matching.load_features(path)
    assert max(f.size) == matching.MATCH_SIDE
    assert len(f.direct.points) > 100 and len(f.mirrored.points) > 100
    assert matching.match(f, feats(scene(80, 1600, 1200))).same


def test_a_plain_logo_and_its_jpeg_are_the_same_picture():
    """A simple shape on black (too symmetric for keypoints): its JPEG's noise trims the
    margins a little differently, so the plain map goes between the files' frames."""
    import io

    def logo(shape: str) -> Image.Image:
        im = Image.new("RGB", (256, 256), "black")
        d = ImageDraw.Draw(im)
        if shape == "ring":
            d.ellipse((20, 20, 236, 236), outline="white", width=14)
        else:
            d.rectangle((40, 40, 216, 216), outline="white", width=14)
        return im

    buf = io.BytesIO()
    logo("ring").save(buf, "JPEG", quality=70)
    buf.seek(0)
    ring = feats(logo("ring"))
    assert matching.match(ring, matching.load_features(buf)).same
    assert not matching.match(ring, feats(logo("square"))).same


def test_dense_maps_are_tried_for_few_keypoints_even_when_not_asked():
    """dense=False judges a textured pair by its keypoints alone, but a picture with too few
    keypoints for them (a plain logo) is still compared whole."""
    soft = Image.new("RGB", (320, 240), (40, 60, 90))
    ImageDraw.Draw(soft).ellipse((60, 40, 260, 200), fill=(220, 180, 60))
    soft = soft.filter(ImageFilter.GaussianBlur(8))  # no corners: no keypoints
    a, b = feats(soft), feats(soft.resize((240, 180)))
    assert max(len(a.direct.points), len(b.direct.points)) < matching.FEW_KEYPOINTS
    m = matching.match(a, b, dense=False)
    assert m.same and m.inliers == 0  # proven by a dense map


def test_footprint_is_where_the_other_picture_lies():
    original = scene(90)
    f = feats(original)
    whole = matching.footprint(matching.match(f, feats(original.resize((240, 180)))))
    assert whole.mean() > 0.95
    quarter = matching.match(f, feats(crop(original, 0.5, fx=0.0, fy=0.0)))
    assert quarter.same
    fp = matching.footprint(quarter)
    assert 0.18 < fp.mean() < 0.32 and fp[:16, :16].mean() > 0.9 and not fp[20:, 20:].any()
    xy = matching.corners(quarter)
    assert np.allclose(xy, [[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]], atol=0.03), xy


def test_a_pasted_copy_leaves_a_seam_and_a_crop_does_not():
    original = scene(91)
    f = feats(original)
    page = pasted(original)
    fp = feats(page)
    m = matching.match(fp, f)  # the page explains the whole original, which sits inside it
    assert m.same and matching.seam(fp, m)
    part = matching.match(f, feats(crop(original, 0.6)))
    assert part.same and not matching.seam(f, part)  # a crop's outline runs through content


def test_a_dark_variant_is_not_a_copy_but_a_brighter_one_is():
    original = scene(92)
    f = feats(original)
    assert matching.match(f, feats(ImageEnhance.Brightness(original).enhance(1.3))).same
    dark = ImageEnhance.Brightness(original).enhance(0.15)  # a night variant of a wallpaper
    assert not matching.match(f, feats(dark)).same


def test_a_small_object_in_a_scene_is_not_a_copy_but_a_screenshot_is():
    """A picture covering less than MIN_COVER of the other (an object small in a room) is
    not a copy of it, however well it matches; one on a page (a screenshot) is."""
    thing, room = scene(80, 480, 360), scene(81, 1400, 1050)
    room.paste(thing, (466, 350))  # 12% of the room's area
    f = feats(thing)
    m = matching.match(f, feats(room))
    assert m.inliers >= matching.MIN_INLIERS and m.shared_a >= matching.MIN_SHARED, m
    assert not m.same
    assert matching.match(f, feats(pasted(thing))).same


SAME_SCENE = [("left01.jpg", "left02.jpg"), ("left03.jpg", "left12.jpg"),
              ("left01.jpg", "right01.jpg"), ("aloeL.jpg", "aloeR.jpg"),
              ("left.jpg", "right.jpg"), ("box.png", "box_in_scene.png")]


@pytest.mark.parametrize("pair", SAME_SCENE, ids="/".join)
def test_two_real_shots_of_one_scene_are_not_copies(real_photos, pair):
    """The demo's calibration board shots of one fixed camera, its stereo pairs, and a box
    with a scene holding it (scripts/fetch_data.sh)."""
    from .conftest import find

    a, b = (matching.load_features(find(real_photos, name)) for name in pair)
    assert not matching.match(a, b).same


def test_a_real_photo_and_its_edits_are_copies(real_photos):
    from .conftest import find

    original = Image.open(find(real_photos, "aloeL.jpg")).convert("RGB")
    f = feats(original)
    for edit in ("crop 50%", "rotate 90", "mirror", "caption", "white border", "screenshot"):
        assert matching.match(f, feats(EDITS[edit](original))).same, edit


def test_lab_ab_is_opencvs_conversion():
    import cv2

    rgb = np.random.default_rng(0).random((20, 30, 3)).astype(np.float32)
    want = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[..., 1:]
    assert np.abs(matching.lab_ab(rgb) - want).max() < 0.5
