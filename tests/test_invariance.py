"""The invariance losses: known answers on tiny tensors, and minimal where they should be."""

import math

import numpy as np
import pytest
import torch

from imgsearch.models.autoencoder import AEConfig
from imgsearch.models.invariance import (
    InvarianceConfig,
    Projector,
    byol_loss,
    byol_views_loss,
    ema_momentum,
    ema_update,
    head,
    info_nce,
    invariance_loss,
    koleo,
    vicreg_loss,
    views_loss,
)

Z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -2.0]])
Z2 = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, -1.0]])


def test_vicreg_known_answer():
    # invariance: mean over all 6 entries of the squared differences: (0+1+0+1+0+1)/6
    # variance of Z1 per dim (unbiased): x: [1,0,-1] -> 1; y: [0,2,-2] -> 4  => std 1, 2
    #   hinge max(0, 1 - sqrt(var + eps)): ~0 for both. Z2: x var 1, y [1,1,-1] -> 4/3 => 0.
    # covariance of Z1: x and y centred: [1,0,-1], [0,2,-2]: cov = (0 + 0 + 2) / 2 = 1
    #   c(Z1) = (1^2 + 1^2) / d = 1;  Z2: y centred [2/3, 2/3, -4/3]: cov = (2/3 + 0 + 4/3)/2 = 1
    eps = 1e-4
    want_inv = 0.5
    want_var = sum(max(0.0, 1 - math.sqrt(v + eps)) for v in (1.0, 4.0, 1.0, 4 / 3))
    want_cov = 1.0 + 1.0
    loss = vicreg_loss(Z1, Z2, eps=eps)
    assert loss.invariance.item() == pytest.approx(want_inv)
    assert loss.variance.item() == pytest.approx(want_var / 2, abs=1e-6)  # mean over d = 2
    assert loss.covariance.item() == pytest.approx(want_cov)
    assert loss.total.item() == pytest.approx(25 * want_inv + 25 * want_var / 2 + want_cov)


def test_vicreg_is_smallest_for_identical_decorrelated_spread_codes():
    torch.manual_seed(0)
    z = torch.randn(512, 8)
    z = (z - z.mean(0)) @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T  # white
    best = vicreg_loss(z, z)
    assert best.invariance == 0 and best.variance < 1e-3 and best.covariance < 1e-6
    assert vicreg_loss(z, z + 0.1 * torch.randn_like(z)).total > best.total  # views apart
    mixed = z @ torch.tensor(np.eye(8) + 0.5, dtype=torch.float32)  # correlated dims
    assert vicreg_loss(mixed, mixed).covariance > best.covariance
    collapsed = torch.zeros_like(z) + 0.01 * torch.randn_like(z)  # nearly one point
    assert vicreg_loss(collapsed, collapsed).variance > 0.9 * 2  # both hinges near 1


def test_info_nce_known_answer():
    # two images, orthogonal unit codes, views identical: every anchor's positive has
    # similarity 1, its two negatives 0 => loss = -log(e^(1/t) / (e^(1/t) + 2))
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    want = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert info_nce(z, z, t).item() == pytest.approx(want, rel=1e-6)
    # codes are normalised first: scale does not matter
    assert info_nce(3 * z, 5 * z, t).item() == pytest.approx(want, rel=1e-6)


def test_info_nce_is_smallest_for_identical_views_of_separated_codes():
    torch.manual_seed(1)
    z = torch.nn.functional.normalize(torch.randn(64, 32), dim=1)
    same = info_nce(z, z, 0.1)
    assert info_nce(z, torch.nn.functional.normalize(z + 0.3 * torch.randn_like(z)), 0.1) > same
    assert info_nce(z, z.roll(1, 0), 0.1) > same  # views matched to the wrong image
    collapsed = torch.ones(64, 32)
    assert info_nce(collapsed, collapsed, 0.1) > same  # one point: chance, log(2N - 1)
    assert info_nce(collapsed, collapsed, 0.1).item() == pytest.approx(math.log(127), rel=1e-5)


def test_koleo_known_answer_and_spread():
    # three unit vectors at 0, 90 and 180 degrees: nearest distances sqrt(2), sqrt(2), sqrt(2)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert koleo(z).item() == pytest.approx(-math.log(math.sqrt(2)), rel=1e-6)
    bunched = torch.tensor([[1.0, 0.0], [1.0, 0.01], [1.0, -0.01]])
    assert koleo(bunched) > koleo(z)


def test_projector_shapes():
    head = Projector(6, (16, 4))
    assert head(torch.randn(5, 6)).shape == (5, 4)
    assert isinstance(head.net[-1], torch.nn.Linear)  # no normalisation on the output


def test_byol_known_answer_and_scale_free():
    q = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    t = torch.tensor([[2.0, 0.0], [0.0, -1.0]])  # the same direction, then the opposite one
    assert byol_loss(q, t).item() == pytest.approx((0.0 + 4.0) / 2)
    assert byol_loss(q * 5, t * 0.1).item() == pytest.approx(2.0)  # only directions count
    t.requires_grad_(True)
    byol_loss(q.requires_grad_(True), t).backward()
    assert t.grad is None  # the target is a constant: stop-gradient


def test_ema_momentum_rises_from_its_base_to_one():
    assert ema_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert ema_momentum(0.99, 50, 100) == pytest.approx(0.995)
    assert ema_momentum(0.99, 100, 100) == pytest.approx(1.0)


def test_ema_update_moves_the_target_part_way_and_copies_buffers():
    torch.manual_seed(0)
    online, target = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        online.weight.fill_(3.0)
        target.weight.fill_(1.0)
    online(torch.randn(16, 3))  # running statistics of its own
    ema_update(target, online, 0.75)
    torch.testing.assert_close(target.weight, torch.full((3,), 1.5))  # 0.75 * 1 + 0.25 * 3
    torch.testing.assert_close(target.running_mean, online.running_mean)


def test_byol_projector_has_a_predictor_and_settings_are_checked():
    head = Projector(6, (16, 8), predict=True)
    assert head.predict(head(torch.randn(4, 6))).shape == (4, 8)
    assert Projector(6, (16, 8)).predictor is None
    with pytest.raises(ValueError):
        InvarianceConfig(invariance="byol", ema=1.0)
    with pytest.raises(ValueError):
        InvarianceConfig(local_views=-1)


def test_views_loss_weighs_each_small_crop_as_the_views_pair():
    pair = invariance_loss("vicreg", Z1, Z2, 0.1)
    assert views_loss("vicreg", Z1, Z2, [], 0.1) == pair
    crop_pulls = (invariance_loss("vicreg", Z1, Z1, 0.1)
                  + invariance_loss("vicreg", Z1, Z2, 0.1)) / 2
    want = (pair + 1 * crop_pulls) / 2  # one crop, pulled towards both views
    assert views_loss("vicreg", Z1, Z2, [Z1], 0.1).item() == pytest.approx(want.item())


def test_byol_views_loss_pulls_each_view_towards_the_others_target():
    t1, t2 = Z1, -Z1  # each prediction equal to its own view's target: opposite to the other's
    assert byol_views_loss(Z1, -Z1, [], t1, t2).item() == pytest.approx(4.0)
    assert byol_views_loss(-Z1, Z1, [], t1, t2).item() == pytest.approx(0.0, abs=1e-6)
    # a small crop agreeing with one view and opposite to the other: pulls 0 and 4
    assert byol_views_loss(-Z1, Z1, [Z1], t1, t2).item() == pytest.approx((0 + 0 + 0 + 4) / 4)


def test_a_split_code_leaves_its_free_part_out_of_the_invariance_term():
    proj = head(InvarianceConfig(invariance="vicreg", projector=(16, 8), invariant_dims=4), 6)
    assert proj.sees == 4 and proj.net[0].in_features == 4
    code = torch.randn(5, 6, requires_grad=True)
    z = proj(code)
    z.sum().backward()
    assert code.grad[:, :4].abs().sum() > 0
    assert torch.equal(code.grad[:, 4:], torch.zeros(5, 2))  # the free part gets no gradient
    assert head(InvarianceConfig(invariance="vicreg"), 6).sees == 6  # 0: the whole code
    with pytest.raises(ValueError, match="invariant_dims 7 is more than the code's 6"):
        AEConfig(invariance="vicreg", code_dim=6, invariant_dims=7)  # refused with its config
    with pytest.raises(ValueError):
        InvarianceConfig(invariant_dims=-1)
