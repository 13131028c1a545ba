"""Held-out reconstruction on photos: each learned variant against PCA at the same code size.

The distinct real photos (datasets.distinct_photos) are split as `imgsearch index` splits a
collection: the self-check's held-out images, chosen by a hash of each file's content
(holdout.split), are never trained on; the models train on the rest with the product's own
recipe and budget (scripts/recipes.py, the registry's training settings) and keep the
weights the self-check on the held-out images scores best, as the product does. PCA is
fitted on the same training images. Both draw the held-out images back; the PSNR (dB) is
measured at the pixels baseline's size (32x32: the learned reconstruction box-filtered there,
as 8-bit pixels), as `imgsearch info` measures it, and at the input size for the learned
models. After Hinton and Salakhutdinov, "Reducing the dimensionality of data with neural
networks", Science 2006: a deep autoencoder against PCA at the same code size.

    python scripts/evaluate_reconstruction.py --methods ae,ae-plain --dims 256,32 \
        --out docs/results/reconstruction-photos

Writes OUT.json, OUT.md and OUT.png (held-out originals, then each model's reconstructions).
Fashion-MNIST's figures come from scripts/evaluate_fashion_mnist.py (its PSNR column).
--quick trains a few steps on generated pictures, for tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from recipes import VARIANTS, configs
from report import beside

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.datasets import distinct_photos, generated_photos, photo_files
from imgsearch.fitting import drawn, psnr_of_drawn
from imgsearch.holdout import split
from imgsearch.methods.baselines import PCAEmbedder
from imgsearch.selfcheck import SelfCheck


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, nargs="*", default=None)
    ap.add_argument("--methods", default="ae,ae-plain", help=f"any of {','.join(VARIANTS)}")
    ap.add_argument("--dims", default="256,32", help="code sizes")
    ap.add_argument("--size", type=int, default=64, help="input size (the index default)")
    ap.add_argument("--pixel-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps (default: the product's recipe and budget)")
    ap.add_argument("--show", type=int, default=8, help="held-out images in the picture")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("out/reconstruction"))
    ap.add_argument("--out", type=Path, default=Path("out/reconstruction/results"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    files = [] if args.quick else photo_files(args.photos)
    source = "real photos"
    if not files:
        files, source = generated_photos(args.work / "generated", 40), "generated stand-ins"
    files, images, dropped = distinct_photos(files, args.size)
    keys = [hashlib.blake2b(Path(f).read_bytes(), digest_size=16).hexdigest() for f in files]
    held, rest = split(keys, max_distractors=len(keys))
    train, test = images[rest], images[held]
    print(f"{len(files)} distinct photos ({dropped} dropped as the same picture): "
          f"{len(test)} held out by content hash, {len(train)} to train on", file=sys.stderr)
    rows, shown = [], [("original", test[: args.show])]
    for dim in [int(d) for d in args.dims.split(",")]:
        pca = PCAEmbedder(args.pixel_size, dim)
        pca.fit(lambda: iter([train]), len(train))
        recon = drawn(pca, test)
        rows.append({"method": "pca", "code": dim, "dim": pca.dim,
                     "PSNR": psnr_of_drawn(test, recon, args.pixel_size), "PSNR input": None,
                     "train": None})
        shown.append((f"pca {pca.dim}-d", recon[: args.show]))
        reference = rows[-1]
        for name in [m.strip() for m in args.methods.split(",")]:
            from imgsearch.experiment import train_on_array

            extra = {} if args.steps is None else {"max_steps": args.steps, "min_steps": 0,
                                                   "epochs": 10**6}
            if args.quick:
                extra = {"max_steps": 3, "min_steps": 0, "epochs": 1, "batch_size": 8}
            method, model, tcfg = configs(name, args.size, 3, dim, **extra)
            t0 = time.perf_counter()
            emb, summary = train_on_array(method, model, train, tcfg,
                                          args.work / f"{name}-{dim}.pt",
                                          check=SelfCheck(test, train))
            recon = drawn(emb, test)
            rows.append({"method": name, "code": dim, "dim": dim,
                         "PSNR": psnr_of_drawn(test, recon, args.pixel_size),
                         "PSNR input": psnr_of_drawn(test, recon, args.size),
                         "train": {"steps": summary["steps"], "minutes": summary["minutes"],
                                   "seconds": time.perf_counter() - t0}})
            shown.append((f"{name} {dim}-d", recon[: args.show]))
            r = rows[-1]
            print(f"[{name} {dim}] PSNR {r['PSNR']:.2f} dB (pca {reference['PSNR']:.2f})",
                  file=sys.stderr, flush=True)
    table = ["| method | code size | PSNR at 32x32 (dB) | PSNR at the input size (dB) | "
             "training |", "|---|---|---|---|---|"]
    for r in rows:
        t = r["train"]
        table.append(f"| {r['method']} | {r['dim']} | {r['PSNR']:.2f} | "
                     + ("-" if r["PSNR input"] is None else f"{r['PSNR input']:.2f}") + " | "
                     + (f"{t['steps']} steps, {t['minutes']:.1f} min" if t else "-") + " |")
    meta = {"source": source, "photos": len(files), "held_out": len(test),
            "trained_on": len(train), "command": " ".join(sys.argv)}
    md = "\n".join(table) + (f"\n\n{len(test)} held-out photos of {len(files)} ({source}), "
                             f"{len(train)} trained on.\n")
    print(md)
    beside(args.out, ".md").write_text(md)
    beside(args.out, ".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=1))
    from imgsearch.viz import image_grid, save_png

    save_png(image_grid(shown), beside(args.out, ".png"))


if __name__ == "__main__":
    main()
