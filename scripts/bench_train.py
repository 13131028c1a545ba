"""Training throughput (images/s) of the autoencoder and the VAE at the index's input size.

Runs the real training loop (imgsearch.training.train) for a fixed number of steps on random
images (throughput does not depend on content) and reports images/s over the steps after the
first --warmup ones (the GPU is waited for at both ends of the timed span), for each setting,
with its ratio to the first setting of the same model, measured in the same run:
  CPU:  fp32
  CUDA: fp32, bf16 autocast, bf16 + channels_last, bf16 + channels_last + torch.compile

    python scripts/bench_train.py --steps 40 --input-size 64 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from imgsearch.config import TrainConfig
from imgsearch.models.autoencoder import AEConfig
from imgsearch.models.vae import VAEConfig
from imgsearch.training import ArraySource, train


class TimedSource(ArraySource):
    """Records when batches ``marks`` are handed out, after waiting for the GPU to finish every
    step before them (training itself never waits for the GPU between steps)."""

    def __init__(self, images: np.ndarray, marks: tuple[int, int]):
        super().__init__(images)
        self.marks, self.calls, self.times = marks, 0, []

    def get(self, positions: np.ndarray) -> np.ndarray:
        if self.calls in self.marks:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())
        self.calls += 1
        return super().get(positions)


def settings(cuda: bool) -> list[tuple[str, dict]]:
    if not cuda:
        return [("fp32", {"amp": False, "channels_last": False})]
    return [("fp32", {"amp": False, "channels_last": False}),
            ("bf16", {"amp": True, "channels_last": False}),
            ("bf16+channels_last", {"amp": True, "channels_last": True}),
            ("bf16+channels_last+compile", {"amp": True, "channels_last": True,
                                            "compile": True})]


def measure(kind: str, size: int, batch: int, steps: int, warmup: int, extra: dict) -> float:
    n = batch * (steps + 2)
    # batch i (from 0) feeds step i + 1: time steps warmup + 1 .. steps - 1
    data = TimedSource(np.random.default_rng(0).integers(0, 256, (n, size, size, 3), np.uint8),
                       (warmup, steps - 1))
    cfg = (AEConfig if kind == "ae" else VAEConfig)(input_size=size)
    tcfg = TrainConfig(epochs=1, min_steps=0, max_minutes=0, max_steps=steps, batch_size=batch,
                       val_fraction=0.0, **extra)
    with tempfile.TemporaryDirectory() as tmp:
        train(kind, cfg, data, tcfg, Path(tmp) / "c.pt")
    t_first, t_last = data.times
    return batch * (steps - 1 - warmup) / (t_last - t_first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__} on {device}; input {args.input_size}, batch "
          f"{args.batch_size}, {args.steps} steps ({args.warmup} warm-up steps not timed)")
    rows = []
    for kind in ("ae", "vae"):
        base = None
        for name, extra in settings(cuda):
            rate = measure(kind, args.input_size, args.batch_size, args.steps, args.warmup, extra)
            base = base or rate
            rows.append({"model": kind, "setting": name, "images_per_s": rate,
                         "ratio": rate / base})
            print(f"{kind:>4} {name:<28} {rate:>10,.0f} img/s  {rate / base:>5.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
