"""Photo copy detection: find the original of an edited copy, every method side by side.

The database holds the original photos (plus any --distractors). Every photo gets the same
fixed, seeded set of edited copies (EDITS below); each copy is a query whose one relevant
answer is its original. Reported per edit and overall: recall@1, recall@10 and mAP (with one
relevant item, AP = 1 / rank of the original in the whole ranking).

Two edit families are not among the training augmentations (augment.py), to show what the
codes do with edits they never saw: a perspective warp, and the photo pasted, smaller, into a
larger unrelated picture (NEW_EDITS).

Methods go through the product's own code: files are decoded by ``imgsearch.images.load_image``
at the index input size, encoded by the same embedders, and searched exactly. Learned models
train on the database photos only (never on the edited copies), as ``imgsearch index`` trains
on a collection, holding out a tenth for the self-check (selfcheck.py) that picks the best
weights; the variants are in scripts/recipes.py. Every learned model is also reported with
each retrieval-time processing of scripts/recipes.POSTS (the same weights), the ablation.
``phash`` is imagehash's perceptual hash of the full image, ranked by Hamming distance (ties
broken at random, seeded, so that database order cannot help it).

Every method searches as the product's `imgsearch query` does: with the query's regions too
(images.load_regions, search.search_regions: a crop counts when it beats the whole query by
the method's margin, calibrated on the training photos' self-check); the ``[whole query]``
rows are the same codes searched with the whole query alone (--no-regions: only those).

``--verify``: each product row is also given re-ranked by verification by geometry, as
`imgsearch query` does by default (search.verify_hits: the first 10 candidates, the proven
copies first): the ``[verified]`` rows.

``--holdout``: the models train on one half of the photos (seeded) and the queries are the
edited copies of the other half, photos the models never saw; the database is all of them.

Edits are made on the photo reduced to at most --edit-side pixels on its long side (the
database entry is the original file). Originals that are the same picture as an earlier one
(the same photo stored at several resolutions) are dropped, so every query has one answer.

    python scripts/evaluate_copy_detection.py --steps 3000 --out docs/results/copy-detection

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
from recipes import POSTS, VARIANTS, configs, post_of
from report import beside, choice_line, default_choice

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.copies.matching import load_features
from imgsearch.datasets import distinct_photos, generated_photos, photo_files
from imgsearch.evaluate import average_precision, recall_at_k
from imgsearch.holdout import split
from imgsearch.images import load_regions, open_upright
from imgsearch.methods.baselines import PCAEmbedder, PixelsEmbedder
from imgsearch.methods.postprocess import Processed, database_side_augmentation, processed
from imgsearch.search import VERIFY_TOP, Hit, verify_hits
from imgsearch.selfcheck import SelfCheck

ALL = ("pixels", "pca", "phash", *VARIANTS)


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


def _perspective(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A perspective warp: two neighbouring corners pulled in by 12 to 20% of the side, as
    when a photo of a photo is taken at an angle."""
    w, h = im.size
    d = rng.uniform(0.12, 0.2)
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    side = int(rng.integers(4))  # which edge is the far one
    dst = [list(p) for p in src]
    for k in (side, (side + 1) % 4):
        cx, cy = src[k]
        dst[k] = [cx + (w / 2 - cx) * 2 * d, cy + (h / 2 - cy) * 2 * d]
    # coefficients of the map from output to input pixel, as Image.transform wants them
    a = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(a, float), np.array(src, float).reshape(-1))
    return im.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs),
                        Image.Resampling.BICUBIC)


def _pasted(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo at 55 to 70% of the side of a larger, unrelated generated picture (a smooth
    colour field with shapes, like a page or a screen around it), at a seeded place."""
    f = rng.uniform(0.55, 0.7)
    w, h = round(im.width / f), round(im.height / f)
    base = rng.uniform(0, 255, (3, 4, 3)).astype(np.uint8)
    bg = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(bg)
    for _ in range(5):
        x, y = rng.integers(0, w), rng.integers(0, h)
        r = rng.integers(w // 20, w // 6)
        draw.ellipse((x, y, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    bg.paste(im, (int(rng.integers(0, w - im.width + 1)), int(rng.integers(0, h - im.height + 1))))
    return bg


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
    "perspective": _perspective,
    "pasted into larger": _pasted,
}
NEW_EDITS = ("perspective", "pasted into larger")  # families the training never sees


def edit_file(im: Image.Image, edit: str, rng: np.random.Generator) -> io.BytesIO:
    """The edited copy as a file in memory: JPEG for the JPEG edits, lossless BMP otherwise."""
    out = EDITS[edit](im, rng)
    buf = io.BytesIO()
    out.save(buf, "JPEG" if "JPEG" in edit else "BMP", quality=95)
    buf.seek(0)
    return buf


def held_positions(n: int) -> list[int]:
    """The positions of n training images that the self-check holds out (holdout.split),
    every other one left to train on."""
    return split([f"position {p}" for p in range(n)], max_distractors=n)[0]


def self_check(train: np.ndarray) -> tuple[SelfCheck | None, np.ndarray]:
    """The self-check of the training images (held_positions; None where none is held out)
    and the positions a learned method trains on."""
    held = held_positions(len(train))
    rest = np.array(sorted(set(range(len(train))) - set(held)), dtype=int)
    return (SelfCheck(train[held], train[rest]) if held else None), rest


# -- the methods ---------------------------------------------------------------------------
def learned(name: str, train: np.ndarray, args, report: dict) -> dict[str, object]:
    """Variant ``name`` trained on ``train`` (less its self-check holdout); one embedder per
    retrieval-time processing (the ablation), keyed ``name [post]``, and ``name`` itself."""
    from imgsearch.experiment import train_on_array

    check, rest = self_check(train)
    method, model, tcfg = configs(name, args.size, 3, args.dim, args.widths,
                                  epochs=10**6, min_steps=0, max_minutes=args.minutes,
                                  max_steps=args.steps)
    raw, report["train"] = train_on_array(method, model, train[rest] if check else train, tcfg,
                                          args.work / f"{name}.pt",
                                          args.resume, check, saved=args.saved)
    out = {}
    for label, post in {**POSTS, "": post_of(name)}.items():
        emb = processed(raw, post)
        if isinstance(emb, Processed):
            emb.fit(lambda: iter([train]), len(train))
        out[f"{name} [{label}]" if label else name] = emb
    return out


def rank_codes(emb, db: np.ndarray, regions: np.ndarray, report: dict,
               margin: float | None, dba: int = 0) -> np.ndarray:
    """(Q, N) database positions, nearest first (exact L2 on the codes). ``regions`` is
    (Q, 1 + R, S, S, 3), the whole query first; with a ``margin``, an image's distance is the
    smallest of its distance to the whole query and, plus the margin, to each region (as the
    product's search_regions ranks), else the whole query's alone."""
    q_n = len(regions)
    t0 = time.perf_counter()
    db_codes = emb.encode(db).astype(np.float64)
    if dba:  # the stored codes averaged with their nearest (postprocess.py); queries as they are
        db_codes = database_side_augmentation(db_codes, dba).astype(np.float64)
    shown = regions if margin is not None else regions[:, :1]
    q_codes = emb.encode(shown.reshape(-1, *regions.shape[2:])).astype(np.float64)
    report["encode_ms_per_image"] = (time.perf_counter() - t0) / (len(db) + q_n) * 1e3
    report["dim"] = int(db_codes.shape[1])
    sq = (q_codes * q_codes).sum(1)[:, None] + (db_codes * db_codes).sum(1)[None]
    dist = np.sqrt(np.maximum(sq - 2 * q_codes @ db_codes.T, 0))  # (Q * R', N) L2
    dist = dist.reshape(q_n, shown.shape[1], len(db))
    best = dist[:, 0]
    if margin is not None:
        best = np.minimum(best, dist[:, 1:].min(axis=1) + margin)
    return np.argsort(best, axis=1, kind="stable")


def verified(ranking: np.ndarray, query_features, db_features) -> np.ndarray:
    """``ranking`` with each query's first VERIFY_TOP re-ranked by verification, as
    `imgsearch query` does (search.verify_hits): the proven copies first."""
    out = ranking.copy()
    for q, row in enumerate(ranking):
        hits = [Hit(r, int(i), "", 0.0) for r, i in enumerate(row[:VERIFY_TOP], 1)]
        ranked = verify_hits(query_features(q), hits, len(hits),
                             features_of=lambda h: db_features(h.id))
        out[q, : len(hits)] = [h.id for h in ranked]
    return out


def margin_of(emb, train: np.ndarray) -> float:
    """The product's query margin for these codes: the median distance of an edited copy to
    its original on the self-check of the training photos (fitting.assess)."""
    from imgsearch.copies.calibration import calibrate

    positions = list(range(len(train)))
    held = held_positions(len(train)) or positions[: max(2, len(positions) // 10)]
    rest = sorted(set(positions) - set(held))
    return calibrate(SelfCheck(train[held], train[rest]), emb.encode).copy_distances[0]


def rank_phash(db_files: list, query_files: list, args, report: dict) -> np.ndarray:
    import imagehash

    def hashes(sources):
        out = []
        for src in sources:
            if hasattr(src, "seek"):
                src.seek(0)
            out.append(imagehash.phash(open_upright(src, 1024)).hash.reshape(-1))
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
    main = [r for r in rows if "[" not in r["method"]]
    ablation = [r for r in rows if "[" in r["method"]]
    head = ("| method | dim | recall@1 | recall@10 | mAP | worst edit (recall@1) | "
            "train | encode ms/img |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in main:
        t = r.get("train")
        t = f"{t['steps']} steps, {t['minutes']:.1f} min" if t else "-"
        o = r["overall"]
        worst = min(r["per_edit"], key=lambda e: r["per_edit"][e]["recall@1"])
        lines.append(f"| {r['method']} | {r['dim']} | {o['recall@1']:.4f} | "
                     f"{o['recall@10']:.4f} | {o['mAP']:.4f} | {worst} "
                     f"({r['per_edit'][worst]['recall@1']:.3f}) | {t} | "
                     f"{r['encode_ms_per_image']:.2f} |")
    if ablation:
        posts = ", ".join(f"{k} = {v or 'none'}" for k, v in POSTS.items())
        lines += ["", f"Retrieval-time processing (the same trained weights; {posts}):", "",
                  "| model [processing] | recall@1 | recall@10 | mAP | worst edit |",
                  "|---|---|---|---|---|"]
        for r in ablation:
            o = r["overall"]
            worst = min(r["per_edit"], key=lambda e: r["per_edit"][e]["recall@1"])
            lines.append(f"| {r['method']} | {o['recall@1']:.4f} | {o['recall@10']:.4f} | "
                         f"{o['mAP']:.4f} | {worst} ({r['per_edit'][worst]['recall@1']:.3f}) |")
    for metric in ("recall@1", "recall@10", "mAP"):
        lines += ["", f"{metric} per edit (best in bold; * not among the training edits):", "",
                  "| edit | " + " | ".join(r["method"] for r in main) + " |",
                  "|---|" + "---|" * len(main)]
        for edit in meta["edits"]:
            values = [r["per_edit"][edit][metric] for r in main]
            cells = [(f"**{v:.3f}**" if v == max(values) else f"{v:.3f}") for v in values]
            mark = " *" if edit in NEW_EDITS else ""
            lines.append(f"| {edit}{mark} | " + " | ".join(cells) + " |")
    lines.append(f"\n{meta['database']} database images ({meta['photos']} photos, "
                 f"{meta['distractors']} distractors), {meta['queries']} queries "
                 f"({len(meta['edits'])} edits per query photo"
                 + (f"; models trained on {meta['trained_on']} other photos, never on these"
                    if meta.get("holdout") else "") + f"). Source: {meta['source']}.\n")
    return "\n".join(lines)


def write_tables(rows: list[dict], meta: dict, out: Path) -> str:
    """Write OUT.md and OUT-recall.png; return the markdown."""
    table = markdown(rows, meta)
    beside(out, ".md").write_text(table)
    plot_recall([r for r in rows if "[" not in r["method"]], meta["edits"],
                beside(out, "-recall.png"))
    return table


def plot_recall(rows: list[dict], edits: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.8))
    width = 0.8 / len(rows)
    x = np.arange(len(edits))
    for i, r in enumerate(rows):
        ax.bar(x + i * width, [r["per_edit"][e]["recall@1"] for e in edits], width,
               label=r["method"])
    labels = [e + (" *" if e in NEW_EDITS else "") for e in edits]
    ax.set_xticks(x + 0.4 - width / 2, labels, rotation=30, ha="right")
    ax.set(ylabel="recall@1", ylim=(0, 1.05),
           title="Copy detection: recall@1 per edit (* not among the training edits)")
    ax.legend(ncol=min(len(rows), 5), fontsize=8, loc="lower left")
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
    save_png(contact_sheet(tiles, columns=8), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, nargs="+", default=None,
                    help="folders of photos (default: data/photos, else the Debian folders)")
    ap.add_argument("--distractors", type=Path, nargs="*", default=[],
                    help="folders of extra database images that no query is a copy of")
    ap.add_argument("--methods", default="pixels,pca,phash,ae-plain,ae-edits,ae,vae",
                    help=f"any of {','.join(ALL)}")
    ap.add_argument("--regions", action=argparse.BooleanOptionalAction, default=True,
                    help="search with the query's regions too, as the product does (the "
                         "[whole query] rows are without)")
    ap.add_argument("--verify", action="store_true",
                    help="also re-rank each product row's first candidates by verification "
                         "(the [verified] rows), as `imgsearch query` does by default")
    ap.add_argument("--holdout", action="store_true",
                    help="train on one half of the photos, query with copies of the other")
    ap.add_argument("--size", type=int, default=64, help="index input size, as `imgsearch index`")
    ap.add_argument("--pixel-size", type=int, default=32)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--widths", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=3000, help="training steps per model")
    ap.add_argument("--minutes", type=float, default=0, help="training time cap (0: none)")
    ap.add_argument("--edit-side", type=int, default=1024)
    ap.add_argument("--same-picture", type=float, default=4.0,
                    help="tolerance (0..255) under which two originals are the same picture")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dba", type=lambda v: [int(k) for k in v.split(",") if k], default=[],
                    help="K[,K...]: each learned method again with database-side augmentation "
                         "over its K nearest (its codes L2-normalised)")
    ap.add_argument("--quick", action="store_true", help="generated pictures if none, for tests")
    ap.add_argument("--saved", action="store_true",
                    help="evaluate the saved models in --work as they are, no more training")
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

    files = photo_files(args.photos)
    source = ", ".join(sorted({str(f.parent) for f in files})) or "none"
    if not files:
        if not args.quick:
            raise SystemExit("no photos found; run scripts/fetch_data.sh or give --photos")
        files, source = generated_photos(args.work / "generated", 24), "generated stand-ins"
    files, originals, dropped = distinct_photos(files, args.size, args.same_picture)
    distractor_files, distractors = [], np.empty((0, args.size, args.size, 3), np.uint8)
    if args.distractors:
        distractor_files, distractors, _ = distinct_photos(photo_files(args.distractors),
                                                           args.size, 0.0)

    query_photos = np.arange(len(files))
    train = originals
    if args.holdout:  # train on half, query with copies of the other half
        order = np.random.default_rng(args.seed).permutation(len(files))
        trained, query_photos = np.sort(order[: len(files) // 2]), np.sort(order[len(files) // 2:])
        train = originals[trained]
    print(f"making {len(EDITS)} edits of {len(query_photos)} photos ...", file=sys.stderr,
          flush=True)
    query_files, query_arrays, truth, edit_of = [], [], [], []
    for i in query_photos:
        rng = np.random.default_rng([args.seed, int(i)])
        im = open_upright(files[i], args.edit_side)
        for edit in EDITS:
            buf = edit_file(im, edit, rng)
            query_arrays.append(load_regions(buf, args.size)[0])  # the whole copy, then crops
            buf.seek(0)
            query_files.append(buf)
            truth.append(int(i))
            edit_of.append(edit)
    regions, truth, edit_of = np.stack(query_arrays), np.array(truth), np.array(edit_of)
    queries = regions[:, 0]  # (Q, S, S, 3): the whole copies
    db = np.concatenate([originals, distractors])
    db_files = [*files, *distractor_files]

    rows, kept = [], {}
    features: dict = {}  # ("q", n) or ("db", n) -> matching.Features, computed once

    def feature(kind: str, n: int):
        if (kind, n) not in features:
            if kind == "q":
                query_files[n].seek(0)
            features[kind, n] = load_features(query_files[n] if kind == "q" else db_files[n])
        return features[kind, n]

    def record(label: str, ranking: np.ndarray, report: dict) -> None:
        report |= {"method": label, "overall": score(ranking, truth),
                   "per_edit": {e: score(ranking[edit_of == e], truth[edit_of == e])
                                for e in EDITS}}
        rows.append(report)
        o = report["overall"]
        print(f"[{label}] recall@1 {o['recall@1']:.4f}  recall@10 {o['recall@10']:.4f}  "
              f"mAP {o['mAP']:.4f}", file=sys.stderr, flush=True)

    for m in methods:
        print(f"[{m}] ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if m == "phash":
            report = {}
            ranking = rank_phash(db_files, query_files, args, report)
            record(m, ranking, report | {"seconds": time.perf_counter() - t0})
            continue
        if m in ("pixels", "pca"):
            emb = PixelsEmbedder(args.pixel_size) if m == "pixels" else PCAEmbedder(
                args.pixel_size, args.dim)
            emb.fit(lambda: iter([db]), len(db))
            embedders, report = {m: emb}, {}
        else:
            report = {}
            embedders = learned(m, train, args, report)
        kept[m] = embedders[m]
        for label, emb in embedders.items():
            r = {"train": report["train"]} if label == m and "train" in report else {}
            if label != m:  # the processing ablation: whole queries, as the rows above
                record(label, rank_codes(emb, db, regions, r, None), r)
                continue
            margin = margin_of(emb, train) if args.regions else None
            ranking = rank_codes(emb, db, regions, r, margin)
            record(label, ranking, r | {"margin": margin})
            for k in args.dba if m in VARIANTS and post_of(m).endswith("l2") else ():
                d: dict = {}
                record(f"{label} [dba {k}]", rank_codes(emb, db, regions, d, margin, k), d)
            if args.verify:
                t1 = time.perf_counter()
                record(f"{label} [verified]",
                       verified(ranking, lambda q: feature("q", q), lambda i: feature("db", i)),
                       {"seconds": time.perf_counter() - t1})
            if args.regions:  # and the same codes without the query's regions
                w: dict = {}
                record(f"{label} [whole query]", rank_codes(emb, db, regions, w, None), w)

    meta = {"source": source, "photos": len(files), "distractors": len(distractor_files),
            "database": len(db), "queries": len(queries), "edits": list(EDITS),
            "new_edits": list(NEW_EDITS), "holdout": args.holdout,
            "trained_on": len(train), "dropped_same_picture": dropped,
            "command": " ".join(sys.argv)}
    labelled = {r["method"]: {k: r["overall"][k] for k in ("mAP", "recall@1", "recall@10")}
                for r in rows if r["method"] in kept}
    meta["default"] = default_choice(self_check(train)[0], kept, labelled, "mAP")
    if meta["default"]:
        print(choice_line(meta["default"]))
    print(write_tables(rows, meta, args.out))
    plot_edits(open_upright(files[0], 480), args.seed,
               beside(args.out, "-edits.png"))
    beside(args.out, ".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
