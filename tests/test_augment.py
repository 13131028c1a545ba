"""Batched photo edits: each against a direct reference, and the random views seeded."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from imgsearch import augment as A

from .conftest import pattern


def batch(n=6, size=32):
    x = np.stack([pattern(i, size) for i in range(n)])
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255


def full(b, v):
    return torch.full((b,), float(v))


def test_identity_mirror_and_quarter_turn_are_exact():
    x = batch()
    b = len(x)
    no = torch.zeros(b, dtype=torch.bool)
    same = A.affine(x, full(b, 1), full(b, 1), full(b, 0), full(b, 0), full(b, 0), no)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    mirror = A.affine(x, full(b, 1), full(b, 1), full(b, 0), full(b, 0), full(b, 0), ~no)
    torch.testing.assert_close(mirror, x.flip(-1), atol=1e-5, rtol=0)
    turned = A.affine(x, full(b, 1), full(b, 1), full(b, math.pi / 2), full(b, 0), full(b, 0),
                      no)
    assert torch.allclose(turned, x.rot90(1, (-2, -1)), atol=1e-4) or torch.allclose(
        turned, x.rot90(-1, (-2, -1)), atol=1e-4)


def test_centre_crop_equals_a_resampled_crop():
    x = batch(2, 32)
    b = len(x)
    crop = A.affine(x, full(b, 0.5), full(b, 0.5), full(b, 0), full(b, 0), full(b, 0),
                    torch.zeros(b, dtype=torch.bool))
    want = torch.nn.functional.interpolate(x[..., 8:24, 8:24], size=32, mode="bilinear",
                                           align_corners=False)
    assert (crop - want)[..., 2:-2, 2:-2].abs().max() < 1e-4  # borders: edge handling differs


def test_grey_matches_pillow():
    x = batch(3)
    ours = (A.grey(x)[:, 0] * 255).round()
    for i in range(3):
        im = Image.fromarray((x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        ref = np.asarray(im.convert("L"), np.float32)
        assert np.abs(ours[i].numpy() - ref).max() <= 1


def test_jpeg_simulation_is_close_to_pillows_jpeg():
    x = batch(4, 64)
    for q in (20, 50, 90):
        ours = A.jpeg(x, full(4, q))
        errs = []
        for i in range(4):
            im = Image.fromarray((x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=q)
            ref = np.asarray(Image.open(buf), np.float32) / 255
            errs.append(np.abs(ours[i].permute(1, 2, 0).numpy() - ref).mean())
        assert np.mean(errs) < 0.02, (q, errs)  # the same artefacts, up to rounding
    lossless = A.jpeg(x, full(4, 100))
    lossy = A.jpeg(x, full(4, 10))
    assert (lossless - x).abs().mean() < (lossy - x).abs().mean()
    odd = batch(2, 28)  # sides that are no multiple of 16 are padded and cropped back
    assert A.jpeg(odd, full(2, 50)).shape == odd.shape


def test_jitter_blur_and_erase_by_definition():
    x = batch(4)
    b = len(x)
    one, zero = full(b, 1), full(b, 0)
    torch.testing.assert_close(A.jitter(x, one, one, one, zero), x, atol=1e-5, rtol=0)
    bright = A.jitter(x * 0.5, full(b, 1.5), one, one, zero)
    torch.testing.assert_close(bright, x * 0.75, atol=1e-5, rtol=0)
    grey = A.jitter(x, one, one, zero, zero)  # saturation 0: grey in every channel
    torch.testing.assert_close(grey[:, 0], grey[:, 1], atol=1e-5, rtol=0)
    blurred = A.blur(x, full(b, 1.5))
    assert blurred.std() < x.std()
    torch.testing.assert_close(blurred.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02, rtol=0)
    torch.testing.assert_close(A.blur(x, full(b, 0.01)), x, atol=1e-5, rtol=0)
    erased = A.erase(x, full(b, 0.25), one, zero, zero, full(b, 0.5))
    assert (erased[:, :, :16, :16] == 0.5).all() and torch.equal(erased[:, :, 16:], x[:, :, 16:])


def test_paste_into_and_perspective_keep_the_picture_recognisable():
    x, bg = batch(2, 32), torch.zeros(2, 3, 32, 32)
    pasted = A.paste_into(x, bg, full(2, 0.5), full(2, 0), full(2, 0))
    small = torch.nn.functional.interpolate(x, size=16, mode="bilinear", antialias=True)
    assert (pasted[..., :16, :16] - small).abs().mean() < 0.06
    assert pasted[..., 18:, 18:].abs().max() == 0  # the background elsewhere
    warped = A.perspective(x, full(2, 0.2))
    assert warped.shape == x.shape and (warped - x).abs().mean() > 0.01


def test_random_views_are_seeded_batched_and_in_range():
    x = batch(16, 32)
    cfg = A.PRESETS["photo"]
    one, two = A.Augment(cfg, 32, 3, seed=3)(x), A.Augment(cfg, 32, 3, seed=3)(x)
    torch.testing.assert_close(one, two)
    other = A.Augment(cfg, 32, 3, seed=4)(x)
    assert not torch.allclose(one, other)
    assert one.shape == x.shape and one.min() >= 0 and one.max() <= 1
    aug = A.Augment(cfg, 32, 3, seed=0)
    assert not torch.allclose(aug(x), aug(x))  # a new draw every call
    grey = A.Augment(A.PRESETS["small"], 28, 1, seed=0)(batch(4, 28)[:, :1])
    assert grey.shape == (4, 1, 28, 28)


def test_presets_by_image_kind():
    assert A.preset_for("auto", 28, 1) == A.PRESETS["small"]
    assert A.preset_for("auto", 64, 3) == A.PRESETS["photo"]
    with pytest.raises(ValueError, match="augment must be one of"):
        A.preset_for("strong", 64, 3)
