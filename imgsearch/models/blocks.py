"""The convolutional trunk every model shares: conv + max-pool down, unpool + deconv up.

Encoder: ``len(widths)`` blocks of Conv3x3 -> BatchNorm -> ReLU (-> residual convolutions) ->
MaxPool2d(2), the pooling returning the argmax positions ("switches") and the size before
pooling.
Decoder: the mirror image, MaxUnpool2d(2) then ConvTranspose2d(3x3) per block; it unpools at the
switches when given them, otherwise at fixed positions (the top-left of every 2x2 window),
so that it can decode from a code alone (Zeiler & Fergus 2014; Dosovitskiy & Brox 2016). With
``tied_to`` its deconvolutions use the encoder's kernels, transposed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CORRUPTIONS
from .invariance import InvarianceConfig

Switches = list[tuple[torch.Tensor, torch.Size]]  # (argmax indices, pre-pool size) per block


def trunk_shape(input_size: int, widths: tuple[int, ...]) -> tuple[int, int]:
    """(channels, side) of the encoder's last feature map."""
    side = input_size
    for _ in widths:
        side //= 2
    if side < 1:
        raise ValueError(f"input {input_size} is too small for {len(widths)} pooling stages")
    return widths[-1], side


@dataclass(frozen=True)
class TrunkConfig(InvarianceConfig):
    """The settings of the convolutional trunk that every architecture's config shares: the
    image it reads, the encoder's widths, the code size, and the corruption it trains on."""

    input_size: int = 64
    channels: int = 3
    widths: tuple[int, ...] = (32, 64, 128, 128)
    code_dim: int = 256
    dropout: float = 0.0  # Dropout2d after every encoder block
    # residual 3x3 convolutions each encoder block adds after its convolution, before its
    # pooling (0: one convolution per block); a deeper trunk at the same code and pooling
    encoder_refine: int = 0
    # residual 3x3 convolutions each decoder block adds at its unpooled resolution, before
    # its deconvolution (0: the plain mirror image of the encoder)
    decoder_refine: int = 0
    denoise: str = "none"  # input corruption while training: none | gaussian | mask | edits
    noise: float = 0.1  # gaussian std, or mask probability

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "widths", tuple(self.widths))  # lists come back from JSON
        if self.denoise not in CORRUPTIONS:
            raise ValueError(f"denoise must be one of {CORRUPTIONS}, got {self.denoise!r}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be one or more positive channel counts, got "
                             f"{self.widths}")
        trunk_shape(self.input_size, self.widths)
        for name in ("decoder_refine", "encoder_refine"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.invariant_dims > self.code_dim:
            raise ValueError(f"invariant_dims {self.invariant_dims} is more than the code's "
                             f"{self.code_dim} dimensions")


class Refine(nn.Module):
    """x + ReLU(BN(Conv3x3(x))): a residual convolution at one resolution (He et al., "Deep
    residual learning for image recognition", CVPR 2016), which starts as the identity's
    neighbour, so an encoder or a decoder gains depth without losing its gradient."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.bn(self.conv(x)))  # (B, w, H, W)


class ConvEncoder(nn.Module):
    def __init__(self, channels: int, widths: tuple[int, ...], dropout: float = 0.0,
                 refine: int = 0):
        super().__init__()
        ins = (channels, *widths[:-1])
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                          nn.ReLU(inplace=True),
                          *(Refine(o) for _ in range(refine)),  # (B, o, H, W), deepened
                          nn.Dropout2d(dropout))
            for i, o in zip(ins, widths)
        )
        self.pool = nn.MaxPool2d(2, return_indices=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Switches]:
        switches: Switches = []
        for block in self.blocks:
            x = block(x)  # (B, w, H, W)
            size = x.shape
            x, idx = self.pool(x)  # (B, w, H/2, W/2), argmax positions in the (H, W) map
            switches.append((idx, size))
        return x, switches


def fixed_switches(pooled: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Indices that unpool every value to the top-left corner of its 2x2 window."""
    b, c, h, w = pooled.shape
    rows = torch.arange(h, device=pooled.device) * 2 * size[-1]
    cols = torch.arange(w, device=pooled.device) * 2
    return (rows[:, None] + cols[None, :]).expand(b, c, h, w)  # (B, C, h, w)


class TiedDeconv(nn.Module):
    """A deconvolution whose kernel is an encoder convolution's own weight, transposed: the
    same Parameter, not a copy (tied weights, W* = W^T). A Conv2d(i, o) weight is (o, i, k, k),
    which is exactly the (in, out, k, k) weight of a ConvTranspose2d(o, i)."""

    def __init__(self, conv: nn.Conv2d, bias: bool):
        super().__init__()
        object.__setattr__(self, "conv", conv)  # not a submodule: the encoder owns the weight
        self.bias = nn.Parameter(torch.zeros(conv.in_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.conv.weight, self.bias, padding=1)


class ConvDecoder(nn.Module):
    def __init__(self, channels: int, widths: tuple[int, ...], input_size: int,
                 tied_to: ConvEncoder | None = None, refine: int = 0):
        super().__init__()
        outs = (channels, *widths[:-1])
        sides = [input_size // 2**k for k in range(len(widths))]  # pre-pool side per block
        self.sides = sides[::-1]  # deepest first, the order the decoder unpools in
        self.unpool = nn.MaxUnpool2d(2)
        self.blocks = nn.ModuleList()
        for n, (i, o) in enumerate(reversed(list(zip(widths, outs)))):
            last = n == len(widths) - 1
            deconv = (TiedDeconv(tied_to.blocks[len(widths) - 1 - n][0], bias=last)
                      if tied_to is not None else nn.ConvTranspose2d(i, o, 3, padding=1, bias=last))
            self.blocks.append(nn.Sequential(
                *(Refine(i) for _ in range(refine)),  # (B, i, side, side), refined
                deconv,
                nn.Identity() if last else nn.BatchNorm2d(o),
                nn.Identity() if last else nn.ReLU(inplace=True),
            ))

    def forward(self, x: torch.Tensor, switches: Switches | None = None,
                shortcut: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, h, w) deepest features -> (B, channels, H, W) in [0, 1].

        ``switches`` as the encoder returned them (shallowest first), or None for fixed ones;
        ``shortcut``, (B, channels, H, W), is added to the last deconvolution's output before
        the sigmoid.
        """
        deepest_first = switches[::-1] if switches is not None else None
        for n, block in enumerate(self.blocks):
            side = self.sides[n]
            idx = deepest_first[n][0] if deepest_first else fixed_switches(x, (side, side))
            x = self.unpool(x, idx, output_size=(side, side))  # (B, C, side, side)
            x = block(x)  # (B, C', side, side): deconvolution
        return torch.sigmoid(x if shortcut is None else x + shortcut)
