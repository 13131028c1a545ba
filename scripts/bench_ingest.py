"""Benchmark `imgsearch index` against a plain decode loop on real multi-megapixel JPEGs.

For each collection size N it times, in the same run and with the same number of processes:
  plain      a multiprocessing pool that only opens, draft-decodes, converts and resizes each file
  imgsearch  the whole `imgsearch index --methods pixels,pca` command (scan, hash, decode,
             catalog, pixel cache, PCA fit, codes, FAISS index) as a subprocess, start-up
             included; and its ingest phase alone (scan to last catalog row), as it reports it.
             (Training a learned model is not ingest: it is measured by bench_train.py.)
and prints images/s, the ratios to plain (targets: ingest >= 0.95, the whole command >= 0.8, at
10k photos), and the peak resident memory of the imgsearch process tree (target: flat in N).
With --first-answer, also the seconds from starting `imgsearch index --methods pixels,pca,ae`
to the first `pca` query that answers while `ae` trains (target <= 30 s at 10k photos).

The collection: every JPEG of at least 2 megapixels under --photos (e.g. Debian's
mate-backgrounds), each re-saved many times with a different small crop so that every file has
distinct content (identical copies would be skipped by content hash and flatter the result).
Or --folder: the first N JPEGs (sorted by path) of a collection made by
scripts/make_collection.py, photo-like files of realistic sizes.

    python scripts/bench_ingest.py --photos data/photos --sizes 150,300,600 --workers 2
    python scripts/bench_ingest.py --folder out/collection-10000 --sizes 2500,10000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

SIZE = 64


def plain_decode(path: str) -> int:
    with Image.open(path) as im:
        im.draft("RGB", (SIZE, SIZE))
        im = im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return im.size[0]


def source_jpegs(root: Path, min_pixels: int) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in (".jpg", ".jpeg"):
            with Image.open(p) as im:
                if im.width * im.height >= min_pixels:
                    out.append(p)
    return out


def make_collection(sources: list[Path], n: int, dest: Path) -> list[Path]:
    """n distinct JPEGs: source i % len(sources), cropped by a few pixels that vary with i."""
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        path = dest / f"photo{i:05d}.jpg"
        if not path.exists():
            with Image.open(sources[i % len(sources)]) as im:
                k = 1 + i // len(sources)
                im.convert("RGB").crop((k, k, im.width - k, im.height - k)).save(path, quality=90)
        files.append(path)
    return files


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{task}/children").read_text()
                stack += [int(c) for c in children.split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_imgsearch(folder: Path, index: Path, workers: int) -> tuple[float, int, dict]:
    cmd = [sys.executable, "-m", "imgsearch", "index", str(folder), "--index", str(index),
           "--workers", str(workers), "--methods", "pixels,pca", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"imgsearch index failed:\n{err}")
    return seconds, peak, json.loads(out)


def first_answer(folder: Path, index: Path, workers: int, query: Path, limit: float = 300.0
                 ) -> dict:
    """Seconds from starting `imgsearch index --methods pixels,pca,ae` on a new index to the
    line that says queries work now, and to the answer of the `imgsearch query --method pca`
    started then (a process, as a user would run it), while `ae` trains; what `imgsearch
    info` says then. The run is stopped with Ctrl-C (SIGINT) once it has answered."""
    import signal

    cmd = [sys.executable, "-m", "imgsearch", "index", str(folder), "--index", str(index),
           "--workers", str(workers), "--methods", "pixels,pca,ae"]
    ask = [sys.executable, "-m", "imgsearch", "query", str(query), "--index", str(index),
           "--method", "pca", "--json", "-k", "3"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    said = answered = None
    info = ""
    try:
        for line in proc.stderr:
            if "queries work now" in line:
                said = time.perf_counter() - t0
                break
            if time.perf_counter() - t0 > limit:
                break
        if said is not None:
            got = subprocess.run(ask, capture_output=True)
            answered = time.perf_counter() - t0 if got.returncode == 0 else None
            info = subprocess.run([sys.executable, "-m", "imgsearch", "info", "--index",
                                   str(index)], capture_output=True, text=True).stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    training = next((line.strip() for line in info.splitlines() if "training" in line), "")
    return {"said_s": said, "first_answer_s": answered, "info_training": training}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=Path("data/photos"))
    ap.add_argument("--sizes", default="150,300,600")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--min-megapixels", type=float, default=2.0)
    ap.add_argument("--folder", type=Path, default=None,
                    help="take the first N JPEGs of this collection instead of making one")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--first-answer", action="store_true",
                    help="also time the first pca answer while ae trains, at the largest N")
    args = ap.parse_args()

    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.folder:
        sources = sorted(args.folder.rglob("*.jpg"))
        if len(sources) < max(sizes):
            raise SystemExit(f"{args.folder} has {len(sources)} JPEGs, fewer than {max(sizes)}")
        everything = sources[: max(sizes)]
    else:
        sources = source_jpegs(args.photos, int(args.min_megapixels * 1e6))
        if not sources:
            raise SystemExit(f"no JPEG of {args.min_megapixels} megapixels under {args.photos}")
    mp = sum(Image.open(s).width * Image.open(s).height for s in sources[:1000]
             ) / len(sources[:1000]) / 1e6
    print(f"{len(sources)} source JPEGs, mean {mp:.1f} MP; workers {args.workers}; "
          f"scratch {work}", file=sys.stderr)
    if not args.folder:
        everything = make_collection(sources, max(sizes), work / "all")

    rows = []
    ctx = multiprocessing.get_context("fork")
    for n in sizes:
        folder = work / f"n{n}"
        folder.mkdir(exist_ok=True)
        for f in everything[:n]:
            if not (folder / f.name).exists():
                os.link(f, folder / f.name)
        files = [str(folder / f.name) for f in everything[:n]]
        for f in files:  # warm the page cache so both runs read from memory
            Path(f).read_bytes()
        chunk = max(1, min(16, n // (args.workers * 8)))
        t0 = time.perf_counter()
        with ctx.Pool(args.workers) as pool:
            list(pool.imap_unordered(plain_decode, files, chunksize=chunk))
        plain = n / (time.perf_counter() - t0)
        shutil.rmtree(work / f"index{n}", ignore_errors=True)  # always a fresh index
        seconds, peak, report = run_imgsearch(folder, work / f"index{n}", args.workers)
        ingest_s = report["ingest"]["seconds"]  # the ingest phase alone, as `--json` gives it
        rows.append({"n": n, "plain_img_s": plain, "imgsearch_img_s": n / seconds,
                     "ratio": (n / seconds) / plain, "ingest_only_img_s": n / ingest_s,
                     "ingest_ratio": (n / ingest_s) / plain,
                     "peak_rss_mib": peak / 2**20})

    print(f"{'N':>6} {'plain img/s':>12} {'ingest img/s':>13} {'ratio':>6} "
          f"{'whole command img/s':>20} {'ratio':>6} {'peak RSS MiB':>13}")
    for r in rows:
        print(f"{r['n']:>6} {r['plain_img_s']:>12.1f} {r['ingest_only_img_s']:>13.1f} "
              f"{r['ingest_ratio']:>6.2f} {r['imgsearch_img_s']:>20.1f} {r['ratio']:>6.2f} "
              f"{r['peak_rss_mib']:>13.0f}")
    first = None
    if args.first_answer:
        n = rows[-1]["n"]
        shutil.rmtree(work / f"first{n}", ignore_errors=True)
        first = first_answer(work / f"n{n}", work / f"first{n}", args.workers,
                             sorted((work / f"n{n}").iterdir())[0])
        plain_s = n / rows[-1]["plain_img_s"]
        got = first["first_answer_s"]
        print(f"first pca answer at N={n}, while ae trains: "
              + (f"{got:.1f} s after the run started, {first['said_s']:.1f} s to the line "
                 f"that says queries work ({got / plain_s:.2f}x the plain loop's "
                 f"{plain_s:.1f} s; target <= 30 s)" if got else "none within the limit")
              + f"; info then: {first['info_training']!r}")
    growth = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    mean = sum(r["ingest_ratio"] for r in rows) / len(rows)
    print(f"peak memory at N={rows[-1]['n']} / N={rows[0]['n']}: {growth:.2f}x; "
          f"mean ingest ratio {mean:.2f} (targets: ingest >= 0.95, whole command >= 0.8)")
    if args.json:
        args.json.write_text(json.dumps({"folder": str(args.folder or ""),
                                         "sources": len(sources), "mean_megapixels": mp,
                                         "workers": args.workers, "rows": rows,
                                         "first_answer": first}, indent=2))


if __name__ == "__main__":
    main()
