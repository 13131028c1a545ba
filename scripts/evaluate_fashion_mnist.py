"""Fashion-MNIST category retrieval: every method side by side.

The 60,000 training images are the database, the 10,000 test images the queries; a neighbour
is relevant when it has the query's class. Learned models train on the training split only
(less 300 images held out for the self-check that picks the best weights), each within
--steps and --minutes; the variants are in scripts/recipes.py, and every learned model is also
reported with each retrieval-time processing of recipes.POSTS (the same weights: the
ablation). For each method: P@1, P@10, P@100, mAP@100 (AP over the relevant items in the top
100), mAP over the whole database (classic AP, 6,000 relevant per query; main rows only),
10-NN accuracy, PSNR of the test images' reconstructions (dB, 8-bit pixels; the methods that
draw images back: PCA and the learned ones, never trained on the test images), training,
encoding, index-build and per-query search times. ``phash`` is
imagehash's perceptual hash, ranked by Hamming distance. --dba K[,K...] adds, for each
learned main row, the same codes with database-side augmentation over K neighbours
(imgsearch.methods.postprocess.database_side_augmentation): the database codes only, so a
query costs the same.

    python scripts/evaluate_fashion_mnist.py --steps 4000 --tsne 5000 \
        --out docs/results/fashion-mnist

Writes OUT.json, OUT.md (the table), OUT-precision.png (precision@k curves), OUT-tsne.png
(--tsne: t-SNE maps of test codes, the best learned code beside pixels) and
OUT-neighbours.png (queries and their nearest neighbours by pixels and by the best code).
--quick runs on a small subset (or generated images when Fashion-MNIST is absent) for tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from recipes import POSTS, VARIANTS, configs, post_of
from report import beside, choice_line, default_choice

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch import methods as registry
from imgsearch.datasets import Split, fashion_mnist
from imgsearch.errors import ImgSearchError
from imgsearch.evaluate import (
    average_precision,
    knn_accuracy,
    mean_average_precision,
    precision_at_k,
    relevance,
)
from imgsearch.fitting import drawn_psnr
from imgsearch.index import VectorIndex
from imgsearch.methods.baselines import PCAEmbedder, PixelsEmbedder
from imgsearch.methods.postprocess import (
    Processed,
    database_side_augmentation,
    processed,
    unwrap,
)
from imgsearch.selfcheck import SelfCheck

ALL = ("pixels", "pca", "phash", *VARIANTS)


def synthetic(n_train: int, n_test: int) -> tuple[Split, Split]:
    """Generated stand-in: 10 classes of noisy class templates, for --quick without the data."""
    rng = np.random.default_rng(0)
    templates = rng.uniform(0, 255, (10, 28, 28))

    def make(n):
        y = rng.integers(0, 10, n)
        x = np.clip(templates[y] + rng.normal(0, 60, (n, 28, 28)), 0, 255).astype(np.uint8)
        return Split(x, y)

    return make(n_train), make(n_test)


def self_check(train: Split, args) -> tuple[SelfCheck | None, np.ndarray]:
    """The self-check of the training images (``args.held`` held out, the first 3,000 others
    as distractors; None without any held out) and the positions a learned method trains on."""
    images = train.images[..., None]
    order = np.random.default_rng(0).permutation(len(images))
    held, rest = order[: args.held], order[args.held :]
    return (SelfCheck(images[held], images[rest[:3000]]) if args.held else None), rest


def embedders_for(name: str, train: Split, args, report: dict) -> dict[str, object]:
    """Fitted embedders for one method, by row label: one for a baseline; for a learned
    variant, trained here on ``train`` only, one per retrieval-time processing (``name [post]``)
    and ``name`` itself with its own."""
    images = train.images[..., None]  # (N, 28, 28, 1)
    if name == "pixels":
        return {name: PixelsEmbedder(28)}
    if name == "pca":
        pca = PCAEmbedder(28, args.dim)
        pca.fit(lambda: iter([images]), len(images))
        return {name: pca}
    from imgsearch.experiment import train_on_array

    check, rest = self_check(train, args)
    method, model, tcfg = configs(name, 28, 1, args.dim, args.widths, epochs=10**6,
                                  min_steps=0, max_minutes=args.minutes, max_steps=args.steps)
    raw, report["train"] = train_on_array(method, model, images[np.sort(rest)], tcfg,
                                          args.work / f"{name}.pt",
                                          args.resume, check, saved=args.saved)
    out = {}
    batches = lambda: (images[i : i + 4096] for i in range(0, len(images), 4096))  # noqa: E731
    for label, post in {**POSTS, "": post_of(name)}.items():
        emb = processed(raw, post)
        if isinstance(emb, Processed):
            emb.fit(batches, len(images))
        out[f"{name} [{label}]" if label else name] = emb
    return out


class PHash:
    """imagehash's perceptual hash as 64 0/1 dimensions: L2 on them ranks as Hamming does."""

    dim = 64

    def encode(self, images: np.ndarray) -> np.ndarray:
        import imagehash
        from PIL import Image

        return np.array([imagehash.phash(Image.fromarray(im.squeeze(-1))).hash.reshape(-1)
                         for im in images], dtype=np.float32)


def full_map(index: VectorIndex, queries: np.ndarray, db_labels: np.ndarray,
             q_labels: np.ndarray, chunk: int = 500) -> float:
    """mAP over the whole database ranking, a chunk of queries at a time."""
    n = index.ntotal
    per_class = np.bincount(db_labels, minlength=int(db_labels.max()) + 1)
    aps = []
    for s in range(0, len(queries), chunk):
        _, ids = index.search(queries[s : s + chunk], n)
        rel = relevance(db_labels[ids], q_labels[s : s + chunk])
        aps.append(average_precision(rel, n_relevant=per_class[q_labels[s : s + chunk]]))
    return float(np.concatenate(aps).mean())


def evaluate_embedder(label: str, emb, train: Split, test: Split, args, report: dict,
                      dba: int = 0) -> dict:
    """``dba``: the database codes averaged with their ``dba`` nearest (itself included)
    before searching (database_side_augmentation); the queries as they are."""
    report = {"method": label, **report}
    t0 = time.perf_counter()
    db = emb.encode(train.images[..., None])
    q = emb.encode(test.images[..., None])
    report["encode_ms_per_image"] = (time.perf_counter() - t0) / (len(db) + len(q)) * 1e3
    if dba:
        t0 = time.perf_counter()
        db = database_side_augmentation(db, dba)
        report["dba_s"] = time.perf_counter() - t0
    inner = unwrap(emb) if hasattr(emb, "encode") else emb
    report["PSNR"] = (drawn_psnr(inner, test.images[..., None], 28)  # test images: held out
                      if hasattr(inner, "reconstruct") and "[" not in label else float("nan"))
    report["dim"] = int(db.shape[1])
    t0 = time.perf_counter()
    index = VectorIndex.exact(db, np.arange(len(db)))
    report["index_build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for row in q[:200]:
        index.search(row[None], 10)
    report["query_ms"] = (time.perf_counter() - t0) / min(200, len(q)) * 1e3
    if label == "phash":  # ties in Hamming distance: broken at random, seeded
        shuffle = np.random.default_rng(0).permutation(len(db))
        index = VectorIndex.exact(db[shuffle], shuffle)
    _, ids = index.search(q, 100)
    labels = train.labels[ids]
    rel = relevance(labels, test.labels)
    report |= {
        "P@1": precision_at_k(rel, 1), "P@10": precision_at_k(rel, 10),
        "P@100": precision_at_k(rel, 100), "mAP@100": mean_average_precision(rel, k=100),
        "mAP": (full_map(index, q, train.labels, test.labels)
                if "[" not in label or dba or args.whole_ablation else float("nan")),
        "10-NN accuracy": knn_accuracy(labels, test.labels, 10),
        "precision_curve": [precision_at_k(rel, k) for k in range(1, 101)],
        "neighbours": ids[: args.show, :8].tolist(),
    }
    if args.tsne:
        report["codes_sample"] = q[: args.tsne]
    return report


COLUMNS = ("P@1", "P@10", "P@100", "mAP@100", "mAP", "10-NN accuracy", "PSNR")


def markdown(rows: list[dict], meta: dict) -> str:
    head = ("| method | dim | " + " | ".join(COLUMNS) +
            " | train | encode ms/img | build s | query ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        train = r.get("train")
        t = f"{train['steps']} steps, {train['minutes']:.1f} min" if train else "-"
        lines.append(f"| {r['method']} | {r['dim']} | " +
                     " | ".join("-" if r[c] != r[c] else f"{r[c]:.4f}" for c in COLUMNS) +
                     f" | {t} | {r['encode_ms_per_image']:.3f} | {r['index_build_s']:.2f} | "
                     f"{r['query_ms']:.2f} |")
    d = meta.get("default")
    picked = f"\n{choice_line(d)}\n" if d else ""
    return ("\n".join(lines)
            + f"\n\n{meta['database']} database images, {meta['queries']} queries.\n" + picked)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if "[" not in r["method"]:
            ax.plot(range(1, 101), r["precision_curve"], label=r["method"])
    ax.set(xlabel="k", ylabel="precision@k", title="Fashion-MNIST: same-class precision@k")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def best_learned(rows: list[dict]) -> dict | None:
    """The learned main row with the highest P@10."""
    learned = [r for r in rows if r.get("train") and "[" not in r["method"]]
    return max(learned, key=lambda r: r["P@10"]) if learned else None


def plot_tsne(rows: list[dict], labels: np.ndarray, path: Path) -> None:
    """t-SNE maps of the test codes: pixels, PCA and the best learned code side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    best = best_learned(rows)
    shown = [r for r in rows if r["method"] in ("pixels", "pca")] + ([best] if best else [])
    fig, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown), 4.6))
    for ax, r in zip(np.atleast_1d(axes), shown):
        xy = TSNE(2, init="pca", random_state=0).fit_transform(r["codes_sample"])
        ax.scatter(xy[:, 0], xy[:, 1], c=labels[: len(xy)], cmap="tab10", s=2)
        ax.set_title(f"{r['method']} (P@10 {r['P@10']:.3f})")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_neighbours(rows: list[dict], train: Split, test: Split, path: Path) -> None:
    """Each of a few queries, then its 8 nearest neighbours by pixels and by the best learned
    code; a neighbour of another class is marked with a red square in its corner."""
    from imgsearch.viz import image_grid, save_png

    best, pixels = best_learned(rows), next(r for r in rows if r["method"] == "pixels")
    grid = []
    for q in range(len(pixels["neighbours"])):
        for r in (pixels, best):
            tiles = [np.repeat(test.images[q][..., None], 3, -1)]
            for i in r["neighbours"][q]:
                tile = np.repeat(train.images[i][..., None], 3, -1).copy()
                if train.labels[i] != test.labels[q]:
                    tile[:5, :5] = (230, 20, 20)
                tiles.append(tile)
            grid.append((f"{r['method']}", np.stack(tiles)))
    save_png(image_grid(grid, scale=3, label_width=110), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="folder of the IDX files")
    ap.add_argument("--download", type=Path, default=None,
                    help="download through torchvision into this folder if not found")
    ap.add_argument("--methods", default="pixels,pca,phash,ae-plain,ae-edits,ae,vae",
                    help=f"any of {','.join(ALL)}")
    ap.add_argument("--steps", type=int, default=4000, help="training steps per model")
    ap.add_argument("--minutes", type=float, default=20.0, help="training time cap per model")
    ap.add_argument("--held", type=int, default=300, help="images held out for the self-check")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--tsne", type=int, default=0, help="t-SNE map of this many test codes")
    ap.add_argument("--show", type=int, default=6, help="queries in the neighbours picture")
    ap.add_argument("--whole-ablation", action="store_true",
                    help="the whole-ranking mAP of every retrieval-time processing too (slow)")
    ap.add_argument("--quick", action="store_true", help="a small subset, for tests")
    ap.add_argument("--saved", action="store_true",
                    help="evaluate the saved models in --work as they are, no more training")
    ap.add_argument("--resume", action="store_true", help="continue saved training runs")
    ap.add_argument("--dba", type=lambda v: [int(k) for k in v.split(",") if k], default=[],
                    help="also each unit-length code with database-side augmentation over "
                         "this many neighbours (itself included); a comma list")
    ap.add_argument("--work", type=Path, default=Path("out/fashion-mnist"))
    ap.add_argument("--out", type=Path, default=Path("out/fashion-mnist/results"))
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",")]
    for m in methods:
        if m not in ALL:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(ALL)}")
    try:
        train, test = fashion_mnist(args.data, args.download)
        source = "Fashion-MNIST"
    except ImgSearchError:
        if not args.quick:
            raise
        train, test, source = *synthetic(600, 100), "generated stand-in (no Fashion-MNIST)"
    if args.quick:
        train, test = Split(train.images[:600], train.labels[:600]), Split(
            test.images[:100], test.labels[:100])
        args.held = min(args.held, 60)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows, kept = [], {}
    for m in methods:
        print(f"[{m}] ...", file=sys.stderr, flush=True)
        report: dict = {}
        t0 = time.perf_counter()
        embedders = {"phash": PHash()} if m == "phash" else embedders_for(m, train, args, report)
        fit_s = time.perf_counter() - t0
        kept.update({label: emb for label, emb in embedders.items() if "[" not in label})
        for label, emb in embedders.items():
            extra = {"fit_s": fit_s, **({"train": report["train"]} if label == m and report
                                        else {})}
            rows.append(evaluate_embedder(label, emb, train, test, args, extra))
            r = rows[-1]
            print(f"[{label}] P@10 {r['P@10']:.4f}  mAP@100 {r['mAP@100']:.4f}  "
                  f"mAP {r['mAP']:.4f}  PSNR {r['PSNR']:.2f}", file=sys.stderr, flush=True)
            if "[" in label or not isinstance(emb, Processed) or "l2" not in emb.steps:
                continue
            for k in args.dba:
                rows.append(evaluate_embedder(f"{label} [dba {k}]", emb, train, test, args,
                                              {}, dba=k))
                r = rows[-1]
                print(f"[{r['method']}] P@10 {r['P@10']:.4f}  mAP@100 {r['mAP@100']:.4f}  "
                      f"mAP {r['mAP']:.4f}", file=sys.stderr, flush=True)
    meta = {"source": source, "database": len(train.images), "queries": len(test.images),
            "command": " ".join(sys.argv)}
    product = {r["method"]: {"mAP": r["mAP"], "P@10": r["P@10"]} for r in rows
               if r["method"] in registry.names()}
    meta["default"] = default_choice(self_check(train, args)[0], kept, product, "mAP")
    table = markdown(rows, meta)
    print(table)
    beside(args.out, ".md").write_text(table)
    plot(rows, beside(args.out, "-precision.png"))
    if best_learned(rows) and any(r["method"] == "pixels" for r in rows):
        plot_neighbours(rows, train, test, beside(args.out, "-neighbours.png"))
    if args.tsne:
        plot_tsne(rows, test.labels, beside(args.out, "-tsne.png"))
    for r in rows:
        r.pop("codes_sample", None)
    beside(args.out, ".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
