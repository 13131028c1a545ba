import numpy as np
import pytest
from PIL import Image

from imgsearch import methods
from imgsearch.config import IndexConfig
from imgsearch.errors import UnknownMethod
from imgsearch.methods import Decodes, Reconstructs
from imgsearch.methods.baselines import PCAEmbedder, PixelsEmbedder, pixel_vectors


def new_embedder(name, cfg):
    return methods.get(name).create(cfg)


def images(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("size, target", [(16, 8), (12, 5), (8, 8)])
def test_pixel_vectors_equal_a_pillow_box_resize(size, target):
    x = images(3, size)
    want = np.stack([np.asarray(Image.fromarray(im).resize((target, target),
                                                            Image.Resampling.BOX))
                     for im in x]).reshape(3, -1) / 255.0
    got = pixel_vectors(x, target)
    assert got.shape == (3, target * target * 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1 / 255 + 1e-6)


def test_pixels_embedder_dim():
    e = PixelsEmbedder(4)
    assert e.dim == 48 and e.encode(images(2, 8)).shape == (2, 48)


def test_full_rank_pca_preserves_distances(tmp_path):
    cfg = IndexConfig(input_size=8, pixel_size=4, code_dim=48)
    x = images(300, 8)
    pca = new_embedder("pca", cfg)
    pca.fit(lambda: iter([x[:128], x[128:]]), len(x))
    assert pca.dim == 48
    codes = pca.encode(x[:20])
    raw = pixel_vectors(x[:20], 4)
    d_codes = np.linalg.norm(codes[:, None] - codes[None], axis=-1)
    d_raw = np.linalg.norm(raw[:, None] - raw[None], axis=-1)
    np.testing.assert_allclose(d_codes, d_raw, atol=1e-3)  # an orthogonal change of basis


def test_pca_keeps_leading_components_and_round_trips(tmp_path):
    cfg = IndexConfig(input_size=8, pixel_size=4, code_dim=6)
    rng = np.random.default_rng(1)
    # images that vary along 3 directions only: 6 components capture all of it
    basis = rng.normal(size=(3, 48))
    coeffs = rng.normal(size=(200, 3))
    flat = np.clip(128 + 8 * coeffs @ basis, 0, 255).round().astype(np.uint8)
    x = flat.reshape(200, 4, 4, 3).repeat(2, axis=1).repeat(2, axis=2)
    pca = new_embedder("pca", cfg)
    pca.fit(lambda: iter([x]), len(x))
    recon = pca.reconstruct(x)
    np.testing.assert_array_equal(recon, pca.decode(pca.encode(x)))
    assert recon.shape == (200, 4, 4, 3)
    err = np.abs(recon - pixel_vectors(x, 4).reshape(recon.shape))
    assert err.mean() < 0.002 and err.max() < 0.01  # only uint8 rounding is lost
    pca.save(tmp_path)
    again = methods.get("pca").load(tmp_path, cfg)
    np.testing.assert_array_equal(again.encode(x[:5]), pca.encode(x[:5]))


def test_pca_with_fewer_images_than_components():
    cfg = IndexConfig(input_size=8, pixel_size=4, code_dim=256)
    pca = PCAEmbedder(cfg.pixel_size, cfg.code_dim)
    pca.fit(lambda: iter([images(10, 8)]), 10)
    assert pca.dim == 10 and pca.encode(images(2, 8)).shape == (2, 10)


def test_unknown_method_raises():
    with pytest.raises(UnknownMethod, match="unknown method 'nope'; choose one of pixels, pca"):
        new_embedder("nope", IndexConfig())


def test_registry_describes_every_method():
    assert methods.names() == ("pixels", "pca", "ae", "vae", "tcvae", "aae")
    assert methods.names(learned=True) == ("ae", "vae", "tcvae", "aae")
    assert methods.names(learned=False) == ("pixels", "pca")
    for m in methods.METHODS.values():
        assert m.learned == (m.arch is not None) and m.learned == (m.create is None), m.name
        assert m.summary and m.load is not None
    assert methods.by_preference(["pixels", "pca", "vae", "ae"]) == ["ae", "vae", "pca", "pixels"]
    assert [methods.get(m).arch for m in ("tcvae", "aae")] == ["vae", "aae"]
    assert methods.get("tcvae").settings["kl"] == "tc" and methods.get("aae").samples


def test_capabilities_are_protocols_the_embedders_meet():
    cfg = IndexConfig(input_size=8, pixel_size=4, code_dim=4)
    pca, pixels = new_embedder("pca", cfg), new_embedder("pixels", cfg)
    assert isinstance(pca, Reconstructs) and isinstance(pca, Decodes)
    assert not isinstance(pixels, Reconstructs) and not isinstance(pixels, Decodes)
    assert methods.get("pca").reconstructs and not methods.get("pixels").reconstructs


def test_randomized_pca_captures_the_variance_of_an_exact_pca():
    rng = np.random.default_rng(2)
    # 500 images of 8x8x3 = 192 values with a decaying spectrum, like photos
    scales = 40 * 0.8 ** np.arange(192)
    basis = np.linalg.qr(rng.normal(size=(192, 192)))[0]
    flat = np.clip(128 + (rng.normal(size=(500, 192)) * scales) @ basis.T, 0, 255)
    x = flat.astype(np.uint8).reshape(500, 8, 8, 3)
    cfg = IndexConfig(input_size=8, pixel_size=8, code_dim=16)
    pca = new_embedder("pca", cfg)
    pca.fit(lambda: iter([x]), len(x))
    v = pixel_vectors(x, 8)
    centred = v - v.mean(axis=0)
    exact = np.linalg.svd(centred, full_matrices=False)[1][:16] ** 2
    captured = (centred @ pca.components.T).var(axis=0).sum() * len(v)
    assert captured / exact.sum() > 0.999
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(16), atol=1e-4)


def test_the_exported_encoder_gives_the_models_codes(tmp_path):
    from imgsearch.config import TrainConfig
    from imgsearch.experiment import train_on_array
    from imgsearch.methods.onnx import OnnxEmbedder
    from imgsearch.models.autoencoder import AEConfig
    from imgsearch.models.vae import VAEConfig

    x = images(40, 16)
    fast = TrainConfig(epochs=1, min_steps=0, max_steps=3, batch_size=8)
    small = IndexConfig(input_size=16, pixel_size=8)
    for method, cfg in (("ae", AEConfig(input_size=16, widths=(4, 8), code_dim=6)),
                        ("vae", VAEConfig(input_size=16, widths=(4, 8), code_dim=6))):
        model, _ = train_on_array(method, cfg, x, fast, tmp_path / f"{method}.pt")
        model.save(tmp_path / method)
        exported = methods.open_embedder(method, tmp_path / method, small, exported=True)
        assert isinstance(exported, OnnxEmbedder) and exported.name == method
        np.testing.assert_allclose(exported.encode(x), model.encode(x), atol=1e-4)
        full = methods.open_embedder(method, tmp_path / method, small)
        assert isinstance(full, Reconstructs) and full.reconstruct(x[:2]).shape == (2, 16, 16, 3)


def test_a_learned_default_needs_a_lead_beyond_two_standard_errors():
    scores = {"pixels": 0.80, "pca": 0.78, "ae": 0.83}
    # no errors known (an index built before they were kept): the best score answers
    assert methods.choose(scores, 500, 20)[0] == "ae"
    near, why, _ = methods.choose(scores, 500, 20, {"pixels": 0.02, "pca": 0.02, "ae": 0.02})
    assert near == "pixels" and "two standard errors" in why and "ae 0.830 ± 0.020" in why
    far, why, lead = methods.choose(scores, 500, 20, {"pixels": 0.01, "pca": 0.01, "ae": 0.01})
    assert far == "ae" and "± 0.010" in why
    assert lead["over"] == "pixels" and not lead["paired"]


def test_a_lead_on_the_same_copies_is_judged_pair_by_pair():
    from imgsearch.stats import paired_lead

    # 30 held-out images x 12 copies; ae finds one copy more than pca on 11 of them
    pca = [10] * 30
    ae = [11] * 11 + [10] * 19
    scores = {"pca": sum(pca) / 360, "ae": sum(ae) / 360}
    errors = {"pca": 0.02, "ae": 0.02}  # as independent: 0.031 < 2 x 0.028, the baseline
    assert methods.choose(scores, 500, 20, errors).method == "pca"
    outcomes = {"pca": {"key": "k", "copies": 12, "per_image": pca},
                "ae": {"key": "k", "copies": 12, "per_image": ae}}
    got = methods.choose(scores, 500, 20, errors, outcomes)
    want = paired_lead(ae, pca, 12)
    assert got.method == "ae" and got.lead["paired"] and got.lead["over"] == "pca"
    assert got.lead["lead"] == pytest.approx(want[0], abs=1e-6) and got.lead["se"] == pytest.approx(
        want[1], abs=1e-6) and want[0] > 2 * want[1]
    assert "leads pca by 0.031" in got.reason and "paired" in got.reason
    # copies made anew between the two scores (another key): back to the unpaired rule
    outcomes["pca"] = {**outcomes["pca"], "key": "other"}
    assert methods.choose(scores, 500, 20, errors, outcomes).method == "pca"
    # the same hits on every image: no lead at all, the baseline answers
    same = {m: {"key": "k", "copies": 12, "per_image": pca} for m in ("pca", "ae")}
    assert methods.choose({"pca": 0.8, "ae": 0.8}, 500, 20, errors, same).method == "pca"


def test_the_default_weighs_copies_and_other_shots_together():
    from imgsearch.stats import combined

    def measures(copies_hits, shot_hits):
        return [{"key": "c", "copies": 12, "per_image": copies_hits},
                {"key": "s", "copies": 7, "per_image": shot_hits}]

    base = measures([10] * 40, [2] * 40)
    # the learned code finds about as many copies, and far more other shots: it answers
    wins = measures([10] * 38 + [11] * 2, [4] * 30 + [3] * 10)
    outcomes = {"pca": base, "ae": wins}
    both = {m: combined(v) for m, v in outcomes.items()}
    got = methods.choose({m: v[0] for m, v in both.items()}, 500, 20,
                         {m: v[1] for m, v in both.items()}, outcomes, named="both")
    assert got.method == "ae" and got.lead["paired"] and got.reason.startswith("best both")
    # as many copies, and fewer other shots: the baseline keeps answering
    loses = measures([10] * 38 + [11] * 2, [2] * 30 + [1] * 10)
    outcomes = {"pca": base, "ae": loses}
    both = {m: combined(v) for m, v in outcomes.items()}
    got = methods.choose({m: v[0] for m, v in both.items()}, 500, 20,
                         {m: v[1] for m, v in both.items()}, outcomes, named="both")
    assert got.method == "pca"
