"""Tiny models on CPU: shapes, unpooling at the switches, loss terms against their definitions."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imgsearch.models.autoencoder import (
    AEConfig,
    ConvAutoencoder,
    ae_loss,
    contractive_penalty,
    kl_sparsity,
    l1_sparsity,
)
from imgsearch.models.blocks import fixed_switches
from imgsearch.models.vae import ConvVAE, VAEConfig, kl_divergence, vae_loss

from .conftest import pattern

TINY = {"input_size": 16, "channels": 3, "widths": (4, 8), "code_dim": 6}


def batch(b=5, size=16, channels=3, seed=0):
    return torch.rand(b, channels, size, size, generator=torch.Generator().manual_seed(seed))


def photos(b=8, size=16):
    """A fixed batch of smooth generated images (learnable, unlike uniform noise)."""
    return torch.stack([torch.from_numpy(pattern(i, size)).permute(2, 0, 1).float() / 255
                        for i in range(b)])


@pytest.mark.parametrize("unpool", ["switches", "fixed"])
def test_autoencoder_shapes(unpool):
    model = ConvAutoencoder(AEConfig(**TINY, unpool=unpool))
    x = batch()
    code, switches = model.encode(x)
    assert code.shape == (5, 6)
    assert [s[0].shape for s in switches] == [(5, 4, 8, 8), (5, 8, 4, 4)]
    recon, _code2 = model(x)
    assert recon.shape == x.shape and torch.all((recon >= 0) & (recon <= 1))


def test_odd_input_sizes_round_trip():
    model = ConvAutoencoder(AEConfig(input_size=28, channels=1, widths=(4, 8, 8), code_dim=5))
    assert model(batch(2, 28, 1))[0].shape == (2, 1, 28, 28)
    vae = ConvVAE(VAEConfig(input_size=28, channels=1, widths=(4, 8, 8), code_dim=5))
    assert vae(batch(2, 28, 1))[0].shape == (2, 1, 28, 28)


def test_unpooling_puts_values_at_the_encoders_argmax():
    model = ConvAutoencoder(AEConfig(**TINY, unpool="switches")).eval()
    x = batch(2)
    first_block = model.encoder.blocks[0](x)  # (2, 4, 16, 16) before pooling
    pooled, idx = model.encoder.pool(first_block)
    _code, switches = model.encode(x)
    assert torch.equal(switches[0][0], idx)
    up = model.decoder.unpool(pooled, switches[0][0], output_size=(16, 16))
    nonzero = up.flatten(2) != 0
    argmax = torch.zeros_like(nonzero).scatter_(2, idx.flatten(2), True)
    assert torch.equal(nonzero & argmax, nonzero)  # every unpooled value sits at an argmax
    assert torch.allclose(up.flatten(2).gather(2, idx.flatten(2)), pooled.flatten(2))


def test_switches_change_the_decoding_only_in_the_switches_variant():
    x = batch(2)
    for unpool, differs in (("switches", True), ("fixed", False)):
        model = ConvAutoencoder(AEConfig(**TINY, unpool=unpool)).eval()
        code, switches = model.encode(x)
        other = [(torch.zeros_like(i), s) for i, s in switches]  # all to position 0
        changed = not torch.allclose(model.decode(code, switches), model.decode(code, other))
        assert changed == differs


def test_fixed_switches_are_top_left_corners():
    idx = fixed_switches(torch.zeros(1, 1, 2, 3), (4, 6))
    assert idx[0, 0].tolist() == [[0, 2, 4], [12, 14, 16]]


def test_vae_shapes_and_mu_is_deterministic():
    model = ConvVAE(VAEConfig(**TINY)).eval()
    x = batch()
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 6)
    recon, mu2, _ = model(x)
    assert recon.shape == x.shape and torch.equal(mu, mu2)
    assert model.decode(torch.randn(3, 6)).shape == (3, 3, 16, 16)  # from the prior, no switches


def test_reparameterize_is_mu_plus_sigma_eps():
    mu, logvar = torch.tensor([[1.0, -2.0]]), torch.log(torch.tensor([[4.0, 0.25]]))
    torch.manual_seed(3)
    z = ConvVAE.reparameterize(mu, logvar)
    torch.manual_seed(3)
    eps = torch.randn_like(mu)
    assert torch.allclose(z, mu + torch.tensor([[2.0, 0.5]]) * eps)


def test_kl_matches_hand_computed_value():
    # one sample, two dims: mu = (1, 0), sigma^2 = (1, e)
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # KL = 1/2 sum(sigma^2 + mu^2 - 1 - log sigma^2) = 1/2 [(1 + 1 - 1 - 0) + (e + 0 - 1 - 1)]
    want = 0.5 * (1 + (math.e - 2))
    assert kl_divergence(mu, logvar).item() == pytest.approx(want, rel=1e-6)
    assert kl_divergence(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0.0


def test_vae_loss_is_bce_plus_beta_kl():
    recon, target = torch.full((2, 1, 2, 2), 0.25), torch.ones(2, 1, 2, 2)
    mu, logvar = torch.tensor([[1.0, 0.0]] * 2), torch.tensor([[0.0, 1.0]] * 2)
    loss = vae_loss(recon, target, mu, logvar, beta=4.0)
    bce = -4 * math.log(0.25)  # four pixels per image, target 1
    assert loss.recon.item() == pytest.approx(bce, rel=1e-5)
    assert loss.total.item() == pytest.approx(bce + 4.0 * 0.5 * (math.e - 1), rel=1e-5)


def test_sparsity_terms_match_their_definitions():
    code = torch.tensor([[0.0, 2.0], [-1.0, 0.0]])
    assert l1_sparsity(code).item() == pytest.approx(0.75)
    rho = 0.1
    rho_hat = torch.sigmoid(code).mean(0)
    want = sum(rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r))
               for r in rho_hat.tolist())
    assert kl_sparsity(code, rho).item() == pytest.approx(want, rel=1e-5)
    assert kl_sparsity(torch.full((3, 4), math.log(rho / (1 - rho))), rho).item() == \
        pytest.approx(0.0, abs=1e-5)  # mean activation exactly rho: no penalty


def test_contractive_penalty_estimates_the_jacobian_frobenius_norm():
    torch.manual_seed(0)
    model = ConvAutoencoder(AEConfig(**TINY)).eval()
    x = batch(2)
    exact = sum(torch.autograd.functional.jacobian(lambda v: model.encode(v)[0], x[i:i + 1])
                .pow(2).sum() for i in range(2)) / 2
    estimate = contractive_penalty(model, x, n_proj=3000)
    assert estimate.item() == pytest.approx(exact.item(), rel=0.05)


@pytest.mark.parametrize("settings", [
    {}, {"unpool": "switches"}, {"sparse": "l1", "sparse_weight": 0.1},
    {"sparse": "kl", "sparse_weight": 0.1}, {"contractive_weight": 0.01}, {"dropout": 0.1},
    {"decoder_refine": 2}, {"encoder_refine": 1},
])
def test_autoencoder_loss_falls_on_a_fixed_batch(settings):
    torch.manual_seed(0)
    model = ConvAutoencoder(AEConfig(**TINY, **settings))
    x = photos()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = ae_loss(model, x, x)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        losses.append(loss.total.item())
    assert losses[-1] < 0.7 * losses[0]
    if settings.get("sparse"):
        assert loss.sparse.item() > 0
    if settings.get("contractive_weight"):
        assert loss.contractive.item() > 0


def test_vae_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = ConvVAE(VAEConfig(**TINY, beta=0.5))
    x = photos()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        recon, mu, logvar = model(x)
        loss = vae_loss(recon, x, mu, logvar, 0.5)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        first = first or loss.total.item()
    assert loss.total.item() < 0.9 * first


def test_config_rejects_bad_settings_and_accepts_json_lists():
    with pytest.raises(ValueError):
        AEConfig(unpool="nearest")
    with pytest.raises(ValueError):
        AEConfig(input_size=8, widths=(4, 4, 4, 4))
    assert AEConfig(widths=[4, 8]).widths == (4, 8)


def test_denoising_loss_reconstructs_the_clean_target():
    torch.manual_seed(0)
    model = ConvAutoencoder(AEConfig(**TINY)).eval()
    clean = photos(4)
    corrupted = (clean + 0.3 * torch.randn_like(clean)).clamp(0, 1)
    loss = ae_loss(model, corrupted, clean)
    recon, _ = model(corrupted)  # the model sees the corrupted input ...
    assert loss.recon.item() == pytest.approx(((recon - clean) ** 2).mean().item(), rel=1e-6)
    assert loss.recon.item() != pytest.approx(((recon - corrupted) ** 2).mean().item(), rel=1e-3)


def test_dropout_is_active_only_while_training():
    model = ConvAutoencoder(AEConfig(**TINY, dropout=0.5))
    x = photos(2)
    model.train()
    assert not torch.equal(model.encode(x)[0], model.encode(x)[0])
    model.eval()
    assert torch.equal(model.encode(x)[0], model.encode(x)[0])


def test_every_architecture_has_an_objective_that_returns_its_search_code():
    from imgsearch.models.checkpoint import ARCHITECTURES, new_model

    torch.manual_seed(0)
    x = batch()
    for name, arch in ARCHITECTURES.items():
        cfg = arch.config(**{**TINY, "sparse": "l1", "sparse_weight": 1.0} if name == "ae"
                          else TINY)
        model = new_model(cfg).eval()
        losses, code = arch.objective(model, x, x)
        torch.testing.assert_close(code, model.encode(x)[0])  # AE: the code; VAE: mu
        valid, _ = arch.objective(model, x, x, train=False)
        assert valid.total.ndim == 0 and losses.total.ndim == 0
        if name == "ae":  # validation: reconstruction error alone, no regularizer
            recon, _ = model(x)
            torch.testing.assert_close(valid.total, F.mse_loss(recon, x))
            assert losses.total > valid.total


# -- the rest of the family: tied weights, beta-TCVAE, the adversarial autoencoder --------
def test_tied_weights_are_shared_not_copied():
    from imgsearch.models.blocks import TiedDeconv

    untied = ConvAutoencoder(AEConfig(**TINY))
    tied = ConvAutoencoder(AEConfig(**TINY, tied=True, tied_convs=True))
    # the decoder's linear layer is to_code's weight, transposed; its deconvolutions are the
    # encoder's kernels: no parameter of their own but the biases
    deconvs = [b[0] for b in tied.decoder.blocks]
    assert all(isinstance(d, TiedDeconv) for d in deconvs)
    assert deconvs[0].conv.weight is tied.encoder.blocks[1][0].weight
    assert deconvs[1].conv.weight is tied.encoder.blocks[0][0].weight
    saved = sum(p.numel() for p in untied.from_code.parameters()) + sum(
        b[0].weight.numel() for b in untied.decoder.blocks) - tied.from_code_bias.numel()
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(untied) - n(tied) == saved - sum(
        b[0].bias.numel() for b in untied.decoder.blocks if b[0].bias is not None) + sum(
        d.bias.numel() for d in deconvs if d.bias is not None)
    # decoding alone puts gradient into the encoder's weights: they are the decoder's too
    code = torch.randn(2, 6)
    tied.decode(code).sum().backward()
    assert tied.to_code.weight.grad.abs().sum() > 0
    assert tied.encoder.blocks[0][0].weight.grad.abs().sum() > 0
    # an update of the encoder changes the decoder: the same tensors
    with torch.no_grad():
        before = tied.decode(code)
        tied.to_code.weight.mul_(2)
        assert not torch.allclose(tied.decode(code), before)
    state = tied.state_dict()  # saved once, under the encoder's names
    assert not any(k.startswith("decoder.") and k.endswith("conv.weight") for k in state)
    again = ConvAutoencoder(AEConfig(**TINY, tied=True, tied_convs=True))
    again.load_state_dict(state)
    torch.testing.assert_close(again.decode(code), tied.decode(code))


def test_tc_decomposition_matches_a_direct_computation():
    from imgsearch.models.vae import tc_decomposition

    torch.manual_seed(0)
    m, d, n = 5, 3, 100
    mu, logvar = torch.randn(m, d), torch.randn(m, d) * 0.5
    z = mu + torch.exp(0.5 * logvar) * torch.randn(m, d)

    def log_n(x, mean, lv):  # one scalar density, written out
        return -0.5 * (math.log(2 * math.pi) + lv + (x - mean) ** 2 / math.exp(lv))

    mi = tc = dim = 0.0
    for i in range(m):
        log_qzx = sum(log_n(z[i, j], mu[i, j], logvar[i, j]) for j in range(d))
        per_k = [sum(log_n(z[i, j], mu[k, j], logvar[k, j]) for j in range(d)) for k in range(m)]
        log_qz = math.log(sum(math.exp(v) for v in per_k)) - math.log(n * m)
        log_prod = sum(math.log(sum(math.exp(log_n(z[i, j], mu[k, j], logvar[k, j]))
                                    for k in range(m))) - math.log(n * m) for j in range(d))
        log_pz = sum(log_n(z[i, j], 0.0, 0.0) for j in range(d))
        mi += (log_qzx - log_qz) / m
        tc += (log_qz - log_prod) / m
        dim += (log_prod - log_pz) / m
    got = tc_decomposition(z, mu, logvar, n)
    for g, want in zip(got, (mi, tc, dim)):
        assert g.item() == pytest.approx(float(want), rel=1e-5, abs=1e-5)


def test_tc_terms_add_up_to_the_closed_form_kl_in_expectation():
    from imgsearch.models.vae import tc_decomposition

    torch.manual_seed(1)
    mu, logvar = torch.randn(8, 4), torch.randn(8, 4) * 0.3
    sums = []
    for _ in range(4000):  # the sum is a one-sample estimate of E_q[log q(z|x) - log p(z)]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        sums.append(sum(t.item() for t in tc_decomposition(z, mu, logvar, 1000)))
    sums = np.array(sums)
    stderr = sums.std() / math.sqrt(len(sums))
    assert abs(sums.mean() - kl_divergence(mu, logvar).item()) < 4 * stderr


def test_tcvae_objective_weights_its_three_terms():
    from imgsearch.models.vae import objective

    torch.manual_seed(2)
    x = batch()
    cfg = VAEConfig(**TINY, kl="tc", alpha=0.5, beta=3.0, gamma=2.0)
    model = ConvVAE(cfg)
    model.dataset_size = 40
    torch.manual_seed(3)
    losses, mu = objective(model, x, x)
    assert losses.total.item() == pytest.approx(
        (losses.recon + 0.5 * losses.mi + 3.0 * losses.tc + 2.0 * losses.dim_kl).item(), rel=1e-6)
    torch.testing.assert_close(mu, model.encode(x)[0])
    with pytest.raises(ValueError, match="kl must be one of"):
        VAEConfig(**TINY, kl="mmd")


def test_aae_losses_known_answers_and_shapes():
    from imgsearch.models.aae import (
        AAEConfig,
        AdversarialAutoencoder,
        discriminator_loss,
        generator_loss,
        objective,
    )

    zero = torch.zeros(4)
    assert generator_loss(zero).item() == pytest.approx(math.log(2))  # D(z) = 1/2
    assert discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    sure = torch.full((4,), 20.0)
    assert discriminator_loss(sure, -sure).item() < 1e-6  # tells them apart: no loss
    model = AdversarialAutoencoder(AAEConfig(**TINY, disc_widths=(16,)))
    x = batch()
    recon, z = model(x)
    assert recon.shape == x.shape and z.shape == (5, 6)
    assert model.decode(torch.randn(3, 6)).shape == (3, 3, 16, 16)  # from the prior alone
    losses, _ = objective(model, x, x)
    assert losses.total.item() == pytest.approx(
        (losses.recon + 0.01 * losses.adversarial).item(), rel=1e-6)


def test_aae_training_alternates_and_its_checkpoint_holds_the_discriminator(tmp_path):
    from imgsearch.config import TrainConfig
    from imgsearch.models.aae import AAEConfig
    from imgsearch.models.checkpoint import load_checkpoint, model_from_checkpoint
    from imgsearch.training import ArraySource, train

    data = ArraySource(np.stack([pattern(i, 16) for i in range(24)]))
    cfg = AAEConfig(**TINY, disc_widths=(16,), adversarial_weight=0.1)
    fast = TrainConfig(epochs=2, min_steps=0, batch_size=8, max_minutes=0, device="cpu")
    history = train("aae", cfg, data, fast, tmp_path / "c.pt")
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert any(k.startswith("discriminator.") for k in ckpt["model"])
    assert ckpt["optimizer_d"]["state"]  # the discriminator was stepped
    assert all(np.isfinite(h.train_loss) for h in history)
    again = train("aae", cfg, data, TrainConfig(**{**fast.__dict__, "epochs": 3}),
                  tmp_path / "c.pt")
    assert [h.epoch for h in again] == [1, 2, 3] and again[:2] == history  # resumed
    model = model_from_checkpoint(load_checkpoint(tmp_path / "c.pt"))
    assert model.decode(torch.randn(2, 6)).shape == (2, 3, 16, 16)


def test_a_refined_decoder_adds_residual_convolutions_and_keeps_the_shapes():
    plain, refined = ConvAutoencoder(AEConfig(**TINY)), ConvAutoencoder(
        AEConfig(**TINY, decoder_refine=2))
    x = batch()
    assert refined(x)[0].shape == plain(x)[0].shape == x.shape
    assert refined(x)[1].shape == (5, 6)
    extra = sum(p.numel() for p in refined.decoder.parameters()) - sum(
        p.numel() for p in plain.decoder.parameters())
    # two residual 3x3 convolutions (no bias) and their batch norms per block, widths 8 and 4
    assert extra == sum(2 * (w * w * 9 + 2 * w) for w in (8, 4))
    assert sum(p.numel() for p in refined.encoder.parameters()) == sum(
        p.numel() for p in plain.encoder.parameters())  # the search code's encoder unchanged
    with pytest.raises(ValueError):
        AEConfig(**TINY, decoder_refine=-1)


def test_a_deeper_encoder_adds_residual_convolutions_before_each_pooling():
    plain, deep = ConvAutoencoder(AEConfig(**TINY)), ConvAutoencoder(
        AEConfig(**TINY, encoder_refine=2))
    x = batch()
    code, switches = deep.encode(x)
    assert code.shape == (5, 6) and deep(x)[0].shape == x.shape
    assert [s[1] for s in switches] == [s[1] for s in plain.encode(x)[1]]  # same poolings
    extra = sum(p.numel() for p in deep.encoder.parameters()) - sum(
        p.numel() for p in plain.encoder.parameters())
    # two residual 3x3 convolutions (no bias) and their batch norms per block, widths 4 and 8
    assert extra == sum(2 * (w * w * 9 + 2 * w) for w in (4, 8))
    assert sum(p.numel() for p in deep.decoder.parameters()) == sum(
        p.numel() for p in plain.decoder.parameters())
    assert ConvVAE(VAEConfig(**TINY, encoder_refine=1)).encode(x)[0].shape == (5, 6)
    for bad in ({"encoder_refine": -1}, {"widths": ()}, {"widths": (4, 0)}):
        with pytest.raises(ValueError):
            AEConfig(**{**TINY, **bad})


def test_the_linear_shortcut_adds_a_map_of_the_code_to_the_logits():
    """decoder_linear: sigmoid(deconvolutions + W code + b). With W = 0 and b = 0 it draws
    what the model without it draws from the same weights; a bias moves every logit by it."""
    torch.manual_seed(0)
    plain = ConvAutoencoder(AEConfig(**TINY)).eval()
    short = ConvAutoencoder(AEConfig(**TINY, decoder_linear=True)).eval()
    missing = short.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["shortcut.bias", "shortcut.weight"]
    code = torch.randn(3, 6)
    with torch.no_grad():
        short.shortcut.weight.zero_()
        short.shortcut.bias.zero_()
        torch.testing.assert_close(short.decode(code), plain.decode(code))
        short.shortcut.bias.fill_(1.5)
        logit = torch.logit(plain.decode(code).double(), eps=1e-12)
        torch.testing.assert_close(short.decode(code).double(),
                                   torch.sigmoid(logit + 1.5), atol=1e-5, rtol=1e-4)
