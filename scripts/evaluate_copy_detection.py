"""Photo copy detection: find the original of an edited copy, every method side by side.

The database holds the original photos (plus any --distractors). Every photo gets the same
fixed, seeded set of edited copies (EDITS below); each copy is a query whose one relevant
answer is its original. Reported per edit and overall: recall@1, recall@10 and mAP (with one
relevant item, AP = 1 / rank of the original in the whole ranking).

Methods go through the product's own pipeline: files are decoded by ``imgsearch.images.load_image``
at the index input size, encoded by the same embedders, and searched in a ``VectorIndex``.
Learned models are trained on the database photos only (never on the edited copies), as
``imgsearch index`` trains on a collection; ``-edits`` variants train as denoisers of random
photo edits (augment.py), drawn independently of the benchmark's fixed edits. ``phash`` is
imagehash's perceptual hash of the full image, ranked by Hamming distance (ties broken at
random, seeded, so that database order cannot help it).

Edits are made on the photo reduced to at most --edit-side pixels on its long side (the
database entry is the original file). Originals that are the same picture as an earlier one
(the same photo stored at several resolutions) are dropped, so every query has one answer.

    python scripts/evaluate_copy_detection.py --photos data/photos --steps 6000 \
        --out docs/results/copy-detection

Writes OUT.json, OUT.md (tables), OUT-recall.png (recall@1 per edit) and OUT-edits.png (the
edits of one photo). --quick runs on generated pictures when no photos are given, for tests;
--render RESULTS.json only redraws the tables and the recall chart from a finished run.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.errors import ImageLoadError
from imgsearch.evaluate import average_precision, recall_at_k
from imgsearch.images import EXTENSIONS, load_image, open_upright
from imgsearch.index import VectorIndex
from imgsearch.methods.baselines import PCAEmbedder, PixelsEmbedder

#: Learned variants: (architecture, model settings). "ae" and "vae" are the product defaults.
VARIANTS = {
    "ae": ("ae", {}),
    "ae-edits": ("ae", {"denoise": "edits"}),
    "vae": ("vae", {}),
    "vae-edits": ("vae", {"denoise": "edits"}),
}
ALL = ("pixels", "pca", *VARIANTS, "phash")
DEFAULT_PHOTOS = (Path("data/photos"), Path("/usr/share/doc/opencv-doc/examples/data"),
                  Path("/usr/share/backgrounds/mate"))


# -- the edits -----------------------------------------------------------------------------
def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _scale(im: Image.Image, f: float) -> Image.Image:
    return im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))),
                     Image.Resampling.LANCZOS)


def _crop(im: Image.Image, f: float, rng: np.random.Generator | None = None) -> Image.Image:
    """Keep fraction f of each side: centred, or at a seeded random offset when rng is given."""
    w, h = round(im.width * f), round(im.height * f)
    fx, fy = (0.5, 0.5) if rng is None else rng.uniform(0, 1, 2)
    x, y = round((im.width - w) * fx), round((im.height - h) * fy)
    return im.crop((x, y, x + w, y + h))


def _caption(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """White text with a black outline over the lower part of the photo."""
    words = ["Holiday", "Summer", "Family", "Best day", "Trip", "Memories", "Weekend"]
    text = f"{words[rng.integers(len(words))]} {rng.integers(1990, 2027)}"
    size = max(8, im.height // 9)
    try:
        font = ImageFont.load_default(size=size)  # FreeType build of Pillow
    except (TypeError, OSError):
        font = ImageFont.load_default()
    out = im.copy()
    draw = ImageDraw.Draw(out)
    x = int(rng.uniform(0.03, 0.35) * im.width)
    y = int(rng.uniform(0.65, 0.8) * im.height)
    draw.text((x, y), text, font=font, fill="white", stroke_width=max(1, size // 12),
              stroke_fill="black")
    return out


EDITS = {
    "downscale 50%": lambda im, rng: _scale(im, 0.5),
    "downscale 25%": lambda im, rng: _scale(im, 0.25),
    "JPEG q30": lambda im, rng: _jpeg(im, 30),
    "crop 80%": lambda im, rng: _crop(im, 0.8),
    "crop 60%": lambda im, rng: _crop(im, 0.6),
    "flip": lambda im, rng: ImageOps.mirror(im),
    "rotate 10°": lambda im, rng: im.rotate(10, Image.Resampling.BILINEAR),
    "brightness +30%": lambda im, rng: ImageEnhance.Brightness(im).enhance(1.3),
    "contrast -30%": lambda im, rng: ImageEnhance.Contrast(im).enhance(0.7),
    "grayscale": lambda im, rng: im.convert("L").convert("RGB"),
    "caption": _caption,
    "crop+JPEG+brightness": lambda im, rng: ImageEnhance.Brightness(
        _jpeg(_crop(im, 0.8, rng), 40)).enhance(1.3),
}


def edit_file(im: Image.Image, edit: str, rng: np.random.Generator) -> io.BytesIO:
    """The edited copy as a file in memory: JPEG for the JPEG edits, lossless BMP otherwise."""
    out = EDITS[edit](im, rng)
    buf = io.BytesIO()
    out.save(buf, "JPEG" if "JPEG" in edit else "BMP", quality=95)
    buf.seek(0)
    return buf


# -- the photos ----------------------------------------------------------------------------
def find_photos(roots: list[Path]) -> list[Path]:
    files = []
    for root in roots:
        files += [p for p in sorted(root.rglob("*"))
                  if p.is_file() and p.suffix.lower() in EXTENSIONS]
    return files


def generated_photos(folder: Path, n: int) -> list[Path]:
    """Stand-in pictures for --quick: smooth random colour fields with shapes, saved as PNG."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        base = rng.uniform(0, 255, (4, 6, 3)).astype(np.uint8)
        im = Image.fromarray(base).resize((240, 160), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(im)
        for _ in range(4):
            x, y = rng.integers(0, 200), rng.integers(0, 120)
            draw.ellipse((x, y, x + rng.integers(10, 60), y + rng.integers(10, 60)),
                         fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        paths.append(folder / f"gen{i:03d}.png")
        im.save(paths[-1])
    return paths


def same_picture_groups(images: np.ndarray, tol: float) -> np.ndarray:
    """For each image, the index of the first image that is the same picture (mean absolute
    difference of 16x16 grey thumbnails below tol, in 0..255), itself if none."""
    grey = images.astype(np.float32).mean(axis=3)  # (N, S, S)
    n, s = grey.shape[:2]
    f = s // 16
    thumbs = grey.reshape(n, 16, f, 16, f).mean(axis=(2, 4)).reshape(n, -1)
    first = np.arange(n)
    for i in range(n):
        d = np.abs(thumbs[:i] - thumbs[i]).mean(axis=1)
        if len(d) and d.min() < tol:
            first[i] = first[int(d.argmin())]
    return first


# -- the methods ---------------------------------------------------------------------------
def learned_embedder(name: str, db: np.ndarray, args, report: dict):
    from imgsearch.config import TrainConfig
    from imgsearch.models.autoencoder import AEConfig
    from imgsearch.models.vae import VAEConfig
    from imgsearch.pipeline import train_on_array

    arch, settings = VARIANTS[name]
    cls = AEConfig if arch == "ae" else VAEConfig
    cfg = cls(input_size=args.size, channels=3, code_dim=args.dim, **settings,
              **({"widths": tuple(args.widths)} if args.widths else {}))
    tcfg = TrainConfig(epochs=10**6, min_steps=0, max_minutes=args.minutes,
                       max_steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    embedder, report["train"] = train_on_array(arch, cfg, db, tcfg, args.work / f"{name}.pt",
                                               args.resume)
    return embedder


def rank_vectors(name: str, db: np.ndarray, queries: np.ndarray, args,
                 report: dict) -> np.ndarray:
    """(Q, N) database positions, nearest first, for pixels, pca and the learned methods."""
    if name == "pixels":
        emb = PixelsEmbedder(args.pixel_size)
    elif name == "pca":
        emb = PCAEmbedder(args.pixel_size, args.dim)
        emb.fit(lambda: iter([db]), len(db))
    else:
        emb = learned_embedder(name, db, args, report)
    t0 = time.perf_counter()
    db_codes, q_codes = emb.encode(db), emb.encode(queries)
    report["encode_ms_per_image"] = (time.perf_counter() - t0) / (len(db) + len(queries)) * 1e3
    report["dim"] = int(db_codes.shape[1])
    index = VectorIndex.build(db_codes, np.arange(len(db)), exact_threshold=10**9, nprobe=1)
    return index.search(q_codes, len(db))[1]


def rank_phash(db_files: list, query_files: list, args, report: dict) -> np.ndarray:
    import imagehash

    def hashes(sources):
        out = []
        for src in sources:
            bits = imagehash.phash(open_upright(src, 1024)).hash
            out.append(bits.reshape(-1))
        return np.array(out, dtype=bool)  # (N, 64)

    t0 = time.perf_counter()
    db_h, q_h = hashes(db_files), hashes(query_files)
    report["encode_ms_per_image"] = (time.perf_counter() - t0) / (len(db_h) + len(q_h)) * 1e3
    report["dim"] = int(db_h.shape[1])
    hamming = (q_h[:, None, :] != db_h[None, :, :]).sum(axis=2)  # (Q, N)
    shuffle = np.random.default_rng(args.seed).permutation(len(db_h))  # random tie-breaking
    return shuffle[np.argsort(hamming[:, shuffle], axis=1, kind="stable")]


def score(ranking: np.ndarray, truth: np.ndarray) -> dict:
    rel = ranking == truth[:, None]  # (Q, N): exactly one True per row
    ones = np.ones(len(truth))
    return {"recall@1": recall_at_k(rel, ones, 1), "recall@10": recall_at_k(rel, ones, 10),
            "mAP": float(average_precision(rel, ones).mean())}


# -- output --------------------------------------------------------------------------------
def markdown(rows: list[dict], meta: dict) -> str:
    head = "| method | dim | recall@1 | recall@10 | mAP | train | encode ms/img |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        t = r.get("train")
        t = f"{t['epochs']} ep, {t['minutes']:.1f} min" if t else "-"
        o = r["overall"]
        lines.append(f"| {r['method']} | {r['dim']} | {o['recall@1']:.4f} | "
                     f"{o['recall@10']:.4f} | {o['mAP']:.4f} | {t} | "
                     f"{r['encode_ms_per_image']:.2f} |")
    for metric in ("recall@1", "recall@10", "mAP"):
        lines += ["", f"{metric} per edit (best in bold):", "",
                  "| edit | " + " | ".join(r["method"] for r in rows) + " |",
                  "|---|" + "---|" * len(rows)]
        for edit in EDITS:
            values = [r["per_edit"][edit][metric] for r in rows]
            cells = [(f"**{v:.3f}**" if v == max(values) else f"{v:.3f}") for v in values]
            lines.append(f"| {edit} | " + " | ".join(cells) + " |")
    lines.append(f"\n{meta['database']} database images ({meta['photos']} photos, "
                 f"{meta['distractors']} distractors), {meta['queries']} queries "
                 f"({len(EDITS)} edits per photo). Source: {meta['source']}.\n")
    return "\n".join(lines)


def write_tables(rows: list[dict], meta: dict, out: Path) -> str:
    """Write OUT.md and OUT-recall.png; return the markdown."""
    table = markdown(rows, meta)
    out.with_suffix(".md").write_text(table)
    plot_recall(rows, out.with_name(out.name + "-recall.png"))
    return table


def plot_recall(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(rows)
    x = np.arange(len(EDITS))
    for i, r in enumerate(rows):
        ax.bar(x + i * width, [r["per_edit"][e]["recall@1"] for e in EDITS], width,
               label=r["method"])
    ax.set_xticks(x + 0.4 - width / 2, list(EDITS), rotation=30, ha="right")
    ax.set(ylabel="recall@1", ylim=(0, 1.05), title="Copy detection: recall@1 per edit")
    ax.legend(ncol=len(rows), fontsize=8, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_edits(im: Image.Image, seed: int, path: Path) -> None:
    from imgsearch.viz import THUMB, contact_sheet, save_png

    rng = np.random.default_rng(seed)
    tiles = [(im, "original")] + [(Image.open(edit_file(im, e, rng)).convert("RGB"), e)
                                  for e in EDITS]
    for t, _ in tiles:
        t.thumbnail((THUMB, THUMB))
    save_png(contact_sheet(tiles, columns=7), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, nargs="+", default=None,
                    help="folders of photos (default: data/photos, else the Debian folders)")
    ap.add_argument("--distractors", type=Path, nargs="*", default=[],
                    help="folders of extra database images that no query is a copy of")
    ap.add_argument("--methods", default="pixels,pca,ae,ae-edits,vae,phash",
                    help=f"any of {','.join(ALL)}")
    ap.add_argument("--size", type=int, default=64, help="index input size, as `imgsearch index`")
    ap.add_argument("--pixel-size", type=int, default=32)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--widths", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=6000, help="training steps per model")
    ap.add_argument("--minutes", type=float, default=0, help="training time cap (0: none)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--edit-side", type=int, default=1024)
    ap.add_argument("--same-picture", type=float, default=4.0,
                    help="tolerance (0..255) under which two originals are the same picture")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="generated pictures if none, for tests")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("out/copy-detection"))
    ap.add_argument("--out", type=Path, default=Path("out/copy-detection/results"))
    ap.add_argument("--render", type=Path, default=None,
                    help="only redraw OUT.md and OUT-recall.png from this results JSON")
    args = ap.parse_args()
    if args.render:
        saved = json.loads(args.render.read_text())
        write_tables(saved["rows"], saved["meta"], args.out)
        return
    methods = [m.strip() for m in args.methods.split(",")]
    for m in methods:
        if m not in ALL:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(ALL)}")
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    roots = args.photos or [p for p in DEFAULT_PHOTOS if p.is_dir()][:1]
    if args.photos is None and roots == [Path("/usr/share/doc/opencv-doc/examples/data")]:
        roots += [p for p in DEFAULT_PHOTOS[2:] if p.is_dir()]
    files = find_photos([r for r in roots if r.is_dir()])
    source = ", ".join(str(r) for r in roots)
    if not files:
        if not args.quick:
            raise SystemExit(f"no photos found in {source}; run scripts/fetch_data.sh or "
                             "give --photos")
        files, source = generated_photos(args.work / "generated", 24), "generated stand-ins"

    def load_all(paths):
        kept, arrays = [], []
        for p in paths:
            try:
                arrays.append(load_image(p, args.size)[0])
                kept.append(p)
            except ImageLoadError as e:
                print(f"skipping {p}: {e}", file=sys.stderr)
        return kept, np.stack(arrays)

    files, originals = load_all(files)
    first = same_picture_groups(originals, args.same_picture)
    dropped = [(str(files[i]), str(files[first[i]])) for i in range(len(files)) if first[i] != i]
    for d, kept in dropped:
        print(f"same picture as {kept}, dropped: {d}", file=sys.stderr)
    keep = first == np.arange(len(files))
    files, originals = [f for f, k in zip(files, keep) if k], originals[keep]
    distractor_files, distractors = load_all(find_photos(args.distractors)) if \
        args.distractors else ([], np.empty((0, args.size, args.size, 3), np.uint8))

    print(f"making {len(EDITS)} edits of {len(files)} photos ...", file=sys.stderr, flush=True)
    query_files, query_arrays, truth, edit_of = [], [], [], []
    for i, path in enumerate(files):
        rng = np.random.default_rng([args.seed, i])
        im = open_upright(path, args.edit_side)
        for edit in EDITS:
            buf = edit_file(im, edit, rng)
            query_arrays.append(load_image(buf, args.size)[0])
            buf.seek(0)
            query_files.append(buf)
            truth.append(i)
            edit_of.append(edit)
    queries, truth, edit_of = np.stack(query_arrays), np.array(truth), np.array(edit_of)
    db = np.concatenate([originals, distractors])
    db_files = [*files, *distractor_files]

    rows = []
    for m in methods:
        print(f"[{m}] ...", file=sys.stderr, flush=True)
        report: dict = {"method": m}
        t0 = time.perf_counter()
        if m == "phash":
            for buf in query_files:
                buf.seek(0)
            ranking = rank_phash(db_files, query_files, args, report)
        else:
            ranking = rank_vectors(m, db, queries, args, report)
        report["seconds"] = time.perf_counter() - t0
        report["overall"] = score(ranking, truth)
        report["per_edit"] = {e: score(ranking[edit_of == e], truth[edit_of == e]) for e in EDITS}
        rows.append(report)
        o = report["overall"]
        print(f"[{m}] recall@1 {o['recall@1']:.4f}  recall@10 {o['recall@10']:.4f}  "
              f"mAP {o['mAP']:.4f}", file=sys.stderr, flush=True)

    meta = {"source": source, "photos": len(files), "distractors": len(distractor_files),
            "database": len(db), "queries": len(queries), "edits": list(EDITS),
            "dropped_same_picture": dropped, "command": " ".join(sys.argv)}
    print(write_tables(rows, meta, args.out))
    plot_edits(open_upright(files[0], 480), args.seed,
               args.out.with_name(args.out.name + "-edits.png"))
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
