"""Invariance terms: the codes of two edited views of one image are pulled together, by a loss
that cannot collapse to a constant code. Pure functions over (B, D) code batches, each citing
its source; ``Projector`` is the small head (an "expander" in VICReg) the loss sees the codes
through, so that the search code itself keeps what reconstruction needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

INVARIANCES = ("none", "vicreg", "infonce", "byol")


@dataclass(frozen=True)
class InvarianceConfig:
    """The invariance settings every architecture's config inherits. With ``invariance`` on,
    training sees two random views of each image (augment.py), reconstructs the clean image
    from each, and adds ``invariance_weight`` times the chosen loss between the projected codes
    of the two views, and ``koleo_weight`` times the KoLeo term of the codes; and
    ``clean_weight`` times the error of reconstructing the clean image from itself, the
    autoencoder proper (Hinton and Salakhutdinov 2006), beside the views' reconstructions of
    it (as a denoising autoencoder's, Vincent et al. 2008), which a crop or a paste cannot
    make sharp. With ``view_reconstruction`` off the views are only encoded (for the
    invariance term) and the clean image alone is reconstructed, from itself: an autoencoder
    with the invariance term as its regulariser.

    ``local_views`` small crops of each image are encoded beside the two views and pulled
    towards both (multi-crop, Caron et al. 2020); ``byol`` pulls each view's predicted
    projection towards the other view's projection by a slowly moving average of the model
    (``ema``) instead of a loss over the batch (Grill et al. 2020).

    ``invariant_dims`` (0: the whole code) lets the head see only the code's first dimensions,
    so the rest is free of the invariance term and holds what reconstruction alone asks for:
    a code split into an invariant part and a free one (as the shared and exclusive parts of
    Gonzalez-Garcia et al., "Image-to-image translation for cross-domain disentanglement",
    NeurIPS 2018)."""

    invariance: str = "none"  # none | vicreg | infonce | byol
    invariance_weight: float = 1.0
    koleo_weight: float = 0.0
    clean_weight: float = 0.0
    view_reconstruction: bool = True  # each view reconstructs the clean image
    projector: tuple[int, ...] = (1024, 1024)  # hidden and output widths of the head
    temperature: float = 0.1  # infonce
    local_views: int = 0  # small crops per image beside the two views (0: none)
    ema: float = 0.99  # byol: the target's first momentum, raised to 1 along a cosine
    invariant_dims: int = 0  # the code's first dimensions the head sees (0: all of them)

    def __post_init__(self) -> None:
        object.__setattr__(self, "projector", tuple(self.projector))  # JSON gives lists
        if self.invariance not in INVARIANCES:
            raise ValueError(f"invariance must be one of {INVARIANCES}, "
                             f"got {self.invariance!r}")
        if (self.invariance_weight < 0 or self.koleo_weight < 0 or self.clean_weight < 0
                or self.temperature <= 0 or self.local_views < 0 or not 0 <= self.ema < 1
                or self.invariant_dims < 0):
            raise ValueError("invariance and KoLeo weights, local views and invariant_dims "
                             "must be 0 or more, temperature positive, ema in [0, 1)")
        if not self.view_reconstruction and self.invariance != "none" and not self.clean_weight:
            raise ValueError("without view_reconstruction, clean_weight must be positive: "
                             "nothing would be reconstructed")
        if not self.projector:
            raise ValueError("the projector needs at least one layer")


def _mlp(ins: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip((ins, *widths[:-1]), widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 1:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Projector(nn.Module):
    """Linear -> BatchNorm -> ReLU per hidden layer, then a last Linear (VICReg's expander,
    SimCLR's projection head); with ``predict``, BYOL's predictor after it, an MLP of the
    same shape from the projection to the projection's width."""

    def __init__(self, code_dim: int, widths: tuple[int, ...], predict: bool = False,
                 sees: int = 0):
        super().__init__()
        self.sees = sees or code_dim  # the code's first dimensions the head reads (0: all)
        self.net = _mlp(self.sees, widths)
        self.predictor = _mlp(widths[-1], (widths[0], widths[-1])) if predict else None

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code[:, :self.sees])  # (B, D) -> (B, widths[-1])

    def predict(self, projected: torch.Tensor) -> torch.Tensor:
        return self.predictor(projected)  # (B, widths[-1])


def head(cfg: InvarianceConfig, code_dim: int) -> Projector | None:
    """The invariance term's head of a model with these settings (None without the term)."""
    if cfg.invariance == "none":
        return None
    return Projector(code_dim, cfg.projector, predict=cfg.invariance == "byol",
                     sees=cfg.invariant_dims)


class VICRegLoss(NamedTuple):
    total: torch.Tensor
    invariance: torch.Tensor
    variance: torch.Tensor
    covariance: torch.Tensor


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0,
                var_weight: float = 25.0, cov_weight: float = 1.0, eps: float = 1e-4
                ) -> VICRegLoss:
    """VICReg: Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization
    for Self-Supervised Learning", ICLR 2022, eq. (1)-(6):

        s(Z, Z') = mean_i ||z_i - z'_i||^2 / d                      (invariance)
        v(Z)     = 1/d sum_j max(0, 1 - sqrt(Var(z^j) + eps))       (variance, per dimension)
        c(Z)     = 1/d sum_{i != j} Cov(Z)_{ij}^2                    (covariance)
        loss     = lambda s + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]

    with lambda = mu = 25, nu = 1 as in the paper. The variance and covariance terms are what
    keep the codes from collapsing to one point."""
    z1, z2 = z1.float(), z2.float()
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)

    def variance(z: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - torch.sqrt(z.var(dim=0) + eps)).mean()

    def covariance(z: torch.Tensor) -> torch.Tensor:
        zc = z - z.mean(dim=0)
        cov = zc.T @ zc / (n - 1)  # (d, d)
        off = cov - torch.diag(torch.diagonal(cov))
        return off.pow(2).sum() / d

    var = variance(z1) + variance(z2)
    cov = covariance(z1) + covariance(z2)
    return VICRegLoss(sim_weight * inv + var_weight * var + cov_weight * cov, inv, var, cov)


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent (normalised temperature-scaled cross entropy): Chen et al., "A Simple Framework
    for Contrastive Learning of Visual Representations" (SimCLR), ICML 2020, eq. (1). For the
    2N views, each view's positive is the other view of its image and its negatives the 2N - 2
    views of the other images:

        l(i, j) = -log exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t)

    averaged over all 2N anchors, sim the cosine similarity."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2N, D)
    n = len(z1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # an anchor is never its own candidate
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, target)


def koleo(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo entropy regulariser: Sablayrolles et al., "Spreading vectors for similarity
    search", ICLR 2019, eq. (5), as used for copy detection by Pizzi et al., "A Self-Supervised
    Descriptor for Image Copy Detection" (SSCD), CVPR 2022:

        L = -1/n sum_i log(min_{j != i} ||z_i - z_j||),   z L2-normalised

    It pushes every code away from its nearest neighbour, spreading codes uniformly."""
    z = F.normalize(z.float(), dim=1)
    d = torch.cdist(z, z)
    d = d + torch.eye(len(z), device=z.device) * 1e9  # never a code's own distance
    return -torch.log(d.min(dim=1).values + eps).mean()


def byol_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL: Grill et al., "Bootstrap your own latent", NeurIPS 2020, eq. (2): the mean
    squared error between the L2-normalised prediction of one view and the L2-normalised
    target projection of the other, 2 - 2 cos(q, z'), the target carrying no gradient."""
    q = F.normalize(q.float(), dim=1)
    t = F.normalize(target.detach().float(), dim=1)
    return (2 - 2 * (q * t).sum(dim=1)).mean()


def ema_momentum(base: float, step: int, planned: int) -> float:
    """BYOL's target momentum at ``step`` of ``planned``: tau = 1 - (1 - base)(cos(pi k/K)
    + 1) / 2 (Grill et al. 2020, section 3.2), from ``base`` up to 1."""
    t = min(1.0, step / max(1, planned))
    return 1 - (1 - base) * (math.cos(math.pi * t) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, for each parameter the target
    has, matched by name (a target may keep only a part of the online model); its buffers,
    batch-norm statistics, copied."""
    params, buffers = dict(online.named_parameters()), dict(online.named_buffers())
    for name, tp in target.named_parameters():
        tp.lerp_(params[name].detach(), 1 - momentum)
    for name, tb in target.named_buffers():
        tb.copy_(buffers[name])


def views_loss(kind: str, z1: torch.Tensor, z2: torch.Tensor, smalls: list[torch.Tensor],
               temperature: float) -> torch.Tensor:
    """The invariance term ``kind`` between the two views' projections, with multi-crop's
    small crops (Caron et al., "Unsupervised learning of visual features by contrasting
    cluster assignments" (SwAV), NeurIPS 2020, section 3.2) each pulled towards both views:
    (pair + L * mean of the 2L crop pulls) / (1 + L), so a crop weighs as the views' pair."""
    term = invariance_loss(kind, z1, z2, temperature)
    if not smalls:
        return term
    pulls = [invariance_loss(kind, s, z, temperature) for s in smalls for z in (z1, z2)]
    return (term + torch.stack(pulls).mean() * len(smalls)) / (1 + len(smalls))


def byol_views_loss(q1: torch.Tensor, q2: torch.Tensor, q_smalls: list[torch.Tensor],
                    t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """BYOL's symmetric term (Grill et al. 2020): each view's prediction towards the other
    view's target projection, and each small crop's prediction towards both, averaged."""
    pulls = [byol_loss(q1, t2), byol_loss(q2, t1)]
    pulls += [byol_loss(q, t) for q in q_smalls for t in (t1, t2)]
    return torch.stack(pulls).mean()


def invariance_loss(kind: str, p1: torch.Tensor, p2: torch.Tensor, temperature: float
                    ) -> torch.Tensor:
    """The invariance term ``kind`` between two batches of projected codes."""
    if kind == "vicreg":
        return vicreg_loss(p1, p2).total
    if kind == "infonce":
        return info_nce(p1, p2, temperature)
    raise ValueError(f"invariance must be one of {INVARIANCES}, got {kind!r}")
