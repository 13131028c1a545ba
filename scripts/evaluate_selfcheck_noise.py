"""How much the self-check depends on which photos it holds out: the baselines' scores,
standard errors, duplicate thresholds and query margins over several draws of one collection.

    python scripts/evaluate_selfcheck_noise.py --photos data/photos --draws 10
    python scripts/evaluate_selfcheck_noise.py --fashion 500 --draws 10

Each draw salts the content hash that chooses the held-out images (holdout.split), as another
collection of the same kind of photos would. Per method: the mean score, the spread of the
scores over the draws (their standard deviation: what the standard error should predict), the
mean standard error the self-check reports, and the largest relative move of the duplicate
threshold and of the query margin from their mean. Baselines only: a learned method would need
a training run per draw (docs/RESULTS.md, "Self-check noise", says so).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.copies.calibration import calibrate
from imgsearch.datasets import fashion_mnist, photo_files
from imgsearch.holdout import split
from imgsearch.images import load_image
from imgsearch.methods.baselines import PCAEmbedder, PixelsEmbedder
from imgsearch.selfcheck import SelfCheck


def collection(args) -> tuple[str, np.ndarray, list[str]]:
    """(name, (N, S, S, C) uint8 images, content keys)."""
    if args.fashion:
        train, _ = fashion_mnist(args.fashion_dir)
        x = train.images[: args.fashion][..., None]
        return f"Fashion-MNIST, first {len(x)} images (28x28 grey)", x, [
            im.tobytes().hex()[:64] + str(i) for i, im in enumerate(x)]
    files = photo_files(args.photos)
    x = np.stack([load_image(f, args.size)[0] for f in files])
    return f"{len(files)} photos of {', '.join(map(str, args.photos))} at {args.size} px", x, [
        str(f.relative_to(f.parents[1])) for f in files]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, nargs="*", default=[Path("data/photos")])
    ap.add_argument("--fashion", type=int, default=0, help="use this many Fashion-MNIST images")
    ap.add_argument("--fashion-dir", type=Path, default=None)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    name, x, keys = collection(args)
    pixel_size = min(32, x.shape[1])
    pca = PCAEmbedder(pixel_size, 256)
    pca.fit(lambda: iter([x]), len(x))
    encoders = {"pixels": PixelsEmbedder(pixel_size).encode, "pca": pca.encode}
    runs: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in encoders}
    held_n = []
    for d in range(args.draws):
        held, rest = split(keys, salt="" if d == 0 else f"draw {d}:")
        held_n.append(len(held))
        check = SelfCheck(x[held], x[rest])
        for m, encode in encoders.items():
            score, se = check.measure(encode)
            cal = calibrate(check, encode)
            runs[m].append((score, se, cal.threshold, cal.copy_distances[0]))
    out = {"collection": name, "images": len(x), "draws": args.draws,
           "held_out": held_n, "copies_per_image": int(len(check.queries) / check.held),
           "methods": {}}
    print(f"{name}: {len(x)} images, {args.draws} draws, {held_n[0]} held out x "
          f"{out['copies_per_image']} copies")
    print("| method | mean score | spread of the score (sd over draws) | mean reported "
          "standard error | threshold: largest move | margin: largest move |")
    print("|---|---|---|---|---|---|")
    for m, r in runs.items():
        a = np.array(r)
        move = lambda v: float(np.max(np.abs(v - v.mean())) / v.mean())  # noqa: E731
        row = {"mean": float(a[:, 0].mean()), "sd": float(a[:, 0].std(ddof=1)),
               "se": float(a[:, 1].mean()), "threshold_move": move(a[:, 2]),
               "margin_move": move(a[:, 3]), "scores": a[:, 0].tolist()}
        out["methods"][m] = row
        print(f"| {m} | {row['mean']:.3f} | {row['sd']:.3f} | {row['se']:.3f} | "
              f"{100 * row['threshold_move']:.1f}% | {100 * row['margin_move']:.1f}% |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
