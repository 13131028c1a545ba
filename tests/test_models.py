"""Tiny models on CPU: shapes, unpooling at the switches, loss terms against their definitions."""

import math

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
