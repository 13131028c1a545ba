"""Photo edits as batched tensor operations, and the random augmentations built from them.

Every edit takes a (B, C, S, S) float batch in [0, 1] on any device and per-sample parameters
as (B,) tensors, and returns a batch of the same shape on the same device: no Python loop per
image. ``Augment`` draws the parameters from a seeded generator (two views of a batch for the
invariance term; one corrupted input for denoising); ``selfcheck.py`` applies the same edits
with fixed parameters. Training only: a query never imports this module.

The edits: random resized crop (any aspect, down to ``crop_scale[0]`` of the area), mirror,
rotation (small angles, sometimes a quarter turn), colour jitter (brightness, contrast,
saturation, hue), grayscale, Gaussian blur, JPEG re-encoding (simulated: YCbCr, 4:2:0 chroma,
8x8 DCT quantised with the IJG tables at the sampled quality), a caption (text drawn over the
photo), a small overlay (another photo of the batch pasted on) and random erasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .config import CORRUPTIONS

# -- geometry ------------------------------------------------------------------------------


def affine(x: torch.Tensor, scale_x: torch.Tensor, scale_y: torch.Tensor, angle: torch.Tensor,
           shift_x: torch.Tensor, shift_y: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Resample every image through its own affine map (output -> input, normalised [-1, 1]
    coordinates): the output shows the input region of width ``scale_x`` and height
    ``scale_y`` (fractions of the side) centred at (shift_x, shift_y), rotated by ``angle``
    (radians) and mirrored where ``flip``. Points outside the input are black."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx = scale_x * torch.where(flip, -1.0, 1.0)
    theta = torch.stack([torch.stack([sx * cos, -scale_y * sin, shift_x], 1),
                         torch.stack([sx * sin, scale_y * cos, shift_y], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def perspective(x: torch.Tensor, strength: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A perspective warp: each corner of the image moved inwards by up to ``strength`` of the
    side (a fixed seeded pattern per image), the inside resampled by the homography."""
    b = x.shape[0]
    g = torch.Generator().manual_seed(seed)
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    inward = -corners.sign() * torch.rand((b, 4, 2), generator=g) * 2
    dst = corners + inward * strength.cpu().float()[:, None, None]  # where the corners go
    h = torch.stack([_homography(dst[i], corners) for i in range(b)])  # output -> input
    s = x.shape[-1]
    lin = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    pts = torch.stack([xx, yy, torch.ones_like(xx)], -1).reshape(-1, 3)  # (S*S, 3)
    mapped = torch.einsum("bij,nj->bni", h, pts)
    grid = (mapped[..., :2] / mapped[..., 2:]).reshape(b, s, s, 2)
    return F.grid_sample(x, grid.to(x.device, x.dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def _homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The 3x3 map taking the 4 points ``src`` to ``dst`` (direct linear transform)."""
    rows = []
    for (x, y), (u, v) in zip(src.tolist(), dst.tolist()):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = torch.tensor(rows, dtype=torch.float64)
    sol = torch.linalg.solve(a, dst.reshape(-1).double())
    return torch.cat([sol, sol.new_ones(1)]).reshape(3, 3).float()


def paste_into(x: torch.Tensor, background: torch.Tensor, fraction: torch.Tensor,
               pos_x: torch.Tensor, pos_y: torch.Tensor) -> torch.Tensor:
    """Each image shrunk to ``fraction`` of the side and pasted into ``background`` with its
    top-left corner at (pos_x, pos_y) * (1 - fraction) of the free space."""
    free = 1 - fraction
    cx = (pos_x * free + fraction / 2) * 2 - 1  # the pasted image's centre, normalised
    cy = (pos_y * free + fraction / 2) * 2 - 1
    zero = torch.zeros_like(fraction)
    # output -> input: u = (p - c) / fraction
    small = affine(x, 1 / fraction, 1 / fraction, zero, -cx / fraction, -cy / fraction,
                   zero.bool())
    inside = affine(torch.ones_like(x[:, :1]), 1 / fraction, 1 / fraction, zero,
                    -cx / fraction, -cy / fraction, zero.bool())
    return background * (1 - inside) + small * inside


# -- colour --------------------------------------------------------------------------------
def grey(x: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) -> (B, 1, S, S) luma (ITU-R BT.601), or the image itself if C = 1."""
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
           saturation: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Colour jitter with per-image factors: brightness and contrast multiply (1 = none),
    saturation scales the distance from grey, hue turns the chroma by that fraction of a
    full turn (in YIQ space)."""
    v = lambda t: t.to(x.dtype).view(-1, 1, 1, 1)  # noqa: E731 - (B,) -> (B, 1, 1, 1)
    x = x * v(brightness)
    mean = grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * v(contrast) + mean
    if x.shape[1] == 3:
        g = grey(x)
        x = g + (x - g) * v(saturation)
        x = _turn_hue(x, hue.to(x.dtype))
    return x.clamp(0, 1)


_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _turn_hue(x: torch.Tensor, turn: torch.Tensor) -> torch.Tensor:
    yiq_m = _YIQ.to(x.device, x.dtype)
    a = turn * 2 * math.pi
    cos, sin = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    rot = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                       torch.stack([zero, sin, cos], 1)], 1)  # (B, 3, 3)
    m = torch.linalg.inv(yiq_m) @ rot @ yiq_m  # (B, 3, 3): RGB -> RGB
    return torch.einsum("bij,bjhw->bihw", m, x)


def to_grey(x: torch.Tensor) -> torch.Tensor:
    return grey(x).expand_as(x)


def blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Gaussian blur with a per-image standard deviation in pixels (separable, grouped conv)."""
    b, c, s, _ = x.shape
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    sig = sigma.to(x.dtype).clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / sig) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, 2r+1)
    flat = F.pad(x.reshape(1, b * c, s, s), (radius,) * 4, mode="reflect")
    flat = F.conv2d(flat, k[:, None, None, :], groups=b * c)  # along rows
    flat = F.conv2d(flat, k[:, None, :, None], groups=b * c)  # along columns
    return flat.reshape(b, c, s, s)


# -- JPEG ----------------------------------------------------------------------------------
# The IJG example quantisation tables (ITU-T T.81, Annex K), scaled by quality as libjpeg does.
_LUMA_Q = torch.tensor([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=torch.float32).view(8, 8)
_CHROMA_Q = torch.tensor([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32,
    dtype=torch.float32).view(8, 8)


def _dct_matrix(device, dtype) -> torch.Tensor:
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(device, dtype)  # orthonormal DCT-II: coeffs = D @ block @ D.T


def _quant_tables(quality: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    q = quality.clamp(1, 100).to(torch.float32)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)  # libjpeg's jpeg_quality_scaling
    t = ((table.to(q.device)[None] * scale[:, None, None] + 50) / 100).floor().clamp(1, 255)
    return t  # (B, 8, 8)


def _quantise_plane(p: torch.Tensor, tables: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(B, H, W) plane in [0, 255] (H, W multiples of 8) through DCT, quantisation, IDCT."""
    b, h, w = p.shape
    blocks = (p - 128).reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)  # (B,h,w,8,8)
    coef = d @ blocks @ d.T
    t = tables[:, None, None].to(p.dtype)
    coef = torch.round(coef / t) * t
    out = d.T @ coef @ d
    return out.permute(0, 1, 3, 2, 4).reshape(b, h, w) + 128


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG compression artefacts at a per-image quality (1..100), simulated in float: RGB ->
    YCbCr (JFIF), chroma averaged over 2x2 (4:2:0), each plane's 8x8 blocks DCT-transformed,
    quantised with the scaled IJG tables and transformed back. Sides are padded to a multiple
    of 16 by reflection and cropped back."""
    c, s = x.shape[1], x.shape[-1]
    pad = (-s) % 16
    if pad:
        x = F.pad(x, (0, pad, 0, pad), mode="reflect")
    v = x * 255
    d = _dct_matrix(x.device, x.dtype)
    luma_t = _quant_tables(quality, _LUMA_Q).to(x.device)
    if c == 1:
        out = _quantise_plane(v[:, 0], luma_t, d)[:, None]
    else:
        r, g, bl = v[:, 0], v[:, 1], v[:, 2]
        y = 0.299 * r + 0.587 * g + 0.114 * bl
        cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * bl
        cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * bl
        chroma_t = _quant_tables(quality, _CHROMA_Q).to(x.device)
        y = _quantise_plane(y, luma_t, d)
        sub = lambda p: F.avg_pool2d(p[:, None], 2)[:, 0]  # noqa: E731 - 4:2:0
        up = lambda p: F.interpolate(p[:, None], scale_factor=2, mode="nearest")[:, 0]  # noqa: E731
        cb = up(_quantise_plane(sub(cb), chroma_t, d))
        cr = up(_quantise_plane(sub(cr), chroma_t, d))
        out = torch.stack([y + 1.402 * (cr - 128),
                           y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                           y + 1.772 * (cb - 128)], 1)
    out = (out / 255).clamp(0, 1)
    return out[..., :s, :s] if pad else out


# -- overlays ------------------------------------------------------------------------------
WORDS = ("Holiday", "Summer", "Family", "Best day", "Trip", "Memories", "Weekend", "Party",
         "Beach", "Home", "Love", "Friends", "Wedding", "Birthday", "Vacation", "Snow")


def caption_bank(n: int, size: int, channels: int, seed: int) -> torch.Tensor:
    """``n`` text captions drawn once with Pillow (white text, black outline, random words,
    years, sizes and places) as (n, channels + 1, size, size) colour and alpha in [0, 1]."""
    rng = np.random.default_rng(seed)
    big = size * 4  # drawn large, then reduced: smooth edges at any input size
    out = []
    for _ in range(n):
        im = Image.new("RGBA", (big, big), (0, 0, 0, 0))
        draw = ImageDraw.Draw(im)
        text = f"{WORDS[rng.integers(len(WORDS))]} {rng.integers(1990, 2027)}"
        fsize = int(big * rng.uniform(0.08, 0.16))
        try:
            font = ImageFont.load_default(size=fsize)
        except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
            font = ImageFont.load_default()
        xy = (int(rng.uniform(0.02, 0.4) * big), int(rng.uniform(0.05, 0.85) * big))
        fill = tuple(int(v) for v in rng.choice([255, 255, 230, 20], 3))
        draw.text(xy, text, font=font, fill=(*fill, 255), stroke_width=max(1, fsize // 12),
                  stroke_fill=(0, 0, 0, 255))
        arr = np.asarray(im.resize((size, size), Image.Resampling.LANCZOS), np.float32) / 255
        rgba = torch.from_numpy(arr).permute(2, 0, 1)
        if channels == 1:
            rgba = torch.cat([grey(rgba[None, :3])[0], rgba[3:]])
        out.append(rgba)
    return torch.stack(out)


def overlay(x: torch.Tensor, stamps: torch.Tensor) -> torch.Tensor:
    """Each image with its stamp (B, C + 1, S, S: colour and alpha) composited over it."""
    alpha = stamps[:, -1:]
    return x * (1 - alpha) + stamps[:, :-1] * alpha


def erase(x: torch.Tensor, area: torch.Tensor, ratio: torch.Tensor, pos_x: torch.Tensor,
          pos_y: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020): a rectangle of ``area`` (fraction) and aspect
    ``ratio`` at (pos_x, pos_y) (fractions of the free space) filled with grey ``value``."""
    s = x.shape[-1]
    h = (torch.sqrt(area * ratio) * s).clamp(1, s)
    w = (torch.sqrt(area / ratio) * s).clamp(1, s)
    top, left = pos_y * (s - h), pos_x * (s - w)
    idx = torch.arange(s, device=x.device, dtype=x.dtype)
    rows = (idx[None] >= top[:, None]) & (idx[None] < (top + h)[:, None])  # (B, S)
    cols = (idx[None] >= left[:, None]) & (idx[None] < (left + w)[:, None])
    box = (rows[:, :, None] & cols[:, None, :])[:, None]  # (B, 1, S, S)
    return torch.where(box, value.to(x.dtype).view(-1, 1, 1, 1), x)


# -- random augmentations ------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of every edit in a random view."""

    crop_scale: tuple[float, float] = (0.35, 1.0)  # area kept by the random resized crop
    crop_ratio: tuple[float, float] = (0.5, 2.0)  # aspect (width / height) of the crop
    flip: float = 0.5
    rotate: float = 0.4  # probability of a small rotation ...
    degrees: float = 15.0  # ... of up to this many degrees either way
    quarter_turn: float = 0.05  # probability of a 90-degree turn
    jitter: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.05
    grayscale: float = 0.25
    blur: float = 0.25
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # pixels at the input size
    jpeg: float = 0.3
    jpeg_quality: tuple[float, float] = (20, 90)
    caption: float = 0.15
    overlay: float = 0.1  # another photo of the batch pasted on, small
    overlay_size: tuple[float, float] = (0.15, 0.35)
    erase: float = 0.15
    erase_area: tuple[float, float] = (0.02, 0.12)

    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio", "blur_sigma", "jpeg_quality", "overlay_size",
                     "erase_area"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # JSON gives lists


#: Presets by name: photos (colour, captions, overlays); small images (Fashion-MNIST-like:
#: grey, centred objects, where a crop below half the area loses the object).
PRESETS = {
    "photo": AugmentConfig(),
    "small": AugmentConfig(crop_scale=(0.5, 1.0), crop_ratio=(0.75, 1.33), rotate=0.3,
                           degrees=10.0, quarter_turn=0.0, saturation=0.0, hue=0.0,
                           grayscale=0.0, blur=0.2, blur_sigma=(0.2, 0.8), jpeg=0.2,
                           jpeg_quality=(30, 90), caption=0.0, overlay=0.0, erase=0.2,
                           erase_area=(0.02, 0.1)),
}
AUGMENTS = ("auto", *PRESETS)


def preset_for(name: str, size: int, channels: int) -> AugmentConfig:
    """``auto``: the small-image preset for grey images or inputs under 48 pixels, else the
    photo preset."""
    if name == "auto":
        name = "small" if channels == 1 or size < 48 else "photo"
    if name not in PRESETS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {name!r}")
    return PRESETS[name]


class Augment:
    """Random views of a batch: callable (B, C, S, S) float in [0, 1] -> same shape, device."""

    CAPTIONS = 48  # captions drawn once, chosen per image

    def __init__(self, cfg: AugmentConfig, size: int, channels: int, seed: int = 0):
        self.cfg, self.size, self.channels = cfg, size, channels
        self.gen: dict[torch.device, torch.Generator] = {}
        self.seed = seed
        self.captions = (caption_bank(self.CAPTIONS, size, channels, seed)
                         if cfg.caption > 0 else None)

    def _rand(self, n: int, device: torch.device, lo: float = 0.0, hi: float = 1.0):
        if device not in self.gen:  # one seeded generator per device, made when first used
            self.gen[device] = torch.Generator(device).manual_seed(self.seed)
        return torch.rand(n, generator=self.gen[device], device=device) * (hi - lo) + lo

    def _coin(self, p: float, n: int, device) -> torch.Tensor:
        return self._rand(n, device) < p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        cfg, b, dev = self.cfg, x.shape[0], x.device
        x = x.float()
        # geometry: crop (area and aspect), mirror, rotation, in one resampling
        area = self._rand(b, dev, *cfg.crop_scale)
        log_r = self._rand(b, dev, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
        ratio = torch.exp(log_r)
        w, h = torch.sqrt(area * ratio).clamp(max=1), torch.sqrt(area / ratio).clamp(max=1)
        cx = (self._rand(b, dev) * 2 - 1) * (1 - w)
        cy = (self._rand(b, dev) * 2 - 1) * (1 - h)
        angle = torch.where(self._coin(cfg.rotate, b, dev),
                            self._rand(b, dev, -cfg.degrees, cfg.degrees), 0.0)
        quarter = self._coin(cfg.quarter_turn, b, dev)
        angle = torch.deg2rad(angle + 90.0 * quarter * torch.where(self._coin(0.5, b, dev),
                                                                   1.0, -1.0))
        x = affine(x, w, h, angle, cx, cy, self._coin(cfg.flip, b, dev))
        if cfg.overlay > 0:  # another photo of the batch pasted on, small
            pasted = paste_into(x.roll(1, 0), x, self._rand(b, dev, *cfg.overlay_size),
                                self._rand(b, dev), self._rand(b, dev))
            x = torch.where(self._coin(cfg.overlay, b, dev).view(-1, 1, 1, 1), pasted, x)
        if cfg.jitter > 0:
            on = self._coin(cfg.jitter, b, dev)
            factor = lambda r: torch.where(on, self._rand(b, dev, 1 - r, 1 + r), 1.0)  # noqa: E731
            x = jitter(x, factor(cfg.brightness), factor(cfg.contrast), factor(cfg.saturation),
                       torch.where(on, self._rand(b, dev, -cfg.hue, cfg.hue), 0.0))
        if cfg.grayscale > 0 and self.channels == 3:
            on = self._coin(cfg.grayscale, b, dev).view(-1, 1, 1, 1)
            x = torch.where(on, to_grey(x), x)
        if self.captions is not None:
            n = len(self.captions)
            stamps = self.captions.to(dev)[(self._rand(b, dev) * n).long().clamp(max=n - 1)]
            on = self._coin(cfg.caption, b, dev).view(-1, 1, 1, 1)
            x = torch.where(on, overlay(x, stamps), x)
        if cfg.blur > 0:
            on = self._coin(cfg.blur, b, dev)
            sigma = self._rand(b, dev, *cfg.blur_sigma)
            x = torch.where(on.view(-1, 1, 1, 1), blur(x, sigma), x)
        if cfg.jpeg > 0:
            on = self._coin(cfg.jpeg, b, dev)
            x = torch.where(on.view(-1, 1, 1, 1), jpeg(x, self._rand(b, dev, *cfg.jpeg_quality)), x)
        if cfg.erase > 0:
            on = self._coin(cfg.erase, b, dev)
            erased = erase(x, self._rand(b, dev, *cfg.erase_area), torch.exp(
                self._rand(b, dev, -1.0, 1.0)), self._rand(b, dev), self._rand(b, dev),
                self._rand(b, dev))
            x = torch.where(on.view(-1, 1, 1, 1), erased, x)
        return x.clamp(0, 1)


# -- denoising corruptions -----------------------------------------------------------------
class Corruption:
    """Callable (B, C, S, S) float batch in [0, 1] -> corrupted batch, same shape and device,
    for denoising training: the model sees the corrupted image and must reconstruct the clean
    one (Vincent et al. 2008). ``edits`` corrupts with a random photo edit (``Augment``), so
    that edited copies get nearby codes."""

    def __init__(self, kind: str, amount: float, size: int, channels: int = 3,
                 augment: str = "auto", seed: int = 0):
        if kind not in CORRUPTIONS:
            raise ValueError(f"denoise must be one of {CORRUPTIONS}, got {kind!r}")
        self.kind, self.amount = kind, amount
        self.edits = (Augment(preset_for(augment, size, channels), size, channels, seed)
                      if kind == "edits" else None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "gaussian":
            return (x + self.amount * torch.randn_like(x)).clamp(0, 1)
        if self.kind == "mask":  # masking noise: each pixel zeroed with probability `amount`
            keep = torch.rand_like(x[:, :1]) >= self.amount  # (B, 1, S, S), all channels
            return x * keep
        if self.kind == "edits":
            return self.edits(x).to(x.dtype)
        return x
