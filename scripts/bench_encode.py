"""Encoding throughput (images/s) of the learned embedders, CPU against GPU, in one run.

Encodes N cached-pixel images ((N, S, S, 3) uint8, as `imgsearch index` reads them from
pixels.u8) with ``LearnedEmbedder`` (the autoencoder's code, the VAE's mu) on the CPU, the
baseline, and on CUDA when there is one, at each --batch-sizes; prints images/s and the ratio
to the CPU at the product's batch size (512). The raw-pixel and PCA embedders are timed too,
for scale. Weights are freshly initialised: throughput does not depend on their values.

    python scripts/bench_encode.py --n 20000 --input-size 64
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from imgsearch.methods.baselines import PCAEmbedder, PixelsEmbedder
from imgsearch.methods.learned import BATCH as PRODUCT_BATCH
from imgsearch.methods.learned import LearnedEmbedder
from imgsearch.models.autoencoder import AEConfig
from imgsearch.models.checkpoint import new_model
from imgsearch.models.vae import VAEConfig


def checkpoint(kind: str, size: int) -> dict:
    cfg = (AEConfig if kind == "ae" else VAEConfig)(input_size=size)
    model = new_model(cfg)
    return {"method": kind, "arch": kind, "model": model.state_dict(), "config": asdict(cfg)}


def rate(encode, images: np.ndarray, repeats: int) -> float:
    """Best images/s over ``repeats`` full passes, after one warm-up pass on a slice."""
    encode(images[:1024])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        codes = encode(images)
        best = max(best, len(codes) / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    s = args.input_size
    images = np.random.default_rng(0).integers(0, 256, (args.n, s, s, 3), np.uint8)
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name() if cuda else "none"
    print(f"torch {torch.__version__}; CPU {torch.get_num_threads()} threads; GPU {gpu}; "
          f"{args.n} images of {s}x{s}x3")
    rows = []

    def report(method: str, device: str, batch: int | str, value: float, base: float) -> None:
        rows.append({"method": method, "device": device, "batch": batch, "images_per_s": value,
                     "ratio": value / base})
        print(f"{method:>6} {device:<5} batch {batch!s:<5} {value:>12,.0f} img/s "
              f"{value / base:>7.2f}x")

    for name, emb in (("pixels", PixelsEmbedder(32)), ("pca", PCAEmbedder(32, 256))):
        if name == "pca":
            emb.fit(lambda: iter([images[:5000]]), 5000)
        v = rate(emb.encode, images, args.repeats)
        report(name, "cpu", "-", v, v)
    for kind in ("ae", "vae"):
        ckpt = checkpoint(kind, s)
        cpu = LearnedEmbedder(ckpt, "cpu", PRODUCT_BATCH)
        base = rate(cpu.encode, images, args.repeats)
        report(kind, "cpu", PRODUCT_BATCH, base, base)
        if cuda:
            for batch in args.batch_sizes:
                emb = LearnedEmbedder(ckpt, "cuda", batch)
                report(kind, "cuda", batch, rate(emb.encode, images, args.repeats), base)
    if args.json:
        args.json.write_text(json.dumps({"cpu_threads": torch.get_num_threads(), "gpu": gpu,
                                         "n": args.n, "input_size": s, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
