"""Small collections of versions: the user who points `imgsearch index` at a folder of 50 to 500
pictures, several versions of each.

From the real photos (same pictures at several resolutions dropped), each collection takes
N / V distinct pictures and writes V versions of each into a folder: resized to 45%, cropped
to portrait (3:4) and to landscape (16:9) at a seeded offset, re-saved as JPEG at quality 35,
and slightly recoloured (warmer, more saturated); or, with ``--versions sequence``, a camera-like
sequence of five shots panning across it (``_shot``). The folder is indexed by the product itself
(`pipeline.update_index`, the `imgsearch index` defaults, training within --minutes), and
every file queries the rest: its relevant answers are the other V - 1 versions of its picture.
Reported per method and for the index's default query method: recall@1 (the nearest other
file is a version of the same picture) and mAP over the whole ranking, with each method's
self-check score, for every collection size.

    python scripts/evaluate_versions.py --sizes 50,100,200,500 --out docs/results/versions

Writes OUT.json, OUT.md. --quick runs a tiny collection of generated pictures, for tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from report import beside

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.build import load_method
from imgsearch.config import IndexConfig
from imgsearch.datasets import distinct_photos, generated_photos, photo_files
from imgsearch.evaluate import average_precision
from imgsearch.images import open_upright
from imgsearch.methods import registry as methods_registry
from imgsearch.methods.postprocess import database_side_augmentation
from imgsearch.pipeline import update_index
from imgsearch.workspace import Workspace


def _crop_aspect(im: Image.Image, aspect: float, keep: float, rng) -> Image.Image:
    """The largest crop of width/height ``aspect`` that fits, shrunk to ``keep`` of it."""
    w, h = im.size
    cw, ch = (w, w / aspect) if w / h < aspect else (h * aspect, h)
    cw, ch = cw * keep, ch * keep
    x, y = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    return im.crop((round(x), round(y), round(x + cw), round(y + ch)))


def _warmer(im: Image.Image) -> Image.Image:
    r, g, b = im.split()
    r = r.point(lambda v: min(255, int(v * 1.08)))
    b = b.point(lambda v: int(v * 0.92))
    return ImageEnhance.Color(Image.merge("RGB", (r, g, b))).enhance(1.15)


VERSIONS = {
    "resized": lambda im, rng: im.resize((max(1, round(im.width * 0.45)),
                                          max(1, round(im.height * 0.45))),
                                         Image.Resampling.LANCZOS),
    "portrait": lambda im, rng: _crop_aspect(im, 3 / 4, 0.9, rng),
    "landscape": lambda im, rng: _crop_aspect(im, 16 / 9, 0.9, rng),
    "jpeg-q35": lambda im, rng: im,  # the save below uses quality 35
    "recoloured": lambda im, rng: _warmer(im),
}


def _shot(im: Image.Image, k: int, n: int, rng) -> Image.Image:
    """Shot ``k`` of ``n`` of a camera panning across ``im``'s scene: a window of 65% of each
    side (give or take 5% of zoom) sliding from the left edge to the right one, drifting up or
    down a little, each shot with its own exposure."""
    w, h = im.size
    f = 0.65 * rng.uniform(0.95, 1.05)
    cw, ch = w * f, h * f
    x = (w - cw) * k / (n - 1)
    y = float(np.clip((h - ch) / 2 + rng.uniform(-0.05, 0.05) * h, 0, h - ch))
    out = im.crop((round(x), round(y), round(x + cw), round(y + ch)))
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15))


#: A camera-like sequence: five shots of one scene, the camera panning (``--versions sequence``)
SEQUENCE = {f"shot{k}": (lambda im, rng, k=k: _shot(im, k, 5, rng)) for k in range(5)}
KINDS = VERSIONS | SEQUENCE


def make_collection(photos: list[Path], folder: Path, versions: list[str], seed: int,
                    side: int) -> list[int]:
    """Write every version of every photo into ``folder``; returns the picture of each file in
    sorted-path order."""
    rng = np.random.default_rng(seed)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for p, path in enumerate(photos):
        im = open_upright(path, side)
        for v in versions:
            out = KINDS[v](im, rng)
            out.save(folder / f"p{p:03d}-{v}.jpg", "JPEG", quality=35 if v == "jpeg-q35" else 92)
    return [int(f.name[1:4]) for f in sorted(folder.iterdir())]


def score(codes: np.ndarray, picture: np.ndarray) -> tuple[float, float]:
    """recall@1 and mAP of every file querying all the others (itself left out)."""
    sq = (codes * codes).sum(1)
    d = sq[:, None] + sq[None] - 2 * codes @ codes.T
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :-1]  # itself last: dropped
    rel = picture[order] == picture[:, None]
    n_rel = rel.sum(axis=1)
    return float(rel[:, 0].mean()), float(average_precision(rel, n_rel).mean())


def evaluate(folder: Path, index: Path, methods: list[str], minutes: float, quick: bool,
             dba: list[int] = (), settings: dict | None = None,
             overrides: dict | None = None) -> dict:
    shutil.rmtree(index, ignore_errors=True)
    ws = Workspace.create(index, IndexConfig(input_size=32) if quick else None)
    t0 = time.perf_counter()
    training = ({"max_minutes": minutes} | (overrides or {})
                | ({"max_steps": 20, "min_steps": 0} if quick else {}))
    update_index(ws, folder, methods, training=training, workers=2, settings=settings)
    seconds = time.perf_counter() - t0
    rows = {r.id: r for r in ws.catalog.rows()}
    out = {"files": len(rows), "index_seconds": seconds, "methods": {}}
    for m in ws.built_methods():
        loaded = load_method(ws, m)
        ids = np.array(sorted(rows))
        codes = loaded.index.vectors(ids).astype(np.float32)
        picture = np.array([int(Path(rows[i].path).name[1:4]) for i in ids])
        r1, m_ap = score(codes, picture)
        out["methods"][m] = {"recall@1": r1, "mAP": m_ap, "selfcheck": loaded.state.selfcheck,
                             "shots": (loaded.state.shots or {}).get("score")}
        for k in dba if methods_registry.get(m).post.endswith("l2") else ():
            r1, m_ap = score(database_side_augmentation(codes, k), picture)
            out["methods"][f"{m} [dba {k}]"] = {"recall@1": r1, "mAP": m_ap, "selfcheck": None}
    out["default"], out["default_because"], out["default_lead"] = ws.preference()
    ws.close()
    return out


def markdown(results: list[dict], methods: list[str]) -> str:
    head = "| files | pictures | " + " | ".join(f"{m} R@1 / mAP (self-check / other shots)"
                                                for m in methods)
    lines = [head + " | default | default mAP - pixels mAP |",
             "|" + "---|" * (len(methods) + 4)]  # files, pictures, methods, default, gain
    for r in results:
        cells = []
        for m in methods:
            s = r["methods"].get(m)
            check = f" ({s['selfcheck']:.3f}" if s and s["selfcheck"] is not None else ""
            check += (f" / {s['shots']:.3f})" if check and s.get("shots") is not None
                      else ")" if check else "")
            cells.append(f"{s['recall@1']:.3f} / {s['mAP']:.3f}{check}" if s else "-")
        d = r["methods"][r["default"]]["mAP"] - r["methods"]["pixels"]["mAP"]
        lines.append(f"| {r['files']} | {r['pictures']} | " + " | ".join(cells)
                     + f" | {r['default']} | {d:+.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, nargs="*", default=None)
    ap.add_argument("--sizes", default="50,100,200,500", help="files per collection")
    ap.add_argument("--versions", default=",".join(VERSIONS),
                    help="the versions written of each picture, or \"sequence\": five shots "
                         "of a camera panning across it (SEQUENCE)")
    ap.add_argument("--methods", default="pixels,pca,ae", help="as `imgsearch index --methods`")
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    ap.add_argument("--side", type=int, default=1024, help="long side of the written photos")
    ap.add_argument("--dba", type=lambda v: [int(k) for k in v.split(",") if k], default=[],
                    help="K[,K...]: each learned method's stored codes again with database-side "
                         "augmentation over its K nearest")
    ap.add_argument("--variant", default=None,
                    help="a variant of scripts/recipes.py: its model settings replace the "
                         "learned methods' recipe (its method must be among --methods)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("out/versions"))
    ap.add_argument("--out", type=Path, default=Path("out/versions/results"))
    args = ap.parse_args()
    versions = list(SEQUENCE) if args.versions == "sequence" else args.versions.split(",")
    methods = args.methods.split(",")
    settings = overrides = None
    if args.variant:
        from recipes import VARIANTS

        if args.variant not in VARIANTS:
            raise SystemExit(f"unknown variant {args.variant!r}; one of {', '.join(VARIANTS)}")
        _, settings, overrides, _ = VARIANTS[args.variant]
    files = photo_files(args.photos) if not args.quick else []
    if not files:
        files = generated_photos(args.work / "generated", 12)
    photos, _, dropped = distinct_photos(files, 64)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for n in sizes:
        pictures = min(len(photos), max(2, n // len(versions)))
        chosen = [photos[i] for i in np.random.default_rng(n).permutation(len(photos))
                  [:pictures]]
        folder = args.work / f"collection-{n}"
        make_collection(chosen, folder, versions, seed=n, side=args.side)
        print(f"[{n}] {pictures} pictures x {len(versions)} versions", file=sys.stderr,
              flush=True)
        r = evaluate(folder, args.work / f"index-{n}", methods, args.minutes, args.quick,
                     args.dba, settings, overrides)
        r["pictures"] = pictures
        results.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
    shown = methods + [f"{m} [dba {k}]" for m in methods for k in args.dba
                       if any(f"{m} [dba {k}]" in r["methods"] for r in results)]
    table = markdown(results, shown)
    print(table)
    meta = {"versions": versions, "photos": len(photos), "dropped_same_picture": dropped,
            "minutes": args.minutes, "variant": args.variant, "settings": settings,
            "training": overrides,
            "command": " ".join(sys.argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    beside(args.out, ".md").write_text(table)
    beside(args.out, ".json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
