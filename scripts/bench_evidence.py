"""What the same-picture evidence and the duplicates found at index time cost: `imgsearch
index` of a folder with this code (with the duplicates step, and with --no-duplicates: the
features alone) against the same command of the code before it (a git worktree of
--before), and imagededup's DHash end to end (files to groups) on the same files, all in the
same run; then the size of what is stored.

Each run is a whole process into a fresh index, timed by /usr/bin/time -v (wall clock and
peak memory); the commands take turns, --runs times, and the medians are compared. --methods
(default pixels) keeps the encoding share small, so the ratio shows the features' own cost.

    python scripts/bench_evidence.py --photos out/library-10k/photos --before 034780e \\
        --runs 3 --out docs/results/bench-evidence-10k

Where the folder is a made library (``scripts/make_library.py``: TRUTH, by default
PHOTOS/../truth.json), the groups of the last "now" run are scored against its planted
copies (``library_scores``): pair precision and recall, recall per edit, and the false groups
(a group holding two different pictures) per 10,000 distinct pictures.

Writes OUT.json and OUT.txt.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from report import write_report

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path | None = None) -> dict:
    """Wall seconds and peak resident memory (bytes) of one whole process, run in ``cwd``
    (``python -m`` imports the package of its working folder first)."""
    run = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                         cwd=cwd)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", run.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    parts = [float(p) for p in wall.group(1).split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {"seconds": seconds, "peak_bytes": int(rss.group(1)) * 1024}


def library_scores(groups: list[list[str]], truth: dict, present: set[str]) -> dict:
    """Groups (each a list of names relative to the library's photos folder) scored against
    the library's truth: every copy and its original are one picture, any other two files are
    different pictures. Only the files in ``present`` count (a part of the library)."""
    picture = {n: n for n in present}
    edits: dict[tuple[str, str], str] = {}
    for c in truth["copies"]:
        if c["copy"] in present and c["original"] in present:
            picture[c["copy"]] = c["original"]
            edits[tuple(sorted((c["copy"], c["original"])))] = c["edit"]
    members: dict[str, list[str]] = {}
    for name, pic in picture.items():
        members.setdefault(pic, []).append(name)
    true = {tuple(sorted(p)) for m in members.values() for p in itertools.combinations(m, 2)}
    found, false_groups = set(), 0
    for g in groups:
        g = [n for n in g if n in present]
        found |= {tuple(sorted(p)) for p in itertools.combinations(g, 2)}
        false_groups += len({picture[n] for n in g}) > 1
    hit = found & true
    per_edit: dict[str, list[int]] = {}
    for pair, edit in edits.items():
        per_edit.setdefault(edit, []).append(pair in found)
    return {"pictures": len(members), "true_pairs": len(true), "found_pairs": len(found),
            "precision": len(hit) / max(1, len(found)), "recall": len(hit) / max(1, len(true)),
            "groups": len(groups), "false_groups": false_groups,
            "false_groups_per_10k": false_groups / max(1, len(members)) * 10_000,
            "edit_recall": {e: sum(v) / len(v) for e, v in sorted(per_edit.items())}}


def kept_groups(index: Path, photos: Path) -> list[list[str]]:
    """The groups that `imgsearch index` kept in INDEX/duplicates.json, as names relative to
    ``photos``."""
    kept = json.loads((index / "duplicates.json").read_text())["duplicates"]["groups"]
    return [[str(Path(m["path"]).relative_to(photos)) for m in (g["keeper"], *g["others"])]
            for g in kept]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--before", required=True, help="the git revision before the change")
    ap.add_argument("--methods", default="pixels")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--out", type=Path, default=ROOT / "out/bench-evidence")
    ap.add_argument("--truth", type=Path,
                    help="a made library's truth.json (default: PHOTOS/../truth.json if any)")
    args = ap.parse_args()
    python = sys.executable
    args.photos = args.photos.resolve()
    truth_file = args.truth or args.photos.parent / "truth.json"
    work = Path(tempfile.mkdtemp(prefix="bench-evidence-"))
    before = work / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before),
                    args.before], check=True, capture_output=True)
    try:
        index = [python, "-m", "imgsearch", "index", str(args.photos), "--methods",
                 args.methods, "--workers", str(args.workers), "--index"]
        dhash = [python, "-c", "from imagededup.methods import DHash; DHash(verbose=False)"
                 f".find_duplicates(image_dir={str(args.photos)!r}, recursive=True)"]
        runs: dict[str, list[dict]] = {"before": [], "features": [], "now": [], "dhash": []}
        for r in range(args.runs):
            for name in runs:
                target = work / f"index-{name}"
                shutil.rmtree(target, ignore_errors=True)
                if name == "dhash":
                    runs[name].append(timed(dhash))
                else:
                    extra = ["--no-duplicates"] if name == "features" else []
                    runs[name].append(timed([*index, str(target), *extra],
                                            before if name == "before" else ROOT))
                print(f"run {r + 1} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
        db = sqlite3.connect(work / "index-now" / "catalog.db")
        n, stored, empty, biggest = db.execute(
            "select count(*), sum(length(blob)), sum(blob is null), max(length(blob)) "
            "from features").fetchone()
        db.close()
        catalog_now = (work / "index-now" / "catalog.db").stat().st_size
        catalog_before = (work / "index-before" / "catalog.db").stat().st_size
        scores = None
        if truth_file.is_file():
            present = {str(p.relative_to(args.photos)) for p in args.photos.rglob("*")
                       if p.is_file()}
            scores = library_scores(kept_groups(work / "index-now", args.photos),
                                    json.loads(truth_file.read_text()), present)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(x["seconds"] for x in v) for k, v in runs.items()}
    peak = {k: max(x["peak_bytes"] for x in v) for k, v in runs.items()}
    files = sum(1 for p in args.photos.rglob("*") if p.is_file())
    res = {"photos": str(args.photos), "files": files, "before": args.before,
           "methods": args.methods, "runs": runs, "median_seconds": med, "peak_bytes": peak,
           "ratio_now_before": med["now"] / med["before"],
           "added_seconds": med["now"] - med["before"],
           "added_over_dhash": (med["now"] - med["before"]) / med["dhash"],
           "features_seconds": med["features"] - med["before"],
           "duplicates_seconds": med["now"] - med["features"],
           "features": {"images": n, "none": empty, "mean_bytes": stored / max(1, n - empty),
                        "max_bytes": biggest},
           "catalog_bytes": {"now": catalog_now, "before": catalog_before},
           "library": scores}
    text = "\n".join([
        f"{files:,} files in {args.photos}; imgsearch index --methods {args.methods}, "
        f"--workers {args.workers}; median of {args.runs} whole processes (/usr/bin/time -v)",
        f"  before ({args.before}):     {med['before']:8.1f} s   "
        f"peak {peak['before'] / 2**30:.2f} GiB",
        f"  features, --no-duplicates: {med['features']:8.1f} s   "
        f"peak {peak['features'] / 2**30:.2f} GiB   ratio {med['features'] / med['before']:.2f}",
        f"  now (features, duplicates): {med['now']:8.1f} s   peak {peak['now'] / 2**30:.2f} GiB"
        f"   ratio {res['ratio_now_before']:.2f}",
        f"  imagededup DHash:      {med['dhash']:8.1f} s   peak {peak['dhash'] / 2**30:.2f} GiB",
        f"  added: {res['added_seconds']:.1f} s = {res['added_over_dhash']:.2f} x DHash end "
        f"to end (features {res['features_seconds']:.1f} s, duplicates "
        f"{res['duplicates_seconds']:.1f} s)",
        f"  stored: {n:,} images ({empty} without features), mean "
        f"{res['features']['mean_bytes'] / 1024:.1f} KiB, max {biggest / 1024:.1f} KiB; "
        f"catalog.db {catalog_before / 2**20:.1f} MiB before, {catalog_now / 2**20:.1f} MiB now"])
    if scores:
        text += (f"\n  groups vs {truth_file.name}: {scores['groups']} groups, pair precision "
                 f"{scores['precision']:.3f}, recall {scores['recall']:.3f} "
                 f"({scores['true_pairs']} true pairs), false groups {scores['false_groups']} "
                 f"({scores['false_groups_per_10k']:.1f} per 10,000 pictures)\n  recall per "
                 "edit: " + ", ".join(f"{e} {r:.2f}" for e, r in scores["edit_recall"].items()))
    print(text)
    write_report(args.out, text, res)


if __name__ == "__main__":
    main()
