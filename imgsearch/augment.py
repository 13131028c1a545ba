"""Input corruptions for denoising training: the model sees the corrupted image and must
reconstruct the clean one (Vincent et al. 2008). ``edits`` uses the photo edits a copy of a
photo goes through, so that edited copies get nearby codes."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from .config import CORRUPTIONS


def photo_edits(size: int) -> v2.Transform:
    """A random edit of a (C, S, S) uint8 image: crop-resize, flip, rotation, colour."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.5, 1.0), ratio=(0.8, 1.25), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.RandomRotation(12)], p=0.5),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.3, 0.02)], p=0.8),
        v2.RandomGrayscale(p=0.1),
    ])


def jpeg_reencode(image: torch.Tensor, quality: int) -> torch.Tensor:
    """A (C, S, S) uint8 image after a round trip through Pillow's JPEG codec."""
    arr = image.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr).save(buf, "JPEG",
                                                                          quality=quality)
    out = np.asarray(Image.open(buf))
    return torch.from_numpy(out.reshape(arr.shape).copy()).permute(2, 0, 1)


class Corruption:
    """Callable (B, C, S, S) float batch in [0, 1] -> corrupted batch, same shape and device."""

    def __init__(self, kind: str, amount: float, size: int):
        if kind not in CORRUPTIONS:
            raise ValueError(f"denoise must be one of {CORRUPTIONS}, got {kind!r}")
        self.kind, self.amount = kind, amount
        self.edits = photo_edits(size) if kind == "edits" else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "gaussian":
            return (x + self.amount * torch.randn_like(x)).clamp(0, 1)
        if self.kind == "mask":  # masking noise: each pixel zeroed with probability `amount`
            keep = torch.rand_like(x[:, :1]) >= self.amount  # (B, 1, S, S), all channels
            return x * keep
        if self.kind == "edits":
            u8 = (x * 255).round().to(torch.uint8).cpu()
            edited = []
            for im in u8:  # each image gets its own random edit
                im = self.edits(im)
                if torch.rand(()) < 0.5:
                    im = jpeg_reencode(im, int(torch.randint(25, 91, ())))
                edited.append(im)
            edited = torch.stack(edited)
            return edited.to(x.device, x.dtype) / 255
        return x
