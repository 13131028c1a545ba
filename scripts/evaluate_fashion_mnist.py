"""Fashion-MNIST category retrieval: every method side by side.

The 60,000 training images are the database, the 10,000 test images the queries; a neighbour
is relevant when it has the query's class. Learned models train on the training split only,
each within --minutes. For each method: P@1, P@10, P@100, mAP@100 (AP over the relevant items
in the top 100), mAP over the whole database (classic AP, 6,000 relevant per query), 10-NN
accuracy, training, encoding, index-build and per-query search times.

    python scripts/evaluate_fashion_mnist.py --minutes 8 --out docs/results/fashion-mnist

Writes OUT.json, OUT.md (the table) and OUT-precision.png (precision@k curves).
--quick runs on a small subset (or generated images when Fashion-MNIST is absent) for tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.datasets import Split, fashion_mnist
from imgsearch.errors import ImgSearchError
from imgsearch.evaluate import (
    average_precision,
    knn_accuracy,
    mean_average_precision,
    precision_at_k,
    relevance,
)
from imgsearch.index import VectorIndex
from imgsearch.methods.baselines import PCAEmbedder, PixelsEmbedder

#: Learned variants: (architecture, model settings). "ae" is the default autoencoder.
VARIANTS = {
    "ae": ("ae", {"unpool": "fixed"}),
    "ae-switches": ("ae", {"unpool": "switches"}),
    "ae-mask": ("ae", {"unpool": "fixed", "denoise": "mask", "noise": 0.3}),
    "ae-sparse": ("ae", {"unpool": "fixed", "sparse": "l1", "sparse_weight": 1e-3}),
    "vae": ("vae", {"beta": 1.0}),
    "vae-beta0.1": ("vae", {"beta": 0.1}),
}
ALL = ("pixels", "pca", *VARIANTS)


def synthetic(n_train: int, n_test: int) -> tuple[Split, Split]:
    """Generated stand-in: 10 classes of noisy class templates, for --quick without the data."""
    rng = np.random.default_rng(0)
    templates = rng.uniform(0, 255, (10, 28, 28))

    def make(n):
        y = rng.integers(0, 10, n)
        x = np.clip(templates[y] + rng.normal(0, 60, (n, 28, 28)), 0, 255).astype(np.uint8)
        return Split(x, y)

    return make(n_train), make(n_test)


def embedder_for(name: str, train: Split, args, report: dict):
    """A fitted embedder for one method; learned ones are trained here on ``train`` only."""
    images = train.images[..., None]  # (N, 28, 28, 1)
    if name == "pixels":
        return PixelsEmbedder(28)
    if name == "pca":
        pca = PCAEmbedder(28, args.dim)
        pca.fit(lambda: iter([images]), len(images))
        return pca
    from imgsearch.config import TrainConfig
    from imgsearch.models.autoencoder import AEConfig
    from imgsearch.models.vae import VAEConfig
    from imgsearch.pipeline import train_on_array

    arch, settings = VARIANTS[name]
    cls = AEConfig if arch == "ae" else VAEConfig
    cfg = cls(input_size=28, channels=1, widths=tuple(args.widths), code_dim=args.dim,
              **settings)
    tcfg = TrainConfig(epochs=args.epochs, min_steps=0, max_minutes=args.minutes,
                       batch_size=args.batch_size, lr=args.lr)
    embedder, report["train"] = train_on_array(arch, cfg, images, tcfg,
                                               args.work / f"{name}.pt", args.resume)
    return embedder


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


def evaluate_method(name: str, train: Split, test: Split, args) -> dict:
    report: dict = {"method": name}
    t0 = time.perf_counter()
    emb = embedder_for(name, train, args, report)
    report["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    db = emb.encode(train.images[..., None])
    q = emb.encode(test.images[..., None])
    report["encode_ms_per_image"] = (time.perf_counter() - t0) / (len(db) + len(q)) * 1e3
    report["dim"] = int(db.shape[1])
    t0 = time.perf_counter()
    index = VectorIndex.build(db, np.arange(len(db)), exact_threshold=10**9, nprobe=1)
    report["index_build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for row in q[:200]:
        index.search(row[None], 10)
    report["query_ms"] = (time.perf_counter() - t0) / min(200, len(q)) * 1e3
    _, ids = index.search(q, 100)
    labels = train.labels[ids]
    rel = relevance(labels, test.labels)
    report |= {
        "P@1": precision_at_k(rel, 1), "P@10": precision_at_k(rel, 10),
        "P@100": precision_at_k(rel, 100), "mAP@100": mean_average_precision(rel, k=100),
        "mAP": full_map(index, q, train.labels, test.labels),
        "10-NN accuracy": knn_accuracy(labels, test.labels, 10),
        "precision_curve": [precision_at_k(rel, k) for k in range(1, 101)],
    }
    if args.tsne:
        report["codes_sample"] = q[: args.tsne]
    return report


COLUMNS = ("P@1", "P@10", "P@100", "mAP@100", "mAP", "10-NN accuracy")


def markdown(rows: list[dict], meta: dict) -> str:
    head = ("| method | dim | " + " | ".join(COLUMNS) +
            " | train | encode ms/img | build s | query ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        train = r.get("train")
        t = f"{train['epochs']} ep, {train['minutes']:.1f} min" if train else "-"
        lines.append(f"| {r['method']} | {r['dim']} | " +
                     " | ".join(f"{r[c]:.4f}" for c in COLUMNS) +
                     f" | {t} | {r['encode_ms_per_image']:.3f} | {r['index_build_s']:.2f} | "
                     f"{r['query_ms']:.2f} |")
    return ("\n".join(lines)
            + f"\n\n{meta['database']} database images, {meta['queries']} queries.\n")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.plot(range(1, 101), r["precision_curve"], label=r["method"])
    ax.set(xlabel="k", ylabel="precision@k", title="Fashion-MNIST: same-class precision@k")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tsne(rows: list[dict], labels: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 4.2))
    for ax, r in zip(np.atleast_1d(axes), rows):
        xy = TSNE(2, init="pca", random_state=0).fit_transform(r["codes_sample"])
        ax.scatter(xy[:, 0], xy[:, 1], c=labels[: len(xy)], cmap="tab10", s=2)
        ax.set_title(r["method"])
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="folder of the IDX files")
    ap.add_argument("--download", type=Path, default=None,
                    help="download through torchvision into this folder if not found")
    ap.add_argument("--methods", default="pixels,pca,ae,vae", help=f"any of {','.join(ALL)}")
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget per model")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--tsne", type=int, default=0, help="t-SNE map of this many test codes")
    ap.add_argument("--quick", action="store_true", help="a small subset, for tests")
    ap.add_argument("--resume", action="store_true", help="continue saved training runs")
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
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for m in methods:
        print(f"[{m}] ...", file=sys.stderr, flush=True)
        rows.append(evaluate_method(m, train, test, args))
        r = rows[-1]
        print(f"[{m}] P@10 {r['P@10']:.4f}  mAP@100 {r['mAP@100']:.4f}  mAP {r['mAP']:.4f}",
              file=sys.stderr, flush=True)
    meta = {"source": source, "database": len(train.images), "queries": len(test.images),
            "command": " ".join(sys.argv)}
    table = markdown(rows, meta)
    print(table)
    args.out.with_suffix(".md").write_text(table)
    plot(rows, args.out.with_name(args.out.name + "-precision.png"))
    if args.tsne:
        plot_tsne(rows, test.labels, args.out.with_name(args.out.name + "-tsne.png"))
    for r in rows:
        r.pop("codes_sample", None)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
