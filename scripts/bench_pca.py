"""Time the PCA fit: imgsearch's PCAEmbedder (torch.pca_lowrank) against faiss.PCAMatrix
(full eigendecomposition), same data, same run, and the variance each keeps.

    python scripts/bench_pca.py --sizes 1200,10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch  # noqa: F401 - imported before timing, so the first fit is not charged for it

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.methods.baselines import PCAEmbedder, pixel_vectors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1200,10000")
    ap.add_argument("--dim", type=int, default=256)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'N':>7} {'faiss s':>8} {'torch s':>8} {'speed-up':>9} {'variance kept':>14}")
    for n in (int(s) for s in args.sizes.split(",")):
        # smooth random 32x32x3 images: a decaying spectrum, like photos
        low = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
        images = low.repeat(8, axis=1).repeat(8, axis=2)
        images = np.clip(images + rng.normal(0, 8, images.shape), 0, 255).astype(np.uint8)
        x = pixel_vectors(images, 32)
        t0 = time.perf_counter()
        exact = faiss.PCAMatrix(x.shape[1], args.dim)
        exact.train(x)
        t_faiss = time.perf_counter() - t0
        ours = PCAEmbedder(32, args.dim)
        t0 = time.perf_counter()
        ours.fit(lambda images=images: iter([images]), n)
        t_torch = time.perf_counter() - t0
        kept = ours.encode(images).var(axis=0).sum() / exact.apply(x).var(axis=0).sum()
        print(f"{n:>7} {t_faiss:>8.2f} {t_torch:>8.2f} {t_faiss / t_torch:>8.1f}x {kept:>14.4f}")


if __name__ == "__main__":
    main()
