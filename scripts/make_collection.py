"""Make a collection of N distinct photo-like JPEGs from the real photos, for scale benchmarks.

    python scripts/make_collection.py 100000 /data/collection-100k

Each file is a random crop of one of the real photos (30 to 100% of its side, at an aspect a
camera or phone writes: 4:3, 3:2, 16:9, 1:1, upright or not), mirrored at random, slightly
recoloured (brightness, contrast, saturation), resized to a long side of 800 to 2,000 pixels
and saved as JPEG at quality 70 to 95, in folders of 1,000 like a camera's. Seeded: the same
N and seed make the same files. Two worker processes by default; files already there are kept,
so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.datasets import photo_files
from imgsearch.images import open_upright

ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0)
_SOURCES: list[Image.Image] = []


def _load(paths: list[str], side: int) -> None:
    """Worker start: every source photo, upright, at most ``side`` on its long side."""
    _SOURCES.extend(open_upright(p, side) for p in paths)


def make_one(task: tuple[int, int, str]) -> int:
    i, seed, out = task
    path = Path(out)
    if path.exists():
        return 0
    rng = np.random.default_rng([seed, i])
    src = _SOURCES[rng.integers(len(_SOURCES))]
    aspect = ASPECTS[rng.integers(len(ASPECTS))]
    if rng.random() < 0.35:
        aspect = 1 / aspect  # upright
    w, h = src.size
    f = rng.uniform(0.3, 1.0)
    cw = min(w, h * aspect) * f
    ch = cw / aspect
    x, y = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    im = src.crop((round(x), round(y), round(x + cw), round(y + ch)))
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.8, 1.2))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.7, 1.3))
    long = int(rng.integers(800, 2001))
    scale = long / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                   Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    im.save(tmp, "JPEG", quality=int(rng.integers(70, 96)))
    tmp.rename(path)
    return 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", type=int)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--photos", type=Path, nargs="*", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source-side", type=int, default=2048)
    args = ap.parse_args()
    sources = [str(p) for p in photo_files(args.photos)]
    if not sources:
        raise SystemExit("no photos found; run scripts/fetch_data.sh or give --photos")
    tasks = [(i, args.seed, str(args.dest / f"{i // 1000:04d}" / f"IMG_{i:07d}.jpg"))
             for i in range(args.n)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers, _load,
                                                  (sources, args.source_side)) as pool:
        made = sum(pool.imap_unordered(make_one, tasks, chunksize=64))
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in args.dest.rglob("*.jpg"))
    print(f"{args.dest}: {args.n:,} photos ({made:,} made now, {seconds:.0f} s), "
          f"{size / 2**30:.2f} GiB, {size / max(args.n, 1) / 1024:.0f} KiB a photo, from "
          f"{len(sources)} real photos")


if __name__ == "__main__":
    main()
