"""Benchmark `imgsearch index --engine ray` against `--engine local` on one machine.

Both engines index the same folder of N distinct real JPEGs into fresh indexes, in the same
run, as whole `imgsearch index --methods pixels,pca` processes (start-up, and for Ray starting
a local Ray instance, included); the page cache is warmed first. It prints images/s of the
whole command and of its ingest phase (scan to last catalog row, as the command reports it)
for each engine, and the ratio ray / local, and writes OUT.json and OUT.txt. The Ray run's
ingest phase includes starting (or joining) Ray; that start-up, as the engine logs it, is also
shown on its own, with the ingest rate without it.

The photos: every JPEG of at least --min-megapixels under --photos, re-saved with a different
small crop for each copy (scripts/bench_ingest.py's collection), or --folder as it is.

    python scripts/bench_ray.py --photos data/photos --n 10000        # the real benchmark
    python scripts/bench_ray.py --photos data/photos --n 100 --out /tmp/bench-ray   # a trial

By default each Ray run starts its own local Ray instance (`--ray-address local`, all cores);
--ray-address ADDR uses a running cluster instead (then Ray's start-up is not counted).

`--driver N` measures instead what one driver can absorb, however many workers feed it: an
engine that returns ready-made worker results (distinct pixels and hashes) at once for N empty
files, so that only the driver's part of ingest is timed (scan, pixel-cache writes and fsyncs,
catalog upserts), at the cache's input size:

    python scripts/bench_ray.py --driver 100000 --out /tmp/bench-driver
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import make_collection, source_jpegs  # the same photos
from report import write_report

from imgsearch.engine import LocalEngine
from imgsearch.ingest import ingest
from imgsearch.workspace import Workspace


class Instant(LocalEngine):
    """Reads nothing: every task's result is ready, as if a cluster of any size returned it."""

    def read(self, tasks, workers=None):
        record = tasks[0][1] ** 2 * 3 if tasks else 0
        pixels = np.random.default_rng(0).integers(0, 256, record, dtype=np.uint8).tobytes()
        for i, (path, *_rest) in enumerate(tasks):
            yield {"path": path, "size": 0, "mtime": 0.0, "hash": f"{i:032x}",
                   "pixels": pixels, "width": 640, "height": 480, "format": "JPEG"}


def driver_ceiling(n: int, work: Path) -> dict:
    """Photos/s the driver's part of ingest absorbs (ingest with the Instant engine)."""
    folder = work / f"empty{n}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"d{i // 1000:04d}").mkdir(exist_ok=True)
        (folder / f"d{i // 1000:04d}" / f"{i:08d}.jpg").touch()
    index = work / "index-driver"
    shutil.rmtree(index, ignore_errors=True)
    ws = Workspace.create(index)
    try:
        t0 = time.perf_counter()
        report = ingest(folder, ws.catalog, ws.cache, engine=Instant())
        seconds = time.perf_counter() - t0
    finally:
        ws.close()
    assert report.added == n, report
    return {"photos": n, "seconds": seconds, "img_s": n / seconds,
            "input_size": ws.config.input_size,
            "cache_mib_s": n * ws.cache.record / seconds / 2**20}


def run_index(folder: Path, index: Path, engine: str, workers: int, address: str | None
              ) -> dict:
    """One whole `imgsearch index` process on a fresh index: wall seconds and what it says."""
    shutil.rmtree(index, ignore_errors=True)
    cmd = [sys.executable, "-m", "imgsearch", "-v", "index", str(folder), "--index", str(index),
           "--methods", "pixels,pca", "--engine", engine]
    if workers:
        cmd += ["--workers", str(workers)]
    if engine == "ray":
        cmd += ["--ray-address", address or "local"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"imgsearch index --engine {engine} failed:\n{proc.stderr}")
    summary = re.search(r"(\d+) files, (\d+) new.*?(\d+) failed \(([\d.]+)s\)", proc.stderr,
                        re.S)
    ready = re.search(r"Ray ready in ([\d.]+) s", proc.stderr)
    return {"engine": engine, "seconds": seconds, "files": int(summary.group(1)),
            "new": int(summary.group(2)), "failed": int(summary.group(3)),
            "ingest_seconds": float(summary.group(4)),
            "ray_start_seconds": float(ready.group(1)) if ready else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=Path("data/photos"),
                    help="source photos for the collection")
    ap.add_argument("--folder", type=Path, default=None,
                    help="index this folder as it is instead of making a collection")
    ap.add_argument("--n", type=int, default=10_000, help="photos in the collection")
    ap.add_argument("--min-megapixels", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=0,
                    help="reading processes (local) and read tasks at once (ray); 0: all cores")
    ap.add_argument("--ray-address", default=None,
                    help="a running Ray cluster (default: a new local instance per run)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/bench-ray"),
                    help="writes OUT.json and OUT.txt")
    ap.add_argument("--driver", type=int, default=0, metavar="N",
                    help="measure only what the driver absorbs, for N files (see above)")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_ray_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.driver:
        result = driver_ceiling(args.driver, work)
        text = (f"driver alone: {result['photos']} photos in {result['seconds']:.1f} s = "
                f"{result['img_s']:,.0f} photos/s ({result['cache_mib_s']:.0f} MiB/s of "
                f"{result['input_size']}x{result['input_size']} pixels into the cache, "
                f"catalog rows committed 256 at a time); {platform.machine()}, "
                f"{os.cpu_count()} cores")
        print(text)
        write_report(args.out, text, result, indent=2)
        return
    if args.folder is not None:
        folder, source = args.folder, f"the folder {args.folder}"
    else:
        sources = source_jpegs(args.photos, int(args.min_megapixels * 1e6))
        if not sources:
            raise SystemExit(f"no JPEG of {args.min_megapixels} megapixels under {args.photos}")
        folder = work / f"n{args.n}"
        make_collection(sources, args.n, folder)
        source = (f"{args.n} distinct JPEGs made from the {len(sources)} JPEGs of at least "
                  f"{args.min_megapixels:g} MP under {args.photos}")
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    for f in files:  # warm the page cache so both engines read from memory
        f.read_bytes()
    print(f"{len(files)} files ({source}); scratch {work}", file=sys.stderr)

    rows = [run_index(folder, work / f"index-{engine}", engine, args.workers, args.ray_address)
            for engine in ("local", "ray")]
    for r in rows:
        r["img_s"] = r["new"] / r["seconds"]
        r["ingest_img_s"] = r["new"] / r["ingest_seconds"]
        r["ingest_after_start_img_s"] = r["new"] / max(
            r["ingest_seconds"] - r["ray_start_seconds"], 0.1)
    local, ray = rows
    result = {
        "photos": len(files), "source": source, "workers": args.workers or os.cpu_count(),
        "cpus": os.cpu_count(), "ray_address": args.ray_address or "local (started per run)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "rows": rows,
        "ratio_whole": ray["img_s"] / local["img_s"],
        "ratio_ingest": ray["ingest_img_s"] / local["ingest_img_s"],
        "ratio_ingest_after_start": ray["ingest_after_start_img_s"] / local["ingest_img_s"],
    }

    lines = [f"{len(files)} files ({source}); {result['machine']}; "
             f"workers {result['workers']}; Ray: {result['ray_address']}",
             f"{'engine':>6} {'whole s':>9} {'whole img/s':>12} {'ingest s':>9} "
             f"{'ingest img/s':>13} {'Ray start s':>12} {'ingest img/s after start':>25} "
             f"{'failed':>7}"]
    for r in rows:
        lines.append(f"{r['engine']:>6} {r['seconds']:>9.1f} {r['img_s']:>12.1f} "
                     f"{r['ingest_seconds']:>9.1f} {r['ingest_img_s']:>13.1f} "
                     f"{r['ray_start_seconds']:>12.1f} {r['ingest_after_start_img_s']:>25.1f} "
                     f"{r['failed']:>7}")
    lines.append(f"ray / local: whole command {result['ratio_whole']:.2f}, ingest phase "
                 f"{result['ratio_ingest']:.2f}, ingest phase after Ray's start "
                 f"{result['ratio_ingest_after_start']:.2f} (1.00: no overhead)")
    text = "\n".join(lines)
    print(text)
    write_report(args.out, text, result, indent=2)


if __name__ == "__main__":
    main()
