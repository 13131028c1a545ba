"""Benchmark the FAISS index: IVF recall@10 and query speed against exact search, same run.

Two code sets:
  synthetic       N seeded 256-d vectors around 1,000 centres (default N = 200,000)
  fashion-mnist   PCA-256 codes of Fashion-MNIST's 60,000 training images as the database and
                  its 10,000 test images as queries (needs --fashion-mnist DIR with the IDX files)
For each nprobe it prints recall@10 of IndexIVFFlat against IndexFlatL2 (the reference) and
both query rates, single query at a time (as `imgsearch query` does) and in batches.

    python scripts/bench_index.py --fashion-mnist data/fashion-mnist
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.datasets import fashion_mnist
from imgsearch.index import VectorIndex
from imgsearch.methods.baselines import PCAEmbedder


def synthetic(n: int, q: int, d: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, d)).astype(np.float32) * 2
    x = centres[rng.integers(0, 1000, n + q)] + rng.normal(size=(n + q, d)).astype(np.float32)
    return x[:n], x[n:]


def fashion_pca(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """PCA-256 codes (imgsearch's PCA embedder) of the training and test images."""
    train, test = fashion_mnist(folder)
    pca = PCAEmbedder(28, 256)
    pca.fit(lambda: iter([train.images[..., None]]), len(train.images))
    return pca.encode(train.images[..., None]), pca.encode(test.images[..., None])


def rate(index, queries: np.ndarray, k: int, one_at_a_time: bool) -> float:
    t0 = time.perf_counter()
    if one_at_a_time:
        for row in queries[:500]:
            index.search(row[None], k)
        return 500 / (time.perf_counter() - t0)
    index.search(queries, k)
    return len(queries) / (time.perf_counter() - t0)


def bench(name: str, x: np.ndarray, q: np.ndarray, nprobes: list[int]) -> None:
    n = len(x)
    ids = np.arange(n)
    t0 = time.perf_counter()
    exact = VectorIndex.build(x, ids, exact_threshold=10**12, nprobe=1)
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    ivf = VectorIndex.build(x, ids, exact_threshold=0, nprobe=1)
    t_ivf = time.perf_counter() - t0
    _, truth = exact.index.search(q, 10)
    single_exact, batch_exact = rate(exact.index, q, 10, True), rate(exact.index, q, 10, False)
    print(f"\n{name}: {n} x {x.shape[1]}-d, {len(q)} queries; IVF nlist {ivf.index.nlist}; "
          f"build exact {t_exact:.1f}s, IVF {t_ivf:.1f}s")
    print(f"exact IndexFlatL2: {single_exact:,.0f} single queries/s, {batch_exact:,.0f} batched/s")
    print(f"{'nprobe':>7} {'recall@10':>10} {'single q/s':>11} {'x exact':>8} "
          f"{'batched q/s':>12} {'x exact':>8}")
    for nprobe in nprobes:
        ivf.index.nprobe = nprobe
        _, got = ivf.index.search(q, 10)
        recall = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(got, truth)])
        s, b = rate(ivf.index, q, 10, True), rate(ivf.index, q, 10, False)
        print(f"{nprobe:>7} {recall:>10.4f} {s:>11,.0f} {s / single_exact:>8.1f} "
              f"{b:>12,.0f} {b / batch_exact:>8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--nprobe", default="8,16,32,64")
    ap.add_argument("--fashion-mnist", type=Path, default=None)
    args = ap.parse_args()
    nprobes = [int(p) for p in args.nprobe.split(",")]
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
          f"{faiss.get_num_gpus()} GPUs")
    bench("synthetic", *synthetic(args.n, args.queries), nprobes)
    if args.fashion_mnist:
        bench("fashion-mnist PCA-256", *fashion_pca(args.fashion_mnist), nprobes)


if __name__ == "__main__":
    main()
