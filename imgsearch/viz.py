"""Pictures: contact sheets of a query and its neighbours, grids of reconstructions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import open_upright
from .store import replacing

THUMB = 160
CAPTION = 34
PAD = 6


def thumbnail(path: str | Path, fallback: np.ndarray | None = None,
              size: int = THUMB) -> Image.Image:
    """An upright RGB thumbnail of an image file; ``fallback`` pixels if the file is unreadable."""
    try:
        return open_upright(path, size)
    except Exception:  # noqa: BLE001 - a missing or broken file still gets a tile
        if fallback is not None:
            return Image.fromarray(fallback).resize((size, size))
        return Image.new("RGB", (size, size), (200, 200, 200))


def contact_sheet(tiles: Sequence[tuple[Image.Image, str]], columns: int = 6,
                  size: int = THUMB) -> Image.Image:
    """Tiles with a caption under each, ``columns`` per row, on white."""
    font = ImageFont.load_default()
    rows = max(1, -(-len(tiles) // columns))
    cell_w, cell_h = size + 2 * PAD, size + CAPTION + 2 * PAD
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (im, caption) in enumerate(tiles):
        x0, y0 = (n % columns) * cell_w + PAD, (n // columns) * cell_h + PAD
        sheet.paste(im, (x0 + (size - im.width) // 2, y0 + (size - im.height) // 2))
        for line_no, line in enumerate(caption.split("\n")[:2]):
            draw.text((x0, y0 + size + 3 + 14 * line_no), line[:26], fill="black", font=font)
    return sheet


def save_png(image: Image.Image, out: str | Path) -> Path:
    """Write a PNG atomically (temporary name, then rename)."""
    with replacing(out) as tmp:
        image.save(tmp, format="PNG")
    return Path(out)


def _name(path: str | Path) -> str:
    """A file name fit for a caption: undecodable bytes as U+FFFD, on one line."""
    name = os.fsencode(Path(path).name).decode("utf-8", "replace")
    return " ".join(name.split())


def query_sheet(query: str | Path, query_pixels: np.ndarray | None, hits: Sequence,
                method: str, columns: int = 6) -> Image.Image:
    """The query, then each hit captioned with its rank and distance."""
    tiles = [(thumbnail(query, query_pixels), f"query ({method})\n{_name(query)}")]
    tiles += [(thumbnail(h.path), f"#{h.rank}  d={h.distance:.3f}\n{_name(h.path)}")
              for h in hits]
    return contact_sheet(tiles, columns)


def query_montage(query: str | Path, query_pixels: np.ndarray, hits: Sequence, method: str,
                  out: str | Path, columns: int = 6) -> Path:
    """The query, then each hit captioned with its rank and distance, as a PNG."""
    return save_png(query_sheet(query, query_pixels, hits, method, columns), out)


def image_grid(rows: Sequence[tuple[str, np.ndarray]], scale: int = 2,
               label_width: int = 90) -> Image.Image:
    """One labelled row per (label, images) pair; images (N, S, S, 3) in [0, 1] or uint8."""
    font = ImageFont.load_default()
    side = max(r[1].shape[1] for r in rows) * scale
    cols = max(len(r[1]) for r in rows)
    sheet = Image.new("RGB", (label_width + cols * (side + PAD) + PAD,
                              len(rows) * (side + PAD) + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, images) in enumerate(rows):
        y = PAD + r * (side + PAD)
        draw.text((PAD, y + side // 2 - 6), label, fill="black", font=font)
        for c, im in enumerate(images):
            arr = im if im.dtype == np.uint8 else (np.clip(im, 0, 1) * 255).round().astype(np.uint8)
            tile = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)
            sheet.paste(tile.resize((side, side), Image.Resampling.NEAREST),
                        (label_width + PAD + c * (side + PAD), y))
    return sheet


def group_sheet(group, out: str | Path, columns: int = 6) -> Path:
    """A contact sheet of one group of near-duplicates: the keeper, then the others with their
    distance to it, as a PNG."""
    def caption(m, role: str) -> str:
        size = f"{m.width}x{m.height}" if m.width else "?"
        return f"{role} {size}\n{_name(m.path)}"

    tiles = [(thumbnail(group.keeper.path), caption(group.keeper, "KEEP"))]
    tiles += [(thumbnail(m.path), caption(m, f"d={m.distance:.3f}")) for m in group.others]
    return save_png(contact_sheet(tiles, columns), out)


def layout(ws, method: str, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ids, positions in [0, 1]^2) of up to ``n`` of the index's images (a seeded sample),
    placed by a 2-D t-SNE of ``method``'s codes (van der Maaten & Hinton 2008, through
    scikit-learn): similar images end up near each other."""
    from sklearn.manifold import TSNE

    from .build import load_method

    index = load_method(ws, method).index
    ids = np.array(ws.catalog.indexed_ids())
    if len(ids) > n:
        ids = np.sort(np.random.default_rng(seed).choice(ids, n, replace=False))
    codes = index.vectors(ids).astype(np.float32)
    if len(ids) < 4:  # too few for t-SNE: a row
        xy = np.stack([np.linspace(0, 1, len(ids)), np.full(len(ids), 0.5)], 1)
        return ids, xy
    xy = TSNE(2, perplexity=min(30.0, (len(ids) - 1) / 3), init="pca",
              random_state=seed).fit_transform(codes)
    xy = (xy - xy.min(0)) / np.maximum(xy.max(0) - xy.min(0), 1e-9)
    return ids, xy


def map_picture(pixels: np.ndarray, xy: np.ndarray, side: int = 2400, tile: int = 56,
                title: str = "") -> Image.Image:
    """Thumbnails (N, S, S, 3) uint8 placed at ``xy`` in [0, 1]^2 on a white square."""
    sheet = Image.new("RGB", (side + tile, side + tile + (24 if title else 0)), "white")
    top = 24 if title else 0
    if title:
        ImageDraw.Draw(sheet).text((PAD, 6), title, fill="black", font=ImageFont.load_default())
    for im, (x, y) in zip(pixels, xy):
        t = Image.fromarray(im).resize((tile, tile), Image.Resampling.BILINEAR)
        sheet.paste(t, (int(x * side), top + int(y * side)))
    return sheet
