"""Training throughput (images/s) of the autoencoder and the VAE at the index's input size.

Runs the real training loop (imgsearch.training.train) for a fixed number of steps on random
images (throughput does not depend on content) and reports images/s between the progress
reports after the first --warmup steps (each report waits for the device), for each setting,
with its ratio to the first setting of the same model, measured in the same run:
  CPU:  the loop as it was (images from the host each step), the images held in memory as
        one tensor (the GPU path, on the CPU); then the default recipe's two views a step, in
        float32 NCHW (before issue 22), channels_last, and channels_last with bf16 autocast
        (the default where the CPU has native bf16: training.cpu_has_bf16); last, the
        method's recipe as the registry has it now (ae: issue 23's refined decoder and
        clean term)
  CUDA: the loop as it was (host images, batch 64, bf16 + channels_last), then the images
        held on the GPU, a larger batch, torch.compile, and the default recipe's two views

    python scripts/bench_train.py --steps 200 --input-size 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from imgsearch import methods
from imgsearch.config import TrainConfig
from imgsearch.models.autoencoder import AEConfig
from imgsearch.models.vae import VAEConfig
from imgsearch.training import ArraySource, train

HOST = {"data_on_device": "never"}
HELD = {"data_on_device": "always"}


def settings(cuda: bool, batch: int, kind: str) -> list[tuple[str, dict, dict]]:
    """(name, train settings, model settings) for model ``kind``; the first is the loop as it
    was, the last on the CPU the method's own settings, as `imgsearch index` trains it."""
    if not cuda:
        fp32 = {"amp": False, "channels_last": False}  # the CPU loop before issue 22
        recipe = {"invariance": "vicreg"}  # the default `ae` recipe: two views a step
        return [(f"host images, batch {batch}", {**HOST, **fp32}, {}),
                (f"images held in memory, batch {batch}", {**HELD, **fp32}, {}),
                ("two views (the default recipe), fp32 NCHW (before)", {**HELD, **fp32},
                 recipe),
                ("two views, channels_last", {**HELD, "amp": False}, recipe),
                ("two views, channels_last + bf16 autocast (issue 22)", {**HELD}, recipe),
                ("the registry's recipe today, channels_last + bf16", {**HELD},
                 dict(methods.get(kind).settings))]
    old = {"amp": True, "channels_last": True, "batch_size": 64}
    return [("host images, batch 64 (the loop as it was)", {**HOST, **old}, {}),
            ("images on the GPU, batch 64", {**HELD, **old}, {}),
            ("images on the GPU, batch 512", {**HELD, **old, "batch_size": 512}, {}),
            ("images on the GPU, batch 1024", {**HELD, **old, "batch_size": 1024}, {}),
            ("GPU, batch 1024, compile", {**HELD, **old, "batch_size": 1024, "compile": True},
             {}),
            ("GPU, batch 1024, the recipe's two views (VICReg)",
             {**HELD, **old, "batch_size": 1024}, {"invariance": "vicreg"})]


def measure(kind: str, size: int, batch: int, steps: int, warmup: int, extra: dict,
            model: dict) -> float:
    batch = extra.pop("batch_size", batch)
    data = ArraySource(np.random.default_rng(0).integers(0, 256, (batch * 8, size, size, 3),
                                                         np.uint8))
    cfg = (AEConfig if kind == "ae" else VAEConfig)(input_size=size, **model)
    tcfg = TrainConfig(epochs=10**6, min_steps=0, max_minutes=0, max_steps=steps,
                       batch_size=batch, val_fraction=0.0, schedule="constant", **extra)
    marks: list[tuple[int, float]] = []

    def on_progress(step: int, total: int, loss: float, rate: float) -> None:
        marks.append((step, time.perf_counter()))  # loss was read: the device has caught up

    with tempfile.TemporaryDirectory() as tmp:
        train(kind, cfg, data, tcfg, Path(tmp) / "c.pt", on_progress)
    timed = [(s, t) for s, t in marks if s > warmup]
    if len(timed) < 2:
        raise SystemExit("too few progress reports: raise --steps")
    (s0, t0), (s1, t1) = timed[0], timed[-1]
    return batch * (s1 - s0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--models", default="ae,vae", help="comma-separated: ae, vae")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__} on {device}; input {args.input_size}, "
          f"{args.steps} steps ({args.warmup} warm-up steps not timed)")
    rows = []
    for kind in args.models.split(","):
        base = None
        for name, extra, model in settings(cuda, args.batch_size, kind):
            rate = measure(kind, args.input_size, args.batch_size, args.steps, args.warmup,
                           dict(extra), model)
            base = base or rate
            rows.append({"model": kind, "setting": name, "images_per_s": rate,
                         "ratio": rate / base})
            print(f"{kind:>4} {name:<50} {rate:>10,.0f} img/s  {rate / base:>5.2f}x",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": device, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
