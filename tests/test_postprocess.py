"""Retrieval-time processing: each step by its definition, and stored with the method."""

import numpy as np
import pytest

from imgsearch.config import IndexConfig
from imgsearch.errors import ConfigMismatch
from imgsearch.methods import open_embedder
from imgsearch.methods.baselines import PCAEmbedder
from imgsearch.methods.postprocess import (
    Processed,
    database_side_augmentation,
    parse,
    processed,
    shrinkage,
    unwrap,
    whiten_power,
)


def data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 8, 8, 3)) * [20, 40, 60] + 120
    return np.clip(base, 0, 255).astype(np.uint8)


def fitted(steps, x):
    emb = Processed(PCAEmbedder(4, 12), steps)
    emb.fit(lambda: iter([x[:200], x[200:]]), len(x))
    return emb


def test_parse_orders_steps_and_refuses_unknown_ones():
    assert parse("l2,center") == ("center", "l2")
    assert parse("none") == () and parse("") == ()
    with pytest.raises(ConfigMismatch, match="unknown post-processing sharpen"):
        parse("sharpen")


def test_whitening_power_is_parsed_checked_and_written_back():
    assert parse("flip,whiten=0.5,l2") == ("flip", "whiten", "l2")
    assert whiten_power("flip,whiten=0.5,l2") == 0.5 and whiten_power("whiten") == 1.0
    assert whiten_power("center,l2") == 1.0  # no whitening: the power is never used
    for bad in ("whiten=2", "whiten=-0.1", "whiten=half"):
        with pytest.raises(ConfigMismatch, match=r"power is a number in 0\.\.1"):
            parse(bad)
    with pytest.raises(ConfigMismatch, match="only whiten takes a value"):
        parse("l2=1")
    emb = processed(PCAEmbedder(4, 12), "l2, whiten=0.25 ,center")
    assert isinstance(emb, Processed) and emb.spec == "center,whiten=0.25,l2"
    assert processed(PCAEmbedder(4, 12), "none").__class__ is PCAEmbedder


def test_partial_whitening_scales_each_axis_by_a_power_of_its_variance():
    """Power P: the variance v of each principal axis is divided by its shrunk variance to
    the power P (P = 1: the whitening; P = 0: a rotation, the variances kept)."""
    x = data()
    raw = PCAEmbedder(4, 12)
    raw.fit(lambda: iter([x]), len(x))
    vals = np.sort(np.linalg.eigvalsh(np.cov(raw.encode(x).astype(np.float64), rowvar=False)))
    shrunk = vals + shrinkage(400, 12) * vals.mean()
    for power in (0.0, 0.5, 1.0):
        emb = processed(PCAEmbedder(4, 12), f"center,whiten={power}")
        emb.fit(lambda: iter([x[:200], x[200:]]), len(x))
        got = np.sort(np.linalg.eigvalsh(np.cov(emb.encode(x).astype(np.float64), rowvar=False)))
        np.testing.assert_allclose(got, np.sort(vals / shrunk ** power), rtol=2e-3, atol=1e-6)
    half = processed(PCAEmbedder(4, 12), "center,whiten=0.5,l2")
    half.fit(lambda: iter([x]), len(x))
    full = fitted(("center", "whiten", "l2"), x)
    assert not np.allclose(half.encode(x[:9]), full.encode(x[:9]), atol=1e-3)


def test_whitening_scales_each_axis_by_its_shrunk_variance_and_l2_unit_length():
    x = data()
    emb = fitted(("center", "whiten"), x)
    white = emb.encode(x)
    np.testing.assert_allclose(white.mean(0), 0, atol=1e-4)
    vals = np.linalg.eigvalsh(np.cov(unwrap(emb).encode(x).astype(np.float64), rowvar=False))
    shrunk = vals / (vals + shrinkage(400, 12) * vals.mean())  # each axis after whitening
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(np.cov(white, rowvar=False))),
                               np.sort(shrunk), atol=1e-3)
    unit = fitted(("center", "l2"), x).encode(x)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)


def test_flip_averaging_makes_codes_mirror_invariant():
    x = data(50)
    emb = fitted(("flip",), x)
    np.testing.assert_allclose(emb.encode(x), emb.encode(np.ascontiguousarray(x[:, :, ::-1])),
                               atol=1e-4)
    raw = unwrap(emb)
    assert not np.allclose(raw.encode(x), raw.encode(np.ascontiguousarray(x[:, :, ::-1])))


def test_saved_with_the_method_and_loaded_back(tmp_path):
    x = data()
    emb = fitted(("center", "whiten", "l2"), x)
    emb.save(tmp_path)
    again = open_embedder("pca", tmp_path, IndexConfig(input_size=8, pixel_size=4, code_dim=12))
    assert isinstance(again, Processed) and again.steps == ("center", "whiten", "l2")
    np.testing.assert_allclose(again.encode(x[:9]), emb.encode(x[:9]), atol=1e-5)
    half = processed(PCAEmbedder(4, 12), "center,whiten=0.5,l2")
    half.fit(lambda: iter([x]), len(x))
    half.save(tmp_path / "half")
    back = open_embedder("pca", tmp_path / "half", IndexConfig(input_size=8, pixel_size=4,
                                                                code_dim=12))
    assert back.spec == "center,whiten=0.5,l2"
    np.testing.assert_allclose(back.encode(x[:9]), half.encode(x[:9]), atol=1e-5)
    plain = tmp_path / "plain"
    PCAEmbedder(4, 12, emb.inner.mean, emb.inner.components).save(plain)
    assert isinstance(open_embedder("pca", plain, IndexConfig(input_size=8, pixel_size=4)),
                      PCAEmbedder)  # no post.npz: the bare embedder


def test_whitening_fades_with_few_codes_and_is_full_with_many():
    assert shrinkage(111, 256) == pytest.approx(2.306, abs=1e-3)
    assert shrinkage(20_000, 256) == pytest.approx(0.0128)
    many = fitted(("center", "whiten"), data(20_000))
    np.testing.assert_allclose(np.cov(many.encode(data(20_000)), rowvar=False), np.eye(12),
                               atol=2e-3)
    x = data(6)  # 6 codes: the sample covariance is singular
    few = fitted(("center", "whiten"), x)
    raw = unwrap(few).encode(x).astype(np.float64)
    mean_var = np.linalg.eigvalsh(np.cov(raw, rowvar=False)).mean()
    gain = np.linalg.norm(few.proj, axis=0)  # how much whitening stretches each axis
    # at most 1 / sqrt(shrinkage * mean variance); without the shrinkage the axes never
    # seen would be stretched by 1 / sqrt(EPS * mean variance), 10x that here
    assert gain.max() <= 1.0001 / np.sqrt(shrinkage(6, raw.shape[1]) * mean_var)


def test_database_side_augmentation_known_answer():
    """alpha-DBA by hand: each code plus its nearest, weighted by cosine^alpha, unit length."""
    codes = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], np.float32)
    got = database_side_augmentation(codes, k=2, alpha=1.0)
    # code 0: itself (1) + code 1 (0.8); code 1: itself + code 0 (0.8; code 2 is 0.6);
    # code 2: itself + code 1 (0.6)
    want = np.array([[1 + 0.64, 0.48], [0.8 + 0.8, 0.6], [0.48, 1 + 0.36]])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_array_equal(database_side_augmentation(codes, k=1), codes)  # itself
