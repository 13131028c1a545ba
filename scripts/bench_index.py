"""Vector index at scale: every structure the planner can choose, built, tuned and timed on N
codes of real images, against exact search in the same run.

Codes: PCA-256 of random crops (any position, 30 to 100% of the side, mirrored at random,
brightness changed by up to 25%) of the real photos and of Fashion-MNIST images, at 32x32 RGB
(the `pixels` vectors the product's PCA method starts from): real image content, not synthetic
clusters. For each structure: build time (training and adding), memory, recall@10 against
exact search on a sample of the codes at the nprobe the build tuned it to (the product's
rule: the smallest reaching 0.95), and the time of a single query (one at a time, as
`imgsearch query` does; median over --queries) at that nprobe; also the time to load the
index file whole and memory-mapped, and exact search (IndexFlatL2) timed the same way.

    python scripts/bench_index.py --n 1000000 --out docs/results/bench-index-1m

Writes OUT.json and OUT.txt.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from report import single_query_ms, write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.augment import affine, jitter
from imgsearch.datasets import fashion_mnist, photo_files
from imgsearch.images import load_image
from imgsearch.index import GroundTruth, IndexPlan, VectorIndex, plan_index
from imgsearch.methods.baselines import PCAEmbedder

SOURCE_SIDE = 64


def sources(photos: list[Path], fashion: int) -> torch.Tensor:
    """(N, 3, 64, 64) float source images: the photos and some Fashion-MNIST images."""
    imgs = [load_image(p, SOURCE_SIDE)[0] for p in photos]
    if fashion:
        try:
            train, _ = fashion_mnist()
            fm = torch.from_numpy(train.images[:fashion]).float()[:, None] / 255
            fm = torch.nn.functional.interpolate(fm, size=SOURCE_SIDE, mode="bilinear")
            imgs += list((fm.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy() * 255)
                         .astype(np.uint8))
        except Exception as e:  # noqa: BLE001 - the photos alone still make a benchmark
            print(f"no Fashion-MNIST ({e}); photos only", file=sys.stderr)
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


def crops(src: torch.Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 32, 32, 3) uint8 random crops of the sources."""
    pick = torch.from_numpy(rng.integers(len(src), size=n))
    t = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    side = rng.uniform(0.3, 1.0, n)
    x = affine(src[pick], t(side), t(side), t(np.zeros(n)), t(rng.uniform(-1, 1, n) * (1 - side)),
               t(rng.uniform(-1, 1, n) * (1 - side)), torch.from_numpy(rng.random(n) < 0.5))
    one = torch.ones(n)
    x = jitter(x, t(rng.uniform(0.75, 1.25, n)), one, one, torch.zeros(n))
    x = torch.nn.functional.avg_pool2d(x, 2)  # 64 -> 32
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def make_codes(n: int, photos: list[Path], fashion: int, chunk: int = 20000) -> np.ndarray:
    rng = np.random.default_rng(0)
    src = sources(photos, fashion)
    pca = PCAEmbedder(32, 256)
    fit = crops(src, min(n, 50_000), rng)
    pca.fit(lambda: iter([fit]), len(fit))
    out = np.empty((n, pca.dim), np.float32)
    for s in range(0, n, chunk):
        out[s : s + chunk] = pca.encode(crops(src, min(chunk, n - s), rng))
    print(f"{n:,} codes of {len(src)} source images", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--types", default="ivf-flat,ivf-sq8,ivf-pq")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--fashion", type=int, default=20000, help="Fashion-MNIST images as sources")
    ap.add_argument("--photos", type=Path, nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=0, help="faiss threads (0: all cores)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/bench-index"))
    args = ap.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    photos = photo_files(args.photos)
    if not photos:
        raise SystemExit("no photos found; run scripts/fetch_data.sh")
    codes = make_codes(args.n, photos, args.fashion)
    n, d = codes.shape
    ids = np.arange(n, dtype=np.int64) + 1
    rng = np.random.default_rng(1)
    picked = rng.choice(n, args.queries, replace=False)
    queries = codes[picked]
    truth = GroundTruth(queries, own=ids[picked])  # each query's own code left out
    truth.add(codes, ids)

    rows = []
    exact = VectorIndex.empty(d)
    exact.add(codes, ids)
    rows.append({"type": "flat (exact)", "build_s": None, "recall@10": 1.0, "nprobe": None,
                 "bytes": n * (4 * d + 8),  # computed, not a file's size
                 "query_ms": single_query_ms(exact, queries[:200])})
    print(rows[-1], file=sys.stderr, flush=True)
    del exact
    plan0 = plan_index(n, d, 10**15, exact_max=0)
    for t in args.types.split(","):
        plan = IndexPlan(t, plan0.nlist, 64 if t == "ivf-pq" else 0)
        t0 = time.perf_counter()
        train = codes[rng.choice(n, min(n, max(100_000, 39 * plan.nlist)), replace=False)]
        index = VectorIndex.create(plan, d, train)
        index.add(codes, ids)
        recall = index.tune(truth)
        build_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "i.faiss"
            index.save(path)
            size = path.stat().st_size
            del index
            os.sync()
            t0 = time.perf_counter()
            whole = VectorIndex.load(path)
            load_s = time.perf_counter() - t0
            del whole
            t0 = time.perf_counter()
            mapped = VectorIndex.load(path, mmap=True)
            first_ms = single_query_ms(mapped, queries[:1])
            mmap_s = time.perf_counter() - t0
            query_ms = single_query_ms(mapped, queries)
        rows.append({"type": t, "nlist": plan.nlist, "pq_m": plan.pq_m or None,
                     "build_s": build_s, "recall@10": recall, "nprobe": mapped.nprobe,
                     "bytes": size, "load_s": load_s, "mmap_load_and_first_query_s": mmap_s,
                     "first_query_ms": first_ms, "query_ms": query_ms})
        print(rows[-1], file=sys.stderr, flush=True)
        del mapped
    base = rows[0]["query_ms"]
    lines = [f"{n:,} x {d} codes (PCA of crops of real images), {args.queries} single queries, "
             f"faiss threads {faiss.omp_get_max_threads()}",
             f"{'type':<14}{'build s':>9}{'MiB':>8}{'recall@10':>11}{'nprobe':>8}"
             f"{'query ms':>10}{'x exact':>9}{'load s':>8}{'mmap+1st s':>11}"]
    def cell(value, width: int, fmt: str) -> str:  # "-": not measured for this row
        return f"{'-' if value is None else format(value, fmt):>{width}}"

    for r in rows:
        lines.append(f"{r['type']:<14}{cell(r['build_s'], 9, '.1f')}"
                     f"{r['bytes'] / 2**20:>8.0f}{r['recall@10']:>11.4f}"
                     f"{r['nprobe'] or '-':>8}{r['query_ms']:>10.3f}"
                     f"{base / r['query_ms']:>9.1f}{cell(r.get('load_s'), 8, '.2f')}"
                     f"{cell(r.get('mmap_load_and_first_query_s'), 11, '.3f')}")
    text = "\n".join(lines)
    print(text)
    write_report(args.out, text, {"n": n, "dim": d, "rows": rows})


if __name__ == "__main__":
    main()
