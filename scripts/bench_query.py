"""Cold query latency: a whole `imgsearch query --json` process, per method, against the import of
torch and faiss alone, timed in the same run with hyperfine (median of --runs).

    python scripts/bench_query.py --index indexes/demo --image data/photos/opencv/left01.jpg

"Cold" means a new process for every query (imports, loading the model and the vector index,
decoding the query, searching); the page cache is warm, as on a machine that has run a query
before. The baseline is `python -c "import torch, faiss"`: what any query with a torch model
would pay before doing anything. Writes OUT.json and OUT.txt.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from report import write_report

ROOT = Path(__file__).resolve().parents[1]


def hyperfine(commands: dict[str, str], runs: int, warmup: int) -> dict[str, dict]:
    """name -> {median, mean, stddev, min, max} in seconds, from one hyperfine run."""
    if shutil.which("hyperfine") is None:
        raise SystemExit("hyperfine is not installed (Debian: apt-get install hyperfine)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "h.json"
        cmd = ["hyperfine", "-N", "--runs", str(runs), "--warmup", str(warmup),
               "--export-json", str(out), "--style", "basic"]
        for name, command in commands.items():
            cmd += ["-n", name, command]
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        results = json.loads(out.read_text())["results"]
    return {r["command"]: {k: r[k] for k in ("median", "mean", "stddev", "min", "max")}
            for r in results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True, help="An index folder with the methods built.")
    ap.add_argument("--image", required=True, help="The query image.")
    ap.add_argument("--methods", default=None,
                    help="Comma-separated methods (default: every built one).")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "docs/results/bench-query")
    args = ap.parse_args()

    python = sys.executable
    imgsearch = str(Path(python).with_name("imgsearch"))
    info = json.loads(subprocess.run([imgsearch, "info", "--index", args.index, "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    methods = args.methods.split(",") if args.methods else list(info["methods"])
    commands = {"import torch, faiss": f"{python} -c 'import torch, faiss'"}
    for m in methods:
        commands[f"query {m}"] = (f"{imgsearch} query {args.image} --index {args.index} "
                                  f"--method {m} --json")
    times = hyperfine(commands, args.runs, args.warmup)
    base = times["import torch, faiss"]["median"]
    lines = [f"index {args.index}: {info['counts']['indexed']:,} images; "
             f"median of {args.runs} runs (hyperfine, {args.warmup} warm-up)",
             f"{'command':<24}{'median s':>10}{'x torch+faiss import':>22}"]
    for name, t in times.items():
        lines.append(f"{name:<24}{t['median']:>10.3f}{t['median'] / base:>22.2f}")
    text = "\n".join(lines)
    print(text)
    write_report(args.out, text, {"index": args.index, "images": info["counts"]["indexed"],
                                  "runs": args.runs, "times": times})


if __name__ == "__main__":
    main()
