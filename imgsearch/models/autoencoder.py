"""Convolutional autoencoder: max-pooling encoder, unpooling + deconvolution decoder.

Regularized variants are settings of the same model (Vincent et al. 2008 denoising; Ng 2011
sparse; Rifai et al. 2011 contractive; dropout; tied weights, the decoder using the encoder's
weights transposed, as in Vincent et al. 2010), their loss terms pure functions below.
The input corruption of the denoising variant is applied by the training loop (augment.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvDecoder, ConvEncoder, Switches, TrunkConfig, trunk_shape
from .invariance import head

UNPOOL = ("switches", "fixed")
SPARSE = ("none", "l1", "kl")


@dataclass(frozen=True)
class AEConfig(TrunkConfig):
    unpool: str = "fixed"  # "switches": unpool at the encoder's argmax; "fixed": from code only
    sparse: str = "none"  # none | l1 (mean |code|) | kl (KL(rho || mean sigmoid(code)))
    sparse_weight: float = 0.0
    sparse_target: float = 0.05  # rho for the KL sparsity penalty
    contractive_weight: float = 0.0  # weight of ||J_encoder(x)||_F^2
    tied: bool = False  # the decoder's linear layer is the encoder's, transposed (W* = W^T)
    tied_convs: bool = False  # ... and its deconvolutions use the encoder's kernels
    # a linear map from the code straight to the output's logits beside the deconvolutions
    # (a projection shortcut, He et al. 2016): what a linear decoder (PCA's) draws, the
    # convolutions draw the rest
    decoder_linear: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.unpool not in UNPOOL:
            raise ValueError(f"unpool must be one of {UNPOOL}, got {self.unpool!r}")
        if self.sparse not in SPARSE:
            raise ValueError(f"sparse must be one of {SPARSE}, got {self.sparse!r}")


class ConvAutoencoder(nn.Module):
    def __init__(self, cfg: AEConfig):
        super().__init__()
        self.cfg = cfg
        c, side = trunk_shape(cfg.input_size, cfg.widths)
        self.encoder = ConvEncoder(cfg.channels, cfg.widths, cfg.dropout, cfg.encoder_refine)
        self.to_code = nn.Linear(c * side * side, cfg.code_dim)
        if cfg.tied:  # the decoder's weight is to_code.weight.T; only its bias is its own
            self.from_code_bias = nn.Parameter(torch.zeros(c * side * side))
        else:
            self.from_code = nn.Linear(cfg.code_dim, c * side * side)
        self.decoder = ConvDecoder(cfg.channels, cfg.widths, cfg.input_size,
                                   self.encoder if cfg.tied_convs else None,
                                   cfg.decoder_refine)
        self.trunk = (c, side)
        self.shortcut = (nn.Linear(cfg.code_dim, cfg.channels * cfg.input_size ** 2)
                         if cfg.decoder_linear else None)
        # the invariance term's head: training only, the search code is the code itself
        self.projector = head(cfg, cfg.code_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, Switches]:
        """(B, C, S, S) in [0, 1] -> code (B, code_dim), switches."""
        h, switches = self.encoder(x)  # (B, c, side, side)
        return self.to_code(h.flatten(1)), switches  # (B, code_dim)

    def decode(self, code: torch.Tensor, switches: Switches | None = None) -> torch.Tensor:
        """(B, code_dim) -> (B, C, S, S); switches are used only by the "switches" variant."""
        c, side = self.trunk
        if self.cfg.tied:
            h = F.linear(code, self.to_code.weight.t(), self.from_code_bias)  # W^T code + b
        else:
            h = self.from_code(code)
        h = F.relu(h).view(-1, c, side, side)  # (B, c, side, side)
        cfg = self.cfg
        short = (self.shortcut(code).view(-1, cfg.channels, cfg.input_size, cfg.input_size)
                 if self.shortcut is not None else None)  # (B, C, S, S) logits
        return self.decoder(h, switches if cfg.unpool == "switches" else None, short)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code, switches = self.encode(x)
        return self.decode(code, switches), code


class AELoss(NamedTuple):
    total: torch.Tensor
    recon: torch.Tensor
    sparse: torch.Tensor
    contractive: torch.Tensor


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel."""
    return F.mse_loss(recon.float(), target.float())


def l1_sparsity(code: torch.Tensor) -> torch.Tensor:
    """Mean absolute code value (L1 activity penalty)."""
    return code.float().abs().mean()


def kl_sparsity(code: torch.Tensor, rho: float) -> torch.Tensor:
    """Sum over units of KL(rho || rho_hat_j), rho_hat_j the batch mean of sigmoid(code_j).

    Ng, "Sparse autoencoder", CS294A lecture notes (2011), section 3:
    KL(rho || rho_hat) = rho log(rho / rho_hat) + (1 - rho) log((1 - rho) / (1 - rho_hat)).
    """
    rho_hat = torch.sigmoid(code.float()).mean(dim=0).clamp(1e-6, 1 - 1e-6)  # (code_dim,)
    return (rho * torch.log(rho / rho_hat)
            + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


def contractive_penalty(model: ConvAutoencoder, x: torch.Tensor, n_proj: int = 1) -> torch.Tensor:
    """Unbiased estimate of the mean over the batch of ||J_f(x)||_F^2, f the encoder.

    Rifai et al. 2011 penalize the squared Frobenius norm of the encoder's Jacobian. For a deep
    encoder the full Jacobian (code_dim x input) is too costly, so it is estimated with random
    projections: ||J||_F^2 = E_v ||J^T v||^2 for v ~ N(0, I) (Hutchinson 1989), one
    vector-Jacobian product per projection, differentiable (create_graph) for training.
    """
    x = x.detach().requires_grad_(True)
    code, _ = model.encode(x)
    total = x.new_zeros(())
    for _ in range(n_proj):
        v = torch.randn_like(code)
        (jtv,) = torch.autograd.grad(code, x, v, create_graph=True)  # (B, C, S, S) = J^T v
        total = total + jtv.float().pow(2).sum() / len(x)
    return total / n_proj


def ae_loss(model: ConvAutoencoder, corrupted: torch.Tensor, clean: torch.Tensor) -> AELoss:
    """Reconstruct ``clean`` from ``corrupted`` plus the configured regularizers."""
    return objective(model, corrupted, clean)[0]


def objective(model: ConvAutoencoder, inputs: torch.Tensor, target: torch.Tensor,
              train: bool = True) -> tuple[AELoss, torch.Tensor]:
    """The loss of reconstructing ``target`` from ``inputs``, and the code of ``inputs``, from
    one forward pass (what training.py calls for every architecture). ``train=False`` (the
    validation loss, without gradients) is the reconstruction error alone: the regularizers
    shape training and are not a measure of the model."""
    cfg = model.cfg
    recon, code = model(inputs)
    rec = reconstruction_loss(recon, target)
    zero = rec.new_zeros(())
    if not train:
        return AELoss(rec, rec, zero, zero), code
    if cfg.sparse == "l1":
        sparse = l1_sparsity(code)
    elif cfg.sparse == "kl":
        sparse = kl_sparsity(code, cfg.sparse_target)
    else:
        sparse = zero
    contractive = contractive_penalty(model, inputs) if cfg.contractive_weight else zero
    total = rec + cfg.sparse_weight * sparse + cfg.contractive_weight * contractive
    return AELoss(total, rec, sparse, contractive), code
