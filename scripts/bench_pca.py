"""Time the PCA fit: imgsearch's PCAEmbedder (torch.pca_lowrank) against faiss.PCAMatrix
(full eigendecomposition), same data, same run, and the variance each keeps.

    python scripts/bench_pca.py --sizes 1200,10000

With --fit-samples, how many images PCA needs to be fitted on (PCAEmbedder.fit_sample): on
Fashion-MNIST, PCA fitted on each seeded sample of the 60,000 training images, the fit's
seconds and the same-category P@10 of 2,000 test queries among all 60,000 (the largest
sample is the baseline of the same run):

    python scripts/bench_pca.py --fit-samples 2048,4096,8192,20000
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


def fit_samples(sizes: list[int], dim: int, queries: int = 2000) -> None:
    from imgsearch.datasets import fashion_mnist
    from imgsearch.evaluate import precision_at_k, relevance

    train, test = fashion_mnist()
    db, q = train.images[..., None], test.images[:queries, ..., None]
    rows = []
    for n in sizes:
        pca = PCAEmbedder(28, dim)
        pick = np.random.default_rng(0).choice(len(db), n, replace=False)
        t0 = time.perf_counter()
        pca.fit(lambda pick=pick: iter([db[pick]]), n)
        seconds = time.perf_counter() - t0
        _, found = faiss.knn(pca.encode(q), pca.encode(db), 10)
        rows.append((n, seconds, precision_at_k(relevance(train.labels[found],
                                                          test.labels[:queries]), 10)))
    best = rows[-1]
    print(f"{'fit sample':>10} {'fit s':>7} {'P@10':>7} {'P@10 - largest':>15} {'time ratio':>11}")
    for n, seconds, p10 in rows:
        print(f"{n:>10} {seconds:>7.2f} {p10:>7.4f} {p10 - best[2]:>+15.4f} "
              f"{seconds / best[1]:>10.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1200,10000")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--fit-samples", default=None,
                    help="comma list: PCA's P@10 on Fashion-MNIST by fit sample size")
    args = ap.parse_args()
    if args.fit_samples:
        fit_samples([int(s) for s in args.fit_samples.split(",")], args.dim)
        return
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
