"""Adversarial autoencoder: an autoencoder whose codes are pushed towards a prior by a
discriminator, so that the decoder can draw new images from samples of the prior.

Makhzani, Shlens, Jaitly, Goodfellow & Frey, "Adversarial Autoencoders", ICLR 2016 workshop
(arXiv:1511.05644), section 2: the encoder q(z|x) is the generator of a GAN on codes; the
discriminator D tells codes z ~ q(z) (the aggregate posterior) from samples z ~ p(z) = N(0, I).
Training alternates (training.py): a reconstruction step that also updates the encoder to fool
D (the non-saturating generator loss of Goodfellow et al. 2014), then a discriminator step.
The trunk is the autoencoder's (blocks.py), unpooled at fixed positions so that it can decode
from a code alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvDecoder, ConvEncoder, TrunkConfig, trunk_shape
from .invariance import head


@dataclass(frozen=True)
class AAEConfig(TrunkConfig):
    adversarial_weight: float = 0.01  # weight of the generator loss beside reconstruction
    disc_widths: tuple[int, ...] = (512, 512)  # the discriminator's hidden layers
    disc_lr: float = 1e-4  # the discriminator's learning rate

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "disc_widths", tuple(self.disc_widths))
        if self.adversarial_weight < 0 or self.disc_lr <= 0:
            raise ValueError("adversarial_weight must be 0 or more and disc_lr positive")


class Discriminator(nn.Module):
    """MLP on codes: (B, code_dim) -> (B,) logits that the code was drawn from the prior."""

    def __init__(self, code_dim: int, widths: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip((code_dim, *widths[:-1]), widths):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2, inplace=True)]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)  # (B,)


class AdversarialAutoencoder(nn.Module):
    def __init__(self, cfg: AAEConfig):
        super().__init__()
        self.cfg = cfg
        c, side = trunk_shape(cfg.input_size, cfg.widths)
        self.encoder = ConvEncoder(cfg.channels, cfg.widths, cfg.dropout, cfg.encoder_refine)
        self.to_code = nn.Linear(c * side * side, cfg.code_dim)
        self.from_code = nn.Linear(cfg.code_dim, c * side * side)
        self.decoder = ConvDecoder(cfg.channels, cfg.widths, cfg.input_size,
                                   refine=cfg.decoder_refine)
        self.discriminator = Discriminator(cfg.code_dim, cfg.disc_widths)
        self.trunk = (c, side)
        self.projector = head(cfg, cfg.code_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """(B, C, S, S) -> the deterministic code z = q(x), (B, code_dim)."""
        h, _ = self.encoder(x)  # (B, c, side, side); switches unused
        return self.to_code(h.flatten(1)), None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, code_dim) -> (B, C, S, S) in [0, 1], from the code alone."""
        c, side = self.trunk
        return self.decoder(F.relu(self.from_code(z)).view(-1, c, side, side))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, _ = self.encode(x)
        return self.decode(z), z


class AAELoss(NamedTuple):
    total: torch.Tensor
    recon: torch.Tensor
    adversarial: torch.Tensor  # the generator loss: the encoder fooling the discriminator


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(q(x)): the non-saturating generator loss (Goodfellow et al., "Generative
    Adversarial Nets", NeurIPS 2014, section 3)."""
    return F.binary_cross_entropy_with_logits(fake_logits.float(),
                                              torch.ones_like(fake_logits, dtype=torch.float32))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(z_prior) - log(1 - D(q(x))): the discriminator's cross-entropy (Goodfellow et
    al. 2014, eq. 1), prior samples labelled 1 and codes 0."""
    real, fake = real_logits.float(), fake_logits.float()
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def objective(model: AdversarialAutoencoder, inputs: torch.Tensor, target: torch.Tensor,
              train: bool = True) -> tuple[AAELoss, torch.Tensor]:
    """The reconstruction and regularization phases of Makhzani et al. in one step: the mean
    squared error of reconstructing ``target``, plus ``adversarial_weight`` times the encoder's
    generator loss against the (fixed, for this step) discriminator; and the code. The
    discriminator's own step is ``discriminator_objective``."""
    recon, z = model(inputs)
    rec = F.mse_loss(recon.float(), target.float())
    if not train:
        return AAELoss(rec, rec, rec.new_zeros(())), z
    adv = generator_loss(model.discriminator(z))
    return AAELoss(rec + model.cfg.adversarial_weight * adv, rec, adv), z


def discriminator_objective(model: AdversarialAutoencoder, codes: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on a batch of codes (detached: this step trains D alone)
    against as many samples of the prior N(0, I)."""
    codes = codes.detach()
    prior = torch.randn_like(codes)
    return discriminator_loss(model.discriminator(prior), model.discriminator(codes))
