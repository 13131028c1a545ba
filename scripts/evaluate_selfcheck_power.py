"""How sharply the self-check tells two methods apart on one collection: the lead of each
learned method over the best baseline and its paired standard error (stats.paired), against
the unpaired one (two separate errors, as if independent), on the copies alone and on the
copies and other shots together (selfcheck.Shots: one round of shots per 12 copies), for
several numbers of edited copies per held-out image and of held-out images, with the time
each self-check takes.

    python -m imgsearch index PHOTOS --index IDX            # the defaults: pixels, pca, ae
    python scripts/evaluate_selfcheck_power.py --index IDX --copies 12,24 \\
        --out docs/results/selfcheck-power

The held-out images are the index's own (fitting.held_out: never trained on); fewer of them are
their first ones in the draw. Beyond the 12 usual edits, copies are the same edits at other
strengths (selfcheck.MORE). Writes OUT.json and OUT.txt.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch import methods
from imgsearch.build import open_embedder
from imgsearch.fitting import held_out
from imgsearch.selfcheck import COPIES, SelfCheck, Shots
from imgsearch.stats import paired
from imgsearch.workspace import Workspace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--copies", default="12,24", help="edited copies per held-out image")
    ap.add_argument("--held", default="", help="held-out images to use, comma-separated "
                    "(default: all the index holds out, and half of them)")
    ap.add_argument("--out", type=Path, default=Path("out/selfcheck-power"))
    args = ap.parse_args()
    ws = Workspace.open(args.index)
    ids = ws.catalog.indexed_ids()
    held, rest = held_out(ws, ids)
    built = ws.built_methods()
    encoders = {m: open_embedder(ws, m).encode for m in built}
    learned = [m for m in built if methods.get(m).learned]
    baselines = [m for m in built if not methods.get(m).learned]
    if not learned or not baselines:
        raise SystemExit("the index needs a learned method and a baseline built")
    sizes = ([int(h) for h in args.held.split(",")] if args.held
             else sorted({len(held) // 2, len(held)}))
    rows = []
    for copies in [int(c) for c in args.copies.split(",")]:
        for h in sizes:
            t0 = time.perf_counter()
            check = SelfCheck(ws.cache.read(held[:h]), ws.cache.read(rest), copies=copies)
            made = time.perf_counter() - t0  # the copies; the shots are made next
            shots = Shots(check.database[:h], check.database[h:], rounds=copies // COPIES)
            score, outcome, secs = {}, {}, {}
            for m, encode in encoders.items():
                t1 = time.perf_counter()
                hits = check.hits(*check.codes(encode))
                shot_hits = shots.hits(*shots.codes(encode))
                secs[m] = time.perf_counter() - t1
                score[m] = check.score(hits)
                outcome[m] = [check.outcome(hits), shots.outcome(shot_hits)]
            top = max(baselines, key=lambda m: score[m][0])
            for m in learned:
                lead, se = paired({m: outcome[m][0], top: outcome[top][0]}, m, top)
                both, both_se = paired(outcome, m, top)
                rows.append({
                    "copies": check.copies, "shots": shots.copies, "held": h,
                    "queries": len(check.queries), "method": m, "over": top,
                    "score": score[m][0], "baseline": score[top][0], "lead": lead,
                    "paired_se": se, "unpaired_se": math.hypot(score[m][1], score[top][1]),
                    "both_lead": both, "both_se": both_se,
                    "seconds": time.perf_counter() - t0, "make_seconds": made,
                    "encode_seconds": secs})
    ws.close()
    lines = [f"{args.index}: {len(ids)} images, {len(held)} held out by the index, "
             f"{len(rest)} distractors; methods {', '.join(built)}",
             "| copies | shots | held out | queries | method | lead over | copies: lead | "
             "paired SE | unpaired SE | copies and shots: lead | paired SE | seconds (all "
             "methods) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['copies']} | {r['shots']} | {r['held']} | {r['queries']} | {r['method']} "
              f"| {r['over']} | {r['lead']:+.3f} | {r['paired_se']:.3f} | "
              f"{r['unpaired_se']:.3f} | {r['both_lead']:+.3f} | {r['both_se']:.3f} | "
              f"{r['seconds']:.1f} |" for r in rows]
    text = "\n".join(lines)
    print(text)
    write_report(args.out, text, {"index": str(args.index), "images": len(ids),
                                  "held": len(held), "rows": rows})


if __name__ == "__main__":
    main()
