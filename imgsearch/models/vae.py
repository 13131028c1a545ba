"""Convolutional VAE on the autoencoder's trunk: q(z|x) = N(mu, diag(sigma^2)), p(z) = N(0, I).

Kingma & Welling, "Auto-Encoding Variational Bayes" (2014); beta-VAE weighting of the KL term
from Higgins et al. (2017); the beta-TCVAE split of the KL term (Chen et al. 2018) as a setting
(``kl="tc"``). The decoder works from z alone (fixed-position unpooling): sampling
from the prior has no switches. Search codes are mu.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvDecoder, ConvEncoder, TrunkConfig, trunk_shape
from .invariance import head

KL_TERMS = ("closed", "tc")


@dataclass(frozen=True)
class VAEConfig(TrunkConfig):
    beta: float = 0.1  # 0.1 gave better retrieval codes than 1.0 (docs/RESULTS.md)
    kl: str = "closed"  # closed: beta * KL; tc: beta-TCVAE, alpha MI + beta TC + gamma dim-KL
    alpha: float = 1.0  # beta-TCVAE: weight of the index-code mutual information
    gamma: float = 1.0  # beta-TCVAE: weight of the dimension-wise KL

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kl not in KL_TERMS:
            raise ValueError(f"kl must be one of {KL_TERMS}, got {self.kl!r}")


class ConvVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        c, side = trunk_shape(cfg.input_size, cfg.widths)
        self.encoder = ConvEncoder(cfg.channels, cfg.widths, cfg.dropout, cfg.encoder_refine)
        self.to_mu = nn.Linear(c * side * side, cfg.code_dim)
        self.to_logvar = nn.Linear(c * side * side, cfg.code_dim)
        self.from_z = nn.Linear(cfg.code_dim, c * side * side)
        self.decoder = ConvDecoder(cfg.channels, cfg.widths, cfg.input_size,
                                   refine=cfg.decoder_refine)
        self.trunk = (c, side)
        # the invariance term's head, on mu: training only
        self.projector = head(cfg, cfg.code_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) -> mu, log sigma^2, each (B, code_dim)."""
        h, _ = self.encoder(x)  # (B, c, side, side); switches unused
        h = h.flatten(1)  # (B, c * side * side)
        return self.to_mu(h), self.to_logvar(h)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # (B, code_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, code_dim) -> (B, C, S, S) in [0, 1]."""
        c, side = self.trunk
        h = F.relu(self.from_z(z)).view(-1, c, side, side)  # (B, c, side, side)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


class VAELoss(NamedTuple):
    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over dimensions, averaged over the batch.

    Kingma & Welling 2014, appendix B: -KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2).
    """
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor,
             logvar: torch.Tensor, beta: float) -> VAELoss:
    """Bernoulli reconstruction term (binary cross-entropy summed over pixels, averaged over the
    batch) + beta * KL, as in pytorch/examples vae/main.py."""
    rec = bernoulli_nll(recon, target)
    kl = kl_divergence(mu, logvar)
    return VAELoss(rec + beta * kl, rec, kl)


def bernoulli_nll(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over pixels, averaged over the batch (written out, not
    F.binary_cross_entropy, so that it is safe under autocast)."""
    r, t = recon.float().clamp(1e-6, 1 - 1e-6), target.float()
    return -(t * torch.log(r) + (1 - t) * torch.log(1 - r)).sum() / len(t)


class TCVAELoss(NamedTuple):
    total: torch.Tensor
    recon: torch.Tensor
    mi: torch.Tensor  # index-code mutual information
    tc: torch.Tensor  # total correlation
    dim_kl: torch.Tensor  # dimension-wise KL


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar))."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def tc_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                     dataset_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mutual information, total correlation, dimension-wise KL) of the batch's codes.

    Chen, Li, Grosse & Duvenaud, "Isolating Sources of Disentanglement in Variational
    Autoencoders" (beta-TCVAE), NeurIPS 2018, eq. (2):
        E_p(n)[KL(q(z|n) || p(z))] = I_q(z; n) + KL(q(z) || prod_j q(z_j))
                                     + sum_j KL(q(z_j) || p(z_j)),
    each term estimated on a batch of M codes z_i ~ q(z|x_i) of a dataset of N images with
    minibatch-weighted sampling (section 3.1):
        log q(z_i) ~ logsumexp_k log q(z_i | x_k) - log(N M),
        log q(z_ij) ~ logsumexp_k log q(z_ij | x_k) - log(N M).
    The three terms add up to mean_i [log q(z_i|x_i) - log p(z_i)], a one-sample estimate of
    the closed-form KL (kl_divergence)."""
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    m = len(z)
    pair = log_normal(z[:, None, :], mu[None, :, :], logvar[None, :, :])  # (M, M, D): i | x_k
    log_qz_x = log_normal(z, mu, logvar).sum(1)  # (M,)
    shift = math.log(dataset_size * m)
    log_qz = torch.logsumexp(pair.sum(2), dim=1) - shift  # (M,)
    log_prod_qzj = (torch.logsumexp(pair, dim=1) - shift).sum(1)  # (M,)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)  # (M,)
    return ((log_qz_x - log_qz).mean(), (log_qz - log_prod_qzj).mean(),
            (log_prod_qzj - log_pz).mean())


def objective(model: ConvVAE, inputs: torch.Tensor, target: torch.Tensor,
              train: bool = True) -> tuple[VAELoss | TCVAELoss, torch.Tensor]:
    """The loss of reconstructing ``target`` from ``inputs``, and mu, the search code, from
    one forward pass (what training.py calls for every architecture): beta-VAE with the
    closed-form KL, or beta-TCVAE (``kl="tc"``; the dataset size for its estimator is
    ``model.dataset_size``, set by the training loop, else the batch size)."""
    cfg = model.cfg
    mu, logvar = model.encode(inputs)
    z = model.reparameterize(mu, logvar)
    recon = model.decode(z)
    if cfg.kl == "closed":
        return vae_loss(recon, target, mu, logvar, cfg.beta), mu
    rec = bernoulli_nll(recon, target)
    n = getattr(model, "dataset_size", None) or len(z)
    mi, tc, dim_kl = tc_decomposition(z, mu, logvar, n)
    total = rec + cfg.alpha * mi + cfg.beta * tc + cfg.gamma * dim_kl
    return TCVAELoss(total, rec, mi, tc, dim_kl), mu
