"""Duplicate finding, measured: pair precision and recall on photos mixed with their edited
copies, against pHash grouping at its best threshold; and grouping time and memory at scale.

1. The distinct real photos and their 12 edited copies each (the copy-detection edits of
   scripts/evaluate_copy_detection.py) are written into one folder and indexed by the product
   (`pipeline.update_index`, the `imgsearch index` defaults, training within --minutes). Each
   method's groups at its default threshold (calibrated on the collection, no labels) are
   scored as pairs: a predicted pair is two files in one group, a true pair two files made
   from the same photo. Each method is also grouped at multiples of its default threshold
   (x0.5 to x3), to show what a better threshold would give; the best of those uses the labels
   and is not a default. pHash (imagehash, 64 bits) is grouped the same way (pairs within a
   Hamming distance, joined by the same complete linkage) at every threshold from 0 to 24, and
   its best F1 is reported.
2. --scale N: grouping N 256-d codes (synthetic: N / 4 photo-like clusters of Gaussian codes
   with planted near-copies) with `copies.groups.find_groups` (a temporary IVF index), timed and
   its peak memory measured in a child process, against exact k-NN search (IndexFlatL2, what
   an exhaustive comparison costs) on the same codes in the same run.

    python scripts/evaluate_duplicates.py --scale 100000 --out docs/results/duplicates

Writes OUT.json and OUT.md. --quick: generated pictures and a small scale, for tests.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from evaluate_copy_detection import EDITS, NEW_EDITS, _crop, edit_file
from PIL import Image
from report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.config import IndexConfig
from imgsearch.copies.candidates import NEIGHBOURS, pairs_within
from imgsearch.copies.groups import (
    Group,
    complete_groups,
    farthest_l2,
    find_groups,
    in_index,
    live_codes,
)
from imgsearch.datasets import distinct_photos, generated_photos, photo_files
from imgsearch.images import open_upright
from imgsearch.pipeline import update_index
from imgsearch.workspace import Workspace

COPY_EDITS = [e for e in EDITS if e not in NEW_EDITS]  # the 12 of the copy-detection benchmark


def _border(im: Image.Image, rng) -> Image.Image:
    """A white border of 8 to 15% of the side (a print scan, a framed share)."""
    from PIL import ImageOps

    return ImageOps.expand(im, border=round(max(im.size) * rng.uniform(0.08, 0.15)), fill="white")


#: The second benchmark (--edits second): edits unlike the project's own, as users report them.
SECOND = {
    "rotate 90°": lambda im, rng: im.rotate(90, expand=True),
    "rotate 180°": lambda im, rng: im.rotate(180),
    "rotate 270°": lambda im, rng: im.rotate(270, expand=True),
    "crop 70%": lambda im, rng: _crop(im, 0.7, rng),
    "crop 50%": lambda im, rng: _crop(im, 0.5, rng),
    "grayscale": EDITS["grayscale"],
    "caption": EDITS["caption"],
    "white border": _border,
    "mirror": EDITS["flip"],
    "screenshot": EDITS["pasted into larger"],
    "downscale 25%": EDITS["downscale 25%"],
    "JPEG q30": EDITS["JPEG q30"],
}
EDIT_SETS = {"project": {e: EDITS[e] for e in COPY_EDITS}, "second": SECOND}


def make_folder(photos: list[Path], folder: Path, side: int, seed: int,
                edits: dict | None = None) -> dict[str, int]:
    """Each photo (re-saved at most ``side`` on its long side) and its edited copies; returns
    file name -> the photo it comes from."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    origin = {}
    for p, path in enumerate(photos):
        im = open_upright(path, side)
        name = f"p{p:03d}-original.jpg"
        im.save(folder / name, "JPEG", quality=95)
        origin[name] = p
        rng = np.random.default_rng([seed, p])
        for e, (label, edit) in enumerate((edits or EDIT_SETS["project"]).items()):
            name = f"p{p:03d}-edit{e:02d}.png"
            edited = (Image.open(edit_file(im, label, rng)) if "JPEG" in label  # as saved
                      else edit(im, rng)).convert("RGB")
            edited.save(folder / name)
            origin[name] = p
    return origin


def pair_scores(groups: list[list[str]], origin: dict[str, int]) -> dict:
    """Pair precision, recall and F1 of predicted groups (lists of file names)."""
    sizes = np.bincount(list(origin.values()))
    true_pairs = int((sizes * (sizes - 1) // 2).sum())
    predicted = correct = 0
    for g in groups:
        src = np.array([origin[n] for n in g])
        predicted += len(g) * (len(g) - 1) // 2
        _, counts = np.unique(src, return_counts=True)
        correct += int((counts * (counts - 1) // 2).sum())
    p = correct / predicted if predicted else 1.0
    r = correct / true_pairs if true_pairs else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "predicted_pairs": predicted, "true_pairs": true_pairs, "groups": len(groups)}


def edit_recall(groups: list[list[str]], edits: list[str], photos: int) -> dict[str, float]:
    """Per edit: the share of the photos whose copy by that edit is grouped with the
    original."""
    where = {n: g for g, names in enumerate(groups) for n in names}
    out = {}
    for e, label in enumerate(edits):
        hits = 0
        for p in range(photos):
            g = where.get(f"p{p:03d}-edit{e:02d}.png")
            hits += g is not None and g == where.get(f"p{p:03d}-original.jpg")
        out[label] = hits / photos
    return out


# -- imagededup, side by side --------------------------------------------------------------
HASHES = ("PHash", "DHash", "WHash", "AHash")  # imagededup's hashes (its CNN needs weights)
HASH_DEFAULT = 10  # imagededup's default max_distance_threshold


def truth_map(origin: dict[str, int]) -> dict[str, list[str]]:
    """imagededup's ground truth: each file -> the other files made from the same photo."""
    by = {}
    for n, p in origin.items():
        by.setdefault(p, []).append(n)
    return {n: sorted(m for m in by[origin[n]] if m != n) for n in origin}


def as_map(groups: list[list[str]], names: list[str]) -> dict[str, list[str]]:
    """Groups as imagededup's retrieved map: each file -> the others of its group."""
    out = {n: [] for n in names}
    for g in groups:
        for n in g:
            out[n] = sorted(m for m in g if m != n)
    return out


def dedup_scores(truth: dict, retrieved: dict) -> dict:
    """imagededup's own evaluate: MAP, nDCG, Jaccard, and pair precision, recall and F1 of
    the duplicate class."""
    from imagededup.evaluation import evaluate

    r = evaluate(truth, retrieved, metric="all")
    p, rc = float(r["precision"][1]), float(r["recall"][1])
    return {"map": float(r["map"]), "ndcg": float(r["ndcg"]), "jaccard": float(r["jaccard"]),
            "precision": p, "recall": rc, "f1": 2 * p * rc / (p + rc) if p + rc else 0.0}


def imagededup_hashes(folder: Path, origin: dict[str, int], step: int = 2) -> dict:
    """Each imagededup hash at its default threshold and at its best (by F1, chosen with the
    labels, among 0 to 32 in ``step``s), scored by imagededup's evaluate."""
    from imagededup import methods

    truth = truth_map(origin)
    out = {}
    for name in HASHES:
        hasher = getattr(methods, name)(verbose=False)
        codes = hasher.encode_images(image_dir=str(folder), num_enc_workers=2)
        sweep = {t: dedup_scores(truth, hasher.find_duplicates(
            encoding_map=codes, max_distance_threshold=t))
            for t in sorted({*range(0, 33, step), HASH_DEFAULT})}
        best = max(sweep, key=lambda t: sweep[t]["f1"])
        out[name] = {"default": {"threshold": HASH_DEFAULT, **sweep[HASH_DEFAULT]},
                     "best": {"threshold": best, **sweep[best]}}
        print(f"[imagededup {name}] {out[name]}", file=sys.stderr, flush=True)
    return out


def keeper_share(groups: list[Group]) -> dict:
    """Of the groups that hold an original, the share whose keeper is it."""
    with_original = [g for g in groups
                     if any(Path(m.path).name.endswith("-original.jpg")
                            for m in (g.keeper, *g.others))]
    right = sum(Path(g.keeper.path).name.endswith("-original.jpg") for g in with_original)
    return {"groups": len(with_original), "original_kept": right,
            "share": right / len(with_original) if with_original else None}


def phash_groups(folder: Path, names: list[str], threshold: int) -> list[list[str]]:
    bits = phash_bits(folder, names)
    dist = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    i, j = np.nonzero(np.triu(dist <= threshold, 1))
    order = np.argsort(dist[i, j], kind="stable")
    groups = complete_groups(len(names), i[order], j[order], threshold,
                             lambda a, b: float(dist[np.ix_(a, b)].max()))
    return [[names[x] for x in g] for g in groups]


SWEEP = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)  # multiples of a method's default threshold


def names_of(groups: list[Group]) -> list[list[str]]:
    return [[Path(x.path).name for x in (g.keeper, *g.others)] for g in groups]


_BITS: dict = {}


def phash_bits(folder: Path, names: list[str]) -> np.ndarray:
    import imagehash

    key = (str(folder), len(names))
    if key not in _BITS:
        _BITS[key] = np.array([imagehash.phash(open_upright(folder / n, 1024)).hash.reshape(-1)
                               for n in names], bool)
    return _BITS[key]


def mixed(args) -> dict:
    files = photo_files(args.photos) if not args.quick else []
    if not files:
        files = generated_photos(args.work / "generated", 10)
    photos, _, dropped = distinct_photos(files, 64)
    folder = args.work / "mixed"
    edits = EDIT_SETS[args.edits]
    origin = make_folder(photos, folder, args.side, args.seed, edits)
    index = args.work / "index"
    shutil.rmtree(index, ignore_errors=True)
    ws = Workspace.create(index, IndexConfig(input_size=32) if args.quick else None)
    training = {"max_minutes": args.minutes} | (
        {"max_steps": 20, "min_steps": 0} if args.quick else {})
    t0 = time.perf_counter()
    update_index(ws, folder, args.methods.split(","), training=training, workers=2)
    out = {"photos": len(photos), "files": len(origin), "edits": list(edits),
           "dropped_same_picture": dropped, "index_seconds": time.perf_counter() - t0,
           "preferred": ws.preferred_method(), "methods": {}}
    out["verified"] = {}
    for m in ws.built_methods():
        t0 = time.perf_counter()
        verified = in_index(ws, m)
        out["verified"][m] = {
            **pair_scores(names_of(verified.groups), origin),
            "imagededup_evaluate": dedup_scores(truth_map(origin),
                                                as_map(names_of(verified.groups), list(origin))),
            "seconds": time.perf_counter() - t0,
            "per_edit": edit_recall(names_of(verified.groups), list(edits), len(photos)),
            "keeper": keeper_share(verified.groups)}
        print(f"[{m} verified] {out['verified'][m]}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        found = in_index(ws, m, verify=False)
        seconds = time.perf_counter() - t0
        _, ids, codes, rows = live_codes(ws, m)  # loaded once for the whole sweep
        sweep = {x: pair_scores(names_of(find_groups(ids, codes, rows,
                                                     found.threshold * x)), origin)
                 for x in SWEEP}
        best = max(sweep, key=lambda x: sweep[x]["f1"])
        out["methods"][m] = {**pair_scores(names_of(found.groups), origin),
                             "threshold": found.threshold,
                             "threshold_from": found.threshold_from, "seconds": seconds,
                             "sweep": {x: [v["precision"], v["recall"]] for x, v in sweep.items()},
                             "best": {"times": best, **sweep[best]}}
        print(f"[{m}] {out['methods'][m]}", file=sys.stderr, flush=True)
    ws.close()
    out["imagededup"] = imagededup_hashes(folder, origin, args.hash_step)
    names = sorted(origin)
    sweep = {h: pair_scores(phash_groups(folder, names, h), origin) for h in range(25)}
    best = max(sweep, key=lambda h: sweep[h]["f1"])
    out["phash"] = {**sweep[best], "threshold": best,
                    "sweep": {h: [s["precision"], s["recall"]] for h, s in sweep.items()}}
    return out


# -- scale ---------------------------------------------------------------------------------
def synthetic_codes(n: int, d: int = 256, seed: int = 0) -> np.ndarray:
    """n codes: clusters of related images (a spread of 1.0 around n / 4 centres) in which
    one in five images has a near-copy (spread 0.05), L2-normalised like the product's codes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 4), d)).astype(np.float32)
    base = centres[rng.integers(len(centres), size=n)] + rng.normal(size=(n, d)).astype(
        np.float32)
    copies = rng.random(n) < 0.2
    src = rng.integers(n, size=n)
    base[copies] = base[src[copies]] + 0.05 * rng.normal(size=(int(copies.sum()), d))
    return base / np.linalg.norm(base, axis=1, keepdims=True)


def _child(n: int, how: str) -> None:
    """Runs in a child process: group (or exactly search) n codes; prints seconds and peak."""
    import faiss

    codes = synthetic_codes(n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if how == "groups":  # what find_groups does, less joining the catalog rows
        i, j, _ = pairs_within(codes, 0.2)
        groups = complete_groups(n, i, j, 0.2, farthest_l2(codes))
        extra = {"groups": len(groups), "pairs": len(i)}
    else:  # exhaustive: exact k-NN of every code
        index = faiss.IndexFlatL2(codes.shape[1])
        index.add(codes)
        index.search(codes, NEIGHBOURS + 1)
        extra = {}
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak / 1024,
                      "codes_mib": codes.nbytes / 2**20,
                      "grew_mib": (peak - before) / 1024, **extra}))


def scale(n: int) -> dict:
    out = {}
    for how in ("groups", "exact"):
        run = subprocess.run([sys.executable, __file__, "--child", how, "--scale", str(n)],
                             capture_output=True, text=True, check=True)
        out[how] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"[{n} codes, {how}] {out[how]}", file=sys.stderr, flush=True)
    out["exact_over_groups"] = out["exact"]["seconds"] / out["groups"]["seconds"]
    return out


def markdown(res: dict) -> str:
    lines = []
    if "mixed" in res:
        m = res["mixed"]
        per = len(m["edits"]) + 1  # files a photo
        lines += [f"{m['photos']} photos and their {len(m['edits'])} edited copies each: "
                  f"{m['files']} files; {m['photos'] * per * (per - 1) // 2} true pairs.", "",
                  "Verified by geometry (the default `imgsearch duplicates`: codes and local "
                  "features propose pairs, copies/candidates.py; matching.py proves them):",
                  "",
                  "| method | pair precision | pair recall | F1 | keeper is the original | "
                  "seconds | worst edit (recall) |", "|---|---|---|---|---|---|---|"]
        for name, v in m["verified"].items():
            worst = min(v["per_edit"], key=v["per_edit"].get)
            k = v["keeper"]
            lines.append(f"| {name} | {v['precision']:.4f} | {v['recall']:.4f} | "
                         f"{v['f1']:.4f} | {k['original_kept']}/{k['groups']} | "
                         f"{v['seconds']:.1f} | {worst} ({v['per_edit'][worst]:.3f}) |")
        lines += ["", "Recall by edit (the copy grouped with its original), verified:", "",
                  "| method | " + " | ".join(m["edits"]) + " |",
                  "|---|" + "---|" * len(m["edits"])]
        for name, v in m["verified"].items():
            lines.append(f"| {name} | " + " | ".join(f"{v['per_edit'][e]:.3f}"
                                                    for e in m["edits"]) + " |")
        lines += ["", "Scored by imagededup's own `evaluate` (pair precision, recall and F1 of "
                  "the duplicate class; MAP, Jaccard), imgsearch's verified groups against "
                  "imagededup's hashes at their default threshold (10) and at their best "
                  "(chosen with the labels):", "",
                  "| method | threshold | precision | recall | F1 | MAP | Jaccard |",
                  "|---|---|---|---|---|---|---|"]
        for name, v in m["verified"].items():
            e = v["imagededup_evaluate"]
            lines.append(f"| imgsearch {name}, verified | default | {e['precision']:.4f} | "
                         f"{e['recall']:.4f} | {e['f1']:.4f} | {e['map']:.4f} | "
                         f"{e['jaccard']:.4f} |")
        for name, h in m.get("imagededup", {}).items():
            for which in ("default", "best"):
                e = h[which]
                lines.append(f"| imagededup {name}, {which} | {e['threshold']} | "
                             f"{e['precision']:.4f} | {e['recall']:.4f} | {e['f1']:.4f} | "
                             f"{e['map']:.4f} | {e['jaccard']:.4f} |")
        lines += ["", "Codes alone (`--no-verify`), and pHash:", "",
                  "| method | threshold | pair precision | pair recall | F1 | groups | "
                  "grouping s |", "|---|---|---|---|---|---|---|"]
        for name, s in m["methods"].items():
            star = " (default)" if name == m["preferred"] else ""
            lines.append(f"| {name}{star} | {s['threshold']:.4f} ({s['threshold_from']}) | "
                         f"{s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | "
                         f"{s['groups']} | {s['seconds']:.2f} |")
        p = m["phash"]
        lines.append(f"| pHash, best threshold | Hamming {p['threshold']} | "
                     f"{p['precision']:.4f} | {p['recall']:.4f} | {p['f1']:.4f} | "
                     f"{p['groups']} | - |")
        lines += ["", "Each method at multiples of its default threshold (precision / recall; "
                  "the best F1 in bold, chosen with the labels):", "",
                  "| method | " + " | ".join(f"x{x:g}" for x in SWEEP) + " |",
                  "|---|" + "---|" * len(SWEEP)]
        for name, s in m["methods"].items():
            cells = []
            for x in SWEEP:
                pr, rc = s["sweep"][x]
                cell = f"{pr:.3f} / {rc:.3f}"
                cells.append(f"**{cell}**" if x == s["best"]["times"] else cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "scale" in res:
        s = res["scale"]
        lines += ["", f"Grouping {res['scale_n']:,} synthetic 256-d codes (child process):", "",
                  "| how | seconds | peak RSS MiB | x faster than exact |",
                  "|---|---|---|---|",
                  "| find_groups (IVF neighbours, complete linkage) | "
                  f"{s['groups']['seconds']:.2f} | "
                  f"{s['groups']['peak_rss_mib']:.0f} | {s['exact_over_groups']:.1f} |",
                  f"| exact k-NN of every code (IndexFlatL2) | {s['exact']['seconds']:.2f} | "
                  f"{s['exact']['peak_rss_mib']:.0f} | 1.0 |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, nargs="*", default=None)
    ap.add_argument("--methods", default="pixels,pca,ae")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--scale", type=int, default=0, help="also time grouping this many codes")
    ap.add_argument("--skip-mixed", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hash-step", type=int, default=2,
                    help="imagededup's thresholds are tried from 0 to 32 in these steps")
    ap.add_argument("--edits", choices=sorted(EDIT_SETS), default="project",
                    help="project: the copy-detection edits; second: quarter turns, crops to "
                    "70 and 50%%, grayscale, captions, white borders, screenshots ...")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("out/duplicates"))
    ap.add_argument("--out", type=Path, default=Path("out/duplicates/results"))
    args = ap.parse_args()
    if args.child:
        _child(args.scale, args.child)
        return
    res: dict = {}
    if not args.skip_mixed:
        res["mixed"] = mixed(args)
    if args.scale:
        res["scale"], res["scale_n"] = scale(args.scale), args.scale
    table = markdown(res)
    print(table)
    write_report(args.out, table, res, table=".md")


if __name__ == "__main__":
    main()
