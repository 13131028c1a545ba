"""The whole product at scale: `imgsearch index` on N photos, then cold queries; and cold
queries against an index grown to N codes a method.

For each N of --sizes (a folder made by scripts/make_collection.py, made here if missing):
1. `imgsearch index DIR --json` as a child process under `/usr/bin/time -v` (ingest, the
   self-check, training within its budget, encoding, vector index builds): wall time, peak
   resident memory, images/s, the time of each phase from the report, and the disk each part
   of the index takes. The baseline, measured in the same run: a plain draft-decode loop (the
   decoding alone, in 2 processes, as scripts/bench_ingest.py does) over the same photos.
2. Cold queries: a whole `imgsearch query --json` process per method, median of --runs by
   hyperfine, against `python -c "import numpy, faiss"` (the least a query process imports).

--inflate INDEX: a copy of INDEX whose --inflate-methods hold --inflate-n codes each (the real
codes, each repeated with small noise, and catalog rows for them), its vector indexes chosen
and tuned by the product; the same cold queries against it, with --image.

    python scripts/bench_scale.py --sizes 10000,100000 --out docs/results/bench-scale
    python scripts/bench_scale.py --sizes "" --inflate indexes/demo --inflate-n 1000000 \
        --inflate-methods pca --image data/photos/opencv/left01.jpg

Writes OUT.json and OUT.txt.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_query import hyperfine
from report import write_report

from imgsearch.build import load_method
from imgsearch.catalog import INDEXED
from imgsearch.index import GroundTruth, VectorIndex, plan_index
from imgsearch.store import MethodState
from imgsearch.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _plain_decode(path: str) -> int:
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (64, 64))
        im.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    return 1


def plain_loop(files: list[str]) -> float:
    """Seconds for 2 processes to only open, draft-decode, convert and resize every photo."""
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        sum(pool.imap_unordered(_plain_decode, files, chunksize=64))
    return time.perf_counter() - t0


def du(path: Path) -> int:
    """Bytes of a file, or of every file under a folder; 0 if it is not there."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def index_run(photos: Path, index: Path, extra: list[str]) -> dict:
    shutil.rmtree(index, ignore_errors=True)
    cmd = ["/usr/bin/time", "-v", str(BIN / "imgsearch"), "index", str(photos), "--index",
           str(index), "--json", *extra]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode:
        raise SystemExit(f"imgsearch index failed:\n{run.stderr[-3000:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)[1])
    report = json.loads(run.stdout)
    disk = {"pixels.u8": du(index / "pixels.u8"), "catalog.db": du(index / "catalog.db"),
            **{f"methods/{m.name}": du(m) for m in sorted((index / "methods").glob("[!.]*"))},
            "training": du(index / "training"), "total": du(index)}
    return {"wall_s": wall, "peak_rss_mib": peak / 1024, "report": report, "disk": disk}


def inflate(src: Path, dest: Path, n: int, methods: tuple[str, ...]) -> Path:
    """A copy of ``src`` whose ``methods`` hold ``n`` codes each: the real codes, repeated with
    noise of a tenth of their spread, each under a catalog row of the photo it came from (the
    rows are made once, by the first method; every method holds the same ids)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in ("config.json", "catalog.db"):
        shutil.copy2(src / name, dest / name)
    ws = Workspace.open(dest)
    start = ws.catalog.max_id() + 1  # the new rows' first id, the same for every method
    ws.close()
    for i, method in enumerate(methods):
        shutil.copytree(src / "methods" / method, dest / "methods" / method)
        _inflate(dest, method, n, start, rows_too=i == 0)
    return dest


def _inflate(dest: Path, method: str, n: int, start: int, rows_too: bool) -> None:
    ws = Workspace.open(dest)
    ids, codes = load_method(ws, method).index.items()
    order = np.argsort(ids)
    ids, codes = ids[order], codes[order]
    rows = ws.catalog.get_many(ids.tolist())
    rng = np.random.default_rng(0)
    spread = codes.std(0, keepdims=True)
    reps = -(-n // len(ids))
    new_rows, all_ids, all_codes = [], [], []
    for r in range(reps):
        take = min(len(ids), n - r * len(ids))
        if take <= 0:
            break
        if r == 0:
            part_ids, part = ids[:take], codes[:take]
        else:
            part_ids = np.arange(start, start + take)
            start += take
            part = codes[:take] + 0.1 * spread * rng.standard_normal((take, codes.shape[1]))
            if rows_too:  # the catalog rows, made once for every method's codes
                for i, src_id in zip(part_ids, ids[:take]):
                    row = rows[int(src_id)]
                    new_rows.append({"id": int(i), "path": f"{row.path}#copy{r}",
                                     "size": row.size, "mtime": row.mtime, "hash": None,
                                     "width": row.width, "height": row.height,
                                     "format": row.format, "state": INDEXED, "reason": None,
                                     "gen": ws.catalog.gen})
        all_ids.append(part_ids)
        all_codes.append(part.astype(np.float32))
    for s in range(0, len(new_rows), 50_000):
        ws.catalog.upsert_many(new_rows[s : s + 50_000])
    ids, codes = np.concatenate(all_ids), np.concatenate(all_codes)
    plan = plan_index(len(ids), codes.shape[1])
    picked = rng.choice(len(codes), min(len(codes), max(100_000, 39 * plan.nlist)),
                        replace=False)
    train = codes[picked]
    index = VectorIndex.create(plan, codes.shape[1], train)
    index.add(codes, ids)
    truth = GroundTruth(train[:1000], own=ids[picked[:1000]])
    truth.add(codes, ids)
    index.tune(truth)
    folder = dest / "methods" / method
    index.save(folder / ws.INDEX_FILE)
    old = MethodState.load(folder)
    MethodState(old.gen, index.index_type, index.dim, index.ntotal, old.selfcheck,
                old.duplicate_threshold, index.recall, index.nprobe).save(folder)
    ws.close()
    print(f"{method}: {len(ids):,} codes, {index.index_type}, nprobe {index.nprobe}, "
          f"recall@10 {index.recall}", file=sys.stderr, flush=True)


def cold_queries(index: Path, image: Path, methods: list[str], runs: int) -> dict:
    commands = {"import numpy, faiss": f"{sys.executable} -c 'import numpy, faiss'"}
    for m in methods:
        commands[f"query {m}"] = (f"{BIN / 'imgsearch'} query {image} --index {index} "
                                  f"--method {m} --json")
    return hyperfine(commands, runs, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--collections", default="out/collection-{n}",
                    help="folder of each collection ({n}: its size); made if missing")
    ap.add_argument("--indexes", default="out/index-{n}")
    ap.add_argument("--index-args", default="", help="more `imgsearch index` arguments")
    ap.add_argument("--inflate", type=Path, default=None,
                    help="an index whose methods to inflate to --inflate-n codes each (its "
                         "real codes repeated with noise), then time cold queries on it")
    ap.add_argument("--inflate-n", type=int, default=100_000)
    ap.add_argument("--inflate-methods", default="pca,ae")
    ap.add_argument("--image", type=Path, default=None, help="query image for --inflate")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("docs/results/bench-scale"))
    args = ap.parse_args()
    if args.inflate is not None and args.image is None:
        ap.error("--inflate needs --image, the query to time")
    results = {"sizes": {}}
    if args.inflate is not None:
        methods = tuple(args.inflate_methods.split(","))
        dest = args.inflate.with_name(f"{args.inflate.name}-{args.inflate_n}")
        inflate(args.inflate, dest, args.inflate_n, methods)
        results["inflated"] = {"n": args.inflate_n, "index": str(dest),
                               "queries": cold_queries(dest, args.image, list(methods),
                                                       args.runs)}
    for n in [int(s) for s in args.sizes.split(",") if s]:
        photos = Path(args.collections.format(n=n))
        if len(list(photos.rglob("*.jpg"))) < n:
            subprocess.run([sys.executable, str(ROOT / "scripts" / "make_collection.py"),
                            str(n), str(photos)], check=True)
        files = sorted(str(p) for p in photos.rglob("*.jpg"))[:n]
        plain = plain_loop(files)
        index = Path(args.indexes.format(n=n))
        run = index_run(photos, index, args.index_args.split())
        ws = Workspace.open(index)
        methods = ws.built_methods()
        ws.close()
        run["plain_decode_s"] = plain
        run["queries"] = cold_queries(index, Path(files[0]), methods, args.runs)
        results["sizes"][n] = run
        print(json.dumps({n: {k: v for k, v in run.items() if k != "report"}}), file=sys.stderr,
              flush=True)
    text = render(results)
    print(text)
    write_report(args.out, text, results)


def render(results: dict) -> str:
    lines = []
    for n, run in results["sizes"].items():
        rep = run["report"]
        n_img, ingest_s = rep["ingest"]["added"], rep["ingest"]["seconds"]
        lines += [f"{int(n):,} photos: whole `imgsearch index` {run['wall_s']:.0f} s "
                  f"({n_img / run['wall_s']:.0f} img/s; plain decode loop "
                  f"{n_img / run['plain_decode_s']:.0f} img/s, ratio "
                  f"{run['plain_decode_s'] / run['wall_s']:.2f}), peak RSS "
                  f"{run['peak_rss_mib']:.0f} MiB",
                  f"  ingest {ingest_s:.0f} s ({n_img / ingest_s:.0f} img/s, ratio "
                  f"{run['plain_decode_s'] / ingest_s:.2f})"]
        for m in rep["methods"]:
            lines.append(f"  {m['method']:<7} {m['action']:<6} {m['seconds']:7.0f} s  "
                         f"{m['index_type']}")
        lines.append("  disk: " + ", ".join(f"{k} {v / 2**20:,.0f} MiB"
                                            for k, v in run["disk"].items()))
        base = run["queries"]["import numpy, faiss"]["median"]
        lines.append("  cold query (median s): " + ", ".join(
            f"{k.removeprefix('query ')} {v['median']:.2f} ({v['median'] / base:.1f}x)"
            for k, v in run["queries"].items()))
    if "inflated" in results:
        q = results["inflated"]["queries"]
        base = q["import numpy, faiss"]["median"]
        lines.append(f"{results['inflated']['n']:,} codes a method "
                     f"({results['inflated']['index']}): cold query (median s): " + ", ".join(
                         f"{k.removeprefix('query ')} {v['median']:.2f} ({v['median'] / base:.1f}x)"
                         for k, v in q.items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
