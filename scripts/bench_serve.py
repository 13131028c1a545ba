"""Warm latency of the web API: `GET /api/similar/{id}` on a running `imgsearch serve`.

Starts `imgsearch serve` on a free local port, asks once per method to load it, then times
--requests requests for random indexed images over one kept-alive HTTP connection, one at a
time, and reports the median and 95th percentile. The baseline, in the same run: the method's
vector index searched for the same images in this process (FAISS alone), so the ratio is what
the server, the catalog join and HTTP add.

    python scripts/bench_serve.py --index out/index-100000 --out docs/results/bench-serve

Writes OUT.json and OUT.txt.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from pathlib import Path

import numpy as np
from report import serving, single_query_ms, write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.build import load_method
from imgsearch.workspace import Workspace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--methods", default=None, help="default: every built method")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("-k", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("docs/results/bench-serve"))
    args = ap.parse_args()
    ws = Workspace.open(args.index)
    methods = args.methods.split(",") if args.methods else ws.built_methods()
    ids = np.array(ws.catalog.indexed_ids())
    rng = np.random.default_rng(0)
    asked = rng.choice(ids, args.requests)
    baseline = {}
    for m in methods:  # FAISS alone: the stored code of each image, searched
        index = load_method(ws, m).index
        baseline[m] = single_query_ms(index, index.vectors(asked), args.k)
    n = len(ids)
    ws.close()

    rows = []
    with serving(args.index) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=60)
        for m in methods:
            path = f"/api/similar/{{}}?method={m}&k={args.k}"
            conn.request("GET", path.format(int(asked[0])))  # loads the method
            conn.getresponse().read()
            times = []
            for i in asked:
                t0 = time.perf_counter()
                conn.request("GET", path.format(int(i)))
                r = conn.getresponse()
                body = r.read()
                times.append(time.perf_counter() - t0)
                assert r.status == 200, body
            t = np.array(times) * 1e3
            rows.append({"method": m, "median_ms": float(np.median(t)),
                         "p95_ms": float(np.percentile(t, 95)), "faiss_ms": baseline[m],
                         "x_faiss": float(np.median(t)) / baseline[m]})
            print(rows[-1], file=sys.stderr, flush=True)
    lines = [f"GET /api/similar/ID?k={args.k} on {n:,} images, {args.requests} requests one at "
             "a time over one kept-alive connection (warm: each method loaded first)",
             f"{'method':<8}{'median ms':>11}{'p95 ms':>9}{'FAISS alone ms':>16}{'x FAISS':>9}"]
    for r in rows:
        lines.append(f"{r['method']:<8}{r['median_ms']:>11.2f}{r['p95_ms']:>9.2f}"
                     f"{r['faiss_ms']:>16.3f}{r['x_faiss']:>9.1f}")
    text = "\n".join(lines)
    print(text)
    write_report(args.out, text, {"images": n, "rows": rows})


if __name__ == "__main__":
    main()
