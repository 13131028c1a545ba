"""A benchmark library of N distinct photo-like pictures, with known edited copies of a few
percent of them planted among them, and the truth.

    python scripts/make_library.py 10000 --out out/library-10k [--copies 0.03] [--seed 0]

How the pictures are made (``picture``): each from its own random seed, so no two share any
region: a smooth colour field (a 5x4 grid of random colours, bicubic), lit by a random
gradient, with 30 to 60 shapes (ellipses, triangles, rectangles), each filled with a colour
and, for half of them, a random texture (stripes or dots), 10 to 20 lines, and sensor-like
noise. That gives the codes colour and layout, and ORB corners and edges to match, as a
photo does. Sizes vary (640x480, 480x640, 720x480, 600x600), and the files are JPEGs of
quality 88 to 95.

The copies (``EDITS``): a picture cropped to 85% or 70% of its side, turned a quarter,
mirrored, turned 5 degrees, made grey, captioned, given a white border, downscaled to half,
or re-encoded at JPEG quality 40. Every file gets a random name and a random modification time
within a year, so neither the names nor the file times say which file is the original
(originals written first would leak the answer).

Writes OUT/photos/ (the files, in 100 subfolders) and OUT/truth.json: {"pictures": N,
"copies": [{"copy": name, "original": name, "edit": edit}, ...]}. ``--check K`` verifies K
random pairs of distinct pictures (copies.matching, from their files) and reports how many
were proven the same picture: the library is distinct when none is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = ((640, 480), (480, 640), (720, 480), (600, 600))
YEAR = 365 * 24 * 3600


def picture(seed: int) -> Image.Image:
    """A photo-like picture of its own seed (see the module's docstring)."""
    rng = np.random.default_rng([7, seed])
    w, h = SIZES[int(rng.integers(len(SIZES)))]
    field = Image.fromarray(rng.uniform(0, 255, (4, 5, 3)).astype(np.uint8))
    im = field.resize((w, h), Image.Resampling.BICUBIC)
    light = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(0.8, 1.2), w)[None, :, None]
    im = Image.fromarray(np.clip(np.asarray(im) * light, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(30, 61))):
        x, y = int(rng.integers(-20, w)), int(rng.integers(-20, h))
        a, b = int(rng.integers(8, 90)), int(rng.integers(8, 90))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((x, y, x + a, y + b), fill=fill)
        elif kind == 1:
            draw.polygon([(x, y), (x + a, y + int(rng.integers(-20, 20))), (x + 5, y + b)],
                         fill=fill)
        else:
            draw.rectangle((x, y, x + a, y + b), fill=fill)
        if rng.random() < 0.5:  # a texture on it: stripes or dots
            ink = tuple(int(c) for c in rng.integers(0, 256, 3))
            step = int(rng.integers(3, 9))
            if rng.random() < 0.5:
                for k in range(0, a, step):
                    draw.line([(x + k, y), (x + k, y + b)], fill=ink, width=1)
            else:
                for u, v in itertools.product(range(0, a, step), range(0, b, step)):
                    draw.point((x + u, y + v), fill=ink)
    for _ in range(int(rng.integers(10, 21))):
        draw.line([tuple(int(v) for v in rng.integers(0, max(w, h), 2)),
                   tuple(int(v) for v in rng.integers(0, max(w, h), 2))],
                  fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
                  width=int(rng.integers(1, 4)))
    noise = rng.normal(0, rng.uniform(2, 7), (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im) + noise, 0, 255).astype(np.uint8))


def _crop(im: Image.Image, f: float, rng) -> Image.Image:
    w, h = round(im.width * f), round(im.height * f)
    x, y = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
    return im.crop((x, y, x + w, y + h))


def _caption(im: Image.Image, rng) -> Image.Image:
    out = im.copy()
    ImageDraw.Draw(out).text((20, round(im.height * rng.uniform(0.6, 0.85))),
                             "Holiday 2019 - best day", fill="white", stroke_width=2,
                             stroke_fill="black", font_size=30)
    return out


EDITS = {
    "crop 85%": lambda im, rng: _crop(im, 0.85, rng),
    "crop 70%": lambda im, rng: _crop(im, 0.70, rng),
    "quarter turn": lambda im, rng: im.rotate(90, expand=True),
    "mirror": lambda im, rng: ImageOps.mirror(im),
    "rotate 5": lambda im, rng: im.rotate(5, resample=Image.Resampling.BICUBIC),
    "grayscale": lambda im, rng: ImageOps.grayscale(im).convert("RGB"),
    "caption": _caption,
    "border": lambda im, rng: ImageOps.expand(im, border=round(0.06 * im.width), fill="white"),
    "half size": lambda im, rng: im.resize((im.width // 2, im.height // 2),
                                           Image.Resampling.LANCZOS),
    "jpeg 40": lambda im, rng: im,  # saved at quality 40 below
}


def name_of(kind: str, seed: int, k: int = 0) -> str:
    """A random-looking file name that says nothing of what the file is."""
    rng = np.random.default_rng([11, seed, k, len(kind)])
    return f"{int(rng.integers(100)):02d}/IMG_{rng.integers(16 ** 8):08x}.jpg"


def write(job: tuple) -> None:
    """One original, or one edited copy of an original: (out, seed, edit or None, k)."""
    out, seed, edit, k = job
    im = picture(seed)
    rng = np.random.default_rng([13, seed, k])
    quality = int(rng.integers(88, 96))
    if edit is not None:
        im = EDITS[edit](im, rng)
        quality = 40 if edit == "jpeg 40" else quality
    path = Path(out) / name_of("copy" if edit else "photo", seed, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=quality)
    t = 1.6e9 + float(rng.uniform(0, YEAR))  # file times say nothing of the original
    os.utime(path, (t, t))


def check(photos: Path, names: list[str], pairs: int, seed: int) -> dict:
    """Verify ``pairs`` random pairs of distinct pictures from their files."""
    from imgsearch.copies import matching

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(names), (pairs, 2))
    chosen = chosen[chosen[:, 0] != chosen[:, 1]]
    feats = {}

    def f(i: int):
        if i not in feats:
            feats[i] = matching.load_features(photos / names[i])
        return feats[i]

    proven = [(names[a], names[b]) for a, b in chosen if matching.match(f(a), f(b)).same]
    return {"pairs": len(chosen), "proven_same": len(proven), "examples": proven[:5]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", type=int, help="distinct pictures")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--copies", type=float, default=0.03, help="share of pictures copied")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--check", type=int, default=0, help="distinct pairs to verify")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    seeds = args.seed * 10_000_000 + np.arange(args.n)
    copied = rng.choice(args.n, round(args.copies * args.n), replace=False)
    edits = rng.choice(list(EDITS), len(copied))
    photos = args.out / "photos"
    jobs = [(str(photos), int(s), None, 0) for s in seeds]
    jobs += [(str(photos), int(seeds[i]), str(e), 1) for i, e in zip(copied, edits)]
    t0 = time.perf_counter()
    with Pool(args.workers) as pool:
        for done, _ in enumerate(pool.imap_unordered(write, jobs, chunksize=16), 1):
            if done % 1000 == 0:
                print(f"{done}/{len(jobs)} files", file=sys.stderr, flush=True)
    names = [name_of("photo", int(s)) for s in seeds]
    truth = {"pictures": args.n, "seed": args.seed,
             "copies": [{"copy": name_of("copy", int(seeds[i]), 1), "original": names[i],
                         "edit": str(e)} for i, e in zip(copied, edits)]}
    if len({*names, *(c["copy"] for c in truth["copies"])}) != len(jobs):
        raise SystemExit("two files got one name: choose another --seed")
    if args.check:
        truth["check"] = check(photos, names, args.check, args.seed)
        print(f"distinct pairs verified: {truth['check']}", file=sys.stderr)
    (args.out / "truth.json").write_text(json.dumps(truth, indent=1))
    print(f"{len(jobs)} files ({args.n} pictures, {len(copied)} copies) in {photos}, "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
