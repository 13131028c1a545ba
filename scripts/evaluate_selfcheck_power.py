"""How sharply the self-check tells two methods apart on one collection: the lead of each
learned method over the best baseline and its paired standard error (stats.paired_lead),
against the unpaired one (two separate errors, as if independent), for several numbers of
edited copies per held-out image and of held-out images, with the time each self-check takes.

    python -m imgsearch index PHOTOS --index IDX            # the defaults: pixels, pca, ae
    python scripts/evaluate_selfcheck_power.py --index IDX --copies 12,24 \\
        --out docs/results/selfcheck-power

The held-out images are the index's own (fitting.held_out: never trained on); fewer of them are
their first ones in the draw. Beyond the 12 single edits, copies are pairs of edits
(selfcheck.COMBOS). Writes OUT.json and OUT.txt.
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
from imgsearch.selfcheck import SelfCheck
from imgsearch.stats import paired_lead
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
            made = time.perf_counter() - t0
            score, per_image, secs = {}, {}, {}
            for m, encode in encoders.items():
                t1 = time.perf_counter()
                hits = check.hits(*check.codes(encode))
                secs[m] = time.perf_counter() - t1
                score[m] = check.score(hits)
                per_image[m] = check.per_image(hits)
            top = max(baselines, key=lambda m: score[m][0])
            for m in learned:
                lead, se = paired_lead(per_image[m], per_image[top], check.copies)
                rows.append({
                    "copies": check.copies, "held": h, "queries": len(check.queries),
                    "method": m, "over": top, "score": score[m][0], "baseline": score[top][0],
                    "lead": lead, "paired_se": se,
                    "unpaired_se": math.hypot(score[m][1], score[top][1]),
                    "seconds": made + sum(secs.values()), "make_seconds": made,
                    "encode_seconds": secs})
    ws.close()
    lines = [f"{args.index}: {len(ids)} images, {len(held)} held out by the index, "
             f"{len(rest)} distractors; methods {', '.join(built)}",
             "| copies | held out | queries | method | lead over | lead | paired SE | "
             "unpaired SE | seconds (all methods) |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['copies']} | {r['held']} | {r['queries']} | {r['method']} | {r['over']} | "
              f"{r['lead']:+.3f} | {r['paired_se']:.3f} | {r['unpaired_se']:.3f} | "
              f"{r['seconds']:.1f} |" for r in rows]
    text = "\n".join(lines)
    print(text)
    write_report(args.out, text, {"index": str(args.index), "images": len(ids),
                                  "held": len(held), "rows": rows})


if __name__ == "__main__":
    main()
