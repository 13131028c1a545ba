import numpy as np
import pytest
import torch

from imgsearch.augment import Corruption
from imgsearch.config import TrainConfig
from imgsearch.errors import ConfigMismatch, IndexFileError, TrainingDiverged
from imgsearch.methods.learned import LearnedEmbedder
from imgsearch.models.autoencoder import AEConfig
from imgsearch.models.checkpoint import load_checkpoint
from imgsearch.models.vae import VAEConfig
from imgsearch.training import ArraySource, split, train

from .conftest import pattern

TINY_AE = AEConfig(input_size=16, channels=3, widths=(4, 8), code_dim=6)
TINY_VAE = VAEConfig(input_size=16, channels=3, widths=(4, 8), code_dim=6)
FAST = TrainConfig(epochs=1, min_steps=0, batch_size=8, max_minutes=0, device="cpu")


@pytest.fixture
def images():
    return ArraySource(np.stack([pattern(i, 16) for i in range(20)]))


@pytest.mark.parametrize("method, config", [("ae", TINY_AE), ("vae", TINY_VAE)])
def test_checkpoint_round_trip_reproduces_codes(tmp_path, images, method, config):
    history = train(method, config, images, FAST, tmp_path / "c.pt")
    assert [h.epoch for h in history] == [1] and np.isfinite(history[0].val_loss)
    first = LearnedEmbedder.from_file(tmp_path / "c.pt", device="cpu")
    codes = first.encode(images.images)
    assert codes.shape == (20, 6) and codes.dtype == np.float32
    first.save(tmp_path / "export")
    again = LearnedEmbedder.from_file(tmp_path / "export" / "model.pt", device="cpu")
    np.testing.assert_array_equal(again.encode(images.images), codes)


def test_checkpoint_holds_only_plain_values(tmp_path, images):
    train("ae", TINY_AE, images, FAST, tmp_path / "c.pt")
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    assert set(ckpt) == {"method", "arch", "model", "optimizer", "config", "train_config", "epoch",
                         "step", "work", "capped", "history"}
    assert ckpt["config"]["widths"] == (4, 8) or ckpt["config"]["widths"] == [4, 8]
    assert ckpt["epoch"] == 1 and not list(tmp_path.glob(".*tmp"))


def test_resume_continues_from_the_saved_epoch(tmp_path, images):
    one = train("ae", TINY_AE, images, FAST, tmp_path / "c.pt")
    three = train("ae", TINY_AE, images, TrainConfig(**{**FAST.__dict__, "epochs": 3}),
                  tmp_path / "c.pt")
    assert [h.epoch for h in three] == [1, 2, 3]
    assert three[0] == one[0]  # epoch 1 was not redone
    assert load_checkpoint(tmp_path / "c.pt")["epoch"] == 3
    again = train("ae", TINY_AE, images, TrainConfig(**{**FAST.__dict__, "epochs": 3}),
                  tmp_path / "c.pt")
    assert again == three  # nothing left to do


def test_budget_stops_early_and_min_steps_extends_small_runs(tmp_path, images):
    stopped = train("ae", TINY_AE, images, TrainConfig(**{**FAST.__dict__, "epochs": 5,
                                                         "max_steps": 1}), tmp_path / "a.pt")
    assert len(stopped) == 1  # stopped inside the first epoch (2 steps of 8 images)
    assert load_checkpoint(tmp_path / "a.pt")["step"] == 1
    extended = train("ae", TINY_AE, images, TrainConfig(**{**FAST.__dict__, "min_steps": 7}),
                     tmp_path / "b.pt")
    # 19 training images: 2 full batches of 8 per epoch (the last 3 are dropped), so 4 epochs
    # reach 7 steps
    assert len(extended) == 4 and load_checkpoint(tmp_path / "b.pt")["step"] == 8


def test_the_work_is_steps_and_the_minutes_only_a_cap(tmp_path, images):
    """``steps`` fixes the work whatever the epochs; a cap that binds ends the run sooner,
    and the checkpoint says so (steps taken below the work planned)."""
    exact = train("ae", TINY_AE, images, TrainConfig(**{**FAST.__dict__, "steps": 5}),
                  tmp_path / "a.pt")
    ckpt = load_checkpoint(tmp_path / "a.pt")
    assert (ckpt["step"], ckpt["work"], len(exact)) == (5, 5, 3)  # 2 steps an epoch
    capped = TrainConfig(**{**FAST.__dict__, "steps": 10**6, "max_minutes": 1e-4})
    train("ae", TINY_AE, images, capped, tmp_path / "b.pt")
    ckpt = load_checkpoint(tmp_path / "b.pt")
    assert ckpt["work"] == 10**6 and 1 <= ckpt["step"] < 10**6 and ckpt["capped"]
    assert not load_checkpoint(tmp_path / "a.pt")["capped"]


def test_the_same_steps_give_the_same_model_on_a_busy_machine(tmp_path, images):
    """The work does not depend on the clock: a CPU-bound thread beside the run changes
    nothing in the weights."""
    import threading

    cfg = TrainConfig(**{**FAST.__dict__, "steps": 6})
    quiet = train("ae", TINY_AE, images, cfg, tmp_path / "quiet.pt")
    stop = threading.Event()

    def burn() -> None:  # element-wise, not BLAS (tests/test_pipeline.py says why)
        x = np.random.default_rng(0).random(1 << 20)
        while not stop.is_set():
            np.sin(x, out=x)
            x += 1.0

    busy = threading.Thread(target=burn)
    busy.start()
    try:
        loaded = train("ae", TINY_AE, images, cfg, tmp_path / "busy.pt")
    finally:
        stop.set()
        busy.join()
    a, b = load_checkpoint(tmp_path / "quiet.pt"), load_checkpoint(tmp_path / "busy.pt")
    assert a["step"] == b["step"] == 6 and len(quiet) == len(loaded)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_invariance_training_never_sees_a_batch_of_one(tmp_path):
    # 18 images: 17 train, batches of 8, 8 and 1; a batch of one image would make the
    # variance terms NaN
    data = ArraySource(np.stack([pattern(i, 16) for i in range(18)]))
    cfg = AEConfig(input_size=16, channels=3, widths=(4, 8), code_dim=6, invariance="vicreg",
                   projector=(16, 16))
    history = train("ae", cfg, data, TrainConfig(**{**FAST.__dict__, "epochs": 2}),
                    tmp_path / "c.pt")
    assert all(np.isfinite(h.train_loss) for h in history)
    codes = LearnedEmbedder.from_file(tmp_path / "c.pt", device="cpu").encode(data.images)
    assert np.isfinite(codes).all()


def test_a_diverging_run_stops_with_a_clear_error(tmp_path, images):
    cfg = TrainConfig(**{**FAST.__dict__, "lr": 1e30, "schedule": "constant"})
    with pytest.raises(TrainingDiverged, match=r"diverged .* Try a lower --lr"):
        train("vae", TINY_VAE, images, cfg, tmp_path / "c.pt")


def test_other_model_checkpoint_is_refused(tmp_path, images):
    train("ae", TINY_AE, images, FAST, tmp_path / "c.pt")
    with pytest.raises(ConfigMismatch, match="another model"):
        train("vae", TINY_VAE, images, FAST, tmp_path / "c.pt")


class Evil:
    """Stands for any class a malicious checkpoint could unpickle."""


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    torch.save({"kind": "ae", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(IndexFileError, match="unreadable"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(IndexFileError, match="unreadable"):
        load_checkpoint(tmp_path / "junk.pt")


def test_model_input_check(tmp_path, images):
    train("ae", TINY_AE, images, FAST, tmp_path / "c.pt")
    emb = LearnedEmbedder.from_file(tmp_path / "c.pt", device="cpu")
    emb.check_input(16, 3)
    with pytest.raises(ConfigMismatch, match="expects 3-channel 16x16 images; this index "
                                             "holds 3-channel 64x64"):
        emb.check_input(64, 3)


def test_split_is_seeded_and_disjoint():
    tr, va = split(100, 0.1, seed=0)
    assert len(va) == 10 and len(tr) == 90 and not set(tr) & set(va)
    assert np.array_equal(split(100, 0.1, 0)[1], va)
    assert len(split(2, 0.05, 0)[1]) == 1


def test_corruptions():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 16, 16)
    g = Corruption("gaussian", 0.1, 16)(x)
    assert g.shape == x.shape and g.min() >= 0 and g.max() <= 1
    assert 0.05 < (g - x).std() < 0.12
    m = Corruption("mask", 0.25, 16)(x)
    zeroed = (m == 0).all(dim=1).float().mean()
    assert 0.2 < zeroed < 0.3 and torch.equal(m[m != 0], x[m != 0])
    e = Corruption("edits", 0, 16)(x)
    assert e.shape == x.shape and e.dtype == x.dtype and not torch.allclose(e, x)
    assert torch.equal(Corruption("none", 0, 16)(x), x)
    with pytest.raises(ValueError):
        Corruption("blur", 0, 16)


@pytest.mark.parametrize("denoise", ["gaussian", "mask", "edits"])
def test_denoising_training_runs(tmp_path, images, denoise):
    cfg = AEConfig(**{**TINY_AE.__dict__, "denoise": denoise, "noise": 0.2})
    assert len(train("ae", cfg, images, FAST, tmp_path / "c.pt")) == 1


def test_grayscale_training(tmp_path):
    data = ArraySource(np.stack([pattern(i, 16)[..., 0] for i in range(10)]))
    cfg = AEConfig(input_size=16, channels=1, widths=(4, 8), code_dim=4, denoise="edits")
    train("ae", cfg, data, FAST, tmp_path / "c.pt")
    assert LearnedEmbedder.from_file(tmp_path / "c.pt").encode(data.images).shape == (10, 4)


def test_images_held_on_the_device_train_the_same_model(tmp_path, images):
    """The GPU path (every image on the training device) is the host path with the copies
    moved; on a CPU it must give the same weights."""
    host = train("ae", TINY_AE, images, TrainConfig(**{**FAST.__dict__, "epochs": 2,
                                                       "data_on_device": "never"}),
                 tmp_path / "host.pt")
    held = train("ae", TINY_AE, images, TrainConfig(**{**FAST.__dict__, "epochs": 2,
                                                       "data_on_device": "always"}),
                 tmp_path / "held.pt")
    assert [h.train_loss for h in held] == pytest.approx([h.train_loss for h in host], rel=1e-5)
    a, b = load_checkpoint(tmp_path / "host.pt"), load_checkpoint(tmp_path / "held.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k])
    with pytest.raises(ConfigMismatch, match="data_on_device"):
        TrainConfig(data_on_device="sometimes")


def test_the_clean_term_adds_the_clean_images_own_reconstruction_error():
    """clean_weight w: the step's loss grows by exactly w times the error of reconstructing
    the clean batch from itself (the same seeded views either way)."""
    from dataclasses import replace

    from imgsearch.augment import Augment, preset_for
    from imgsearch.models.checkpoint import ARCHITECTURES, new_model
    from imgsearch.training import step_loss

    cfg = replace(TINY_AE, invariance="vicreg")
    x = torch.from_numpy(np.stack([pattern(i, 16) for i in range(8)])).permute(0, 3, 1, 2)
    x = x.float() / 255
    torch.manual_seed(0)
    model = new_model(cfg).eval()  # eval: batch norm fixed, so the passes agree
    objective = ARCHITECTURES["ae"].objective
    corrupt = Corruption("none", 0.0, 16, 3, "auto", 0)
    losses = []
    for w in (0.0, 2.0):
        model.cfg = replace(cfg, clean_weight=w)
        views = Augment(preset_for("auto", 16, 3), 16, 3, seed=0)
        torch.manual_seed(1)
        with torch.no_grad():
            losses.append(float(step_loss(model, model, objective, x, corrupt, views)[0]))
    with torch.no_grad():
        own = float(objective(model, x, x)[0].recon)
    assert losses[1] - losses[0] == pytest.approx(2.0 * own, rel=1e-4)


def _batch(n=8):
    x = torch.from_numpy(np.stack([pattern(i, 16) for i in range(n)])).permute(0, 3, 1, 2)
    return x.float() / 255


def test_local_views_add_their_pulls_towards_both_views():
    """Multi-crop: with local views the invariance term is the mean over the views' pair and
    the small crops' pulls, each crop encoded (no reconstruction) and its gradient reaching
    the encoder; without them the loss is the two views' alone."""
    from dataclasses import replace

    from imgsearch.augment import Augment, preset_for
    from imgsearch.models.checkpoint import ARCHITECTURES, new_model
    from imgsearch.training import local_augment, step_loss

    aug = preset_for("auto", 16, 3)
    cfg = replace(TINY_AE, invariance="vicreg", local_views=2)
    local = local_augment(aug, cfg, 0)
    assert local.cfg.crop_scale == (aug.crop_scale[0] / 3, aug.crop_scale[0])
    assert local_augment(aug, replace(cfg, local_views=0), 0) is None
    torch.manual_seed(0)
    model = new_model(cfg)
    objective = ARCHITECTURES["ae"].objective
    corrupt = Corruption("none", 0.0, 16, 3, "auto", 0)
    x = _batch()
    loss, code = step_loss(model, model, objective, x, corrupt, Augment(aug, 16, 3, 0), local)
    assert torch.isfinite(loss) and code.shape == (16, 6)
    loss.backward()
    assert model.encoder.blocks[0][0].weight.grad.abs().sum() > 0
    model.zero_grad()
    model.cfg = replace(cfg, local_views=0)
    plain, _ = step_loss(model, model, objective, x, corrupt, Augment(aug, 16, 3, 0))
    assert float(plain) != pytest.approx(float(loss.detach()))


@pytest.mark.parametrize("invariance, locals_", [("byol", 0), ("byol", 1), ("vicreg", 1)])
def test_byol_and_multicrop_train_and_resume(tmp_path, images, invariance, locals_):
    """byol trains with its moving-average target saved in the checkpoint and taken up again
    by a resumed run; every invariance term runs with local views."""
    from dataclasses import replace

    cfg = replace(TINY_AE, invariance=invariance, local_views=locals_)
    history = train("ae", cfg, images, FAST, tmp_path / "c.pt")
    assert np.isfinite(history[-1].train_loss)
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert ("target" in ckpt) == (invariance == "byol")
    if invariance == "byol":
        moved = any(not torch.equal(ckpt["target"][k], ckpt["model"][k])
                    for k in ckpt["target"] if ckpt["target"][k].is_floating_point())
        assert moved  # the target lags the online weights
        again = train("ae", cfg, images, TrainConfig(**{**FAST.__dict__, "epochs": 2}),
                      tmp_path / "c.pt")
        assert [h.epoch for h in again] == [1, 2]
        assert not torch.equal(load_checkpoint(tmp_path / "c.pt")["target"]["to_code.weight"],
                               ckpt["target"]["to_code.weight"])


@pytest.mark.parametrize("arch", ["ae", "vae", "aae"])
def test_byols_target_holds_only_what_encodes_and_projects(arch):
    """The target network keeps the encoder, the code layer and the projector, not the
    decoder (nor the discriminator, nor the predictor); at momentum 0 it becomes the online
    model's encoder and projector exactly, and a full model's saved state still loads."""
    from dataclasses import replace

    from imgsearch.models.aae import AAEConfig
    from imgsearch.models.checkpoint import new_model
    from imgsearch.models.invariance import ema_update
    from imgsearch.training import target_of

    base = {"ae": TINY_AE, "vae": TINY_VAE,
            "aae": AAEConfig(input_size=16, channels=3, widths=(4, 8), code_dim=6)}[arch]
    torch.manual_seed(0)
    model = new_model(replace(base, invariance="byol", decoder_refine=1))
    target = target_of(model)
    names = {n for n, _ in target.named_parameters()}
    assert names and not any(n.startswith(("decoder.", "from_", "discriminator.",
                                           "projector.predictor.")) for n in names)
    assert names < {n for n, _ in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema_update(target, model, 0.0)
    x = torch.rand(4, 3, 16, 16)
    model.eval(), target.eval()
    torch.testing.assert_close(target.projector(target.encode(x)[0]),
                               model.projector(model.encode(x)[0]))
    again = target_of(model, model.state_dict())  # the whole model's state, as before
    torch.testing.assert_close(again.encode(x)[0], model.encode(x)[0])


def test_without_view_reconstruction_the_views_are_only_encoded():
    """view_reconstruction off: the loss is the clean image's own objective (weighted) plus
    the invariance term between the views' codes, nothing reconstructed from a view."""
    from dataclasses import replace

    from imgsearch.augment import Augment, preset_for
    from imgsearch.models.checkpoint import ARCHITECTURES, new_model
    from imgsearch.models.invariance import invariance_loss
    from imgsearch.training import step_loss

    cfg = replace(TINY_AE, invariance="vicreg", clean_weight=2.0, view_reconstruction=False)
    x = _batch()
    torch.manual_seed(0)
    model = new_model(cfg).eval()
    objective = ARCHITECTURES["ae"].objective
    corrupt = Corruption("none", 0.0, 16, 3, "auto", 0)
    aug = preset_for("auto", 16, 3)
    with torch.no_grad():
        loss = float(step_loss(model, model, objective, x, corrupt, Augment(aug, 16, 3, 0))[0])
        views = Augment(aug, 16, 3, 0)
        both = torch.cat([views(x), views(x)])
        z1, z2 = model.projector(model.encode(both)[0]).chunk(2)
        want = (float(invariance_loss("vicreg", z1, z2, cfg.temperature))
                + 2.0 * float(objective(model, x, x)[0].total))
    assert loss == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="clean_weight"):
        replace(cfg, clean_weight=0.0)
