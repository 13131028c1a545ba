"""Which candidate pairs verification needs: the groups of a duplicates benchmark's index
(scripts/evaluate_duplicates.py --work DIR) found with other sets of proposals (codes, views'
codes, local features' votes: candidates.Proposals), each scored as that script scores them,
with the number of candidate pairs each costs and how many of them are compared whole.

Every verdict is stored in the index (copies/evidence.py), so each pair is matched once over
the whole sweep, and the pairs each set would verify in a new index are counted.

    python scripts/evaluate_proposals.py --work out/dups-v --method pca \\
        --out docs/results/proposals-project

Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from evaluate_duplicates import EDIT_SETS, edit_recall, keeper_share, names_of, pair_scores
from report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.copies import candidates
from imgsearch.copies.candidates import Proposals
from imgsearch.copies.evidence import Stored
from imgsearch.copies.groups import in_index, live_codes, stored_votes
from imgsearch.workspace import Workspace

#: In the order run: a refusal by keypoints alone is never read where a row compares the pair
#: whole, but a whole verdict serves a later row's quick pair, so ``close`` only grows.
GRID = [Proposals(*p) for p in [
    (3.0, 4, True, 10, 1.0),  # the product's
    (3.0, 4, True, 0, 1.0),  # codes and views only
    (3.0, 4, False, 10, 1.0),  # votes instead of views
    (1.5, 4, True, 10, 1.0),
    (1.0, 4, True, 10, 1.0),
    (3.0, 4, True, 6, 1.0),
    (3.0, 4, True, 20, 1.0),
    (3.0, 4, True, 10, 1.5),
    (3.0, 4, True, 0, 3.0)]]  # before local features proposed: every pair compared whole


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--method", default="pca")
    ap.add_argument("--edits", choices=sorted(EDIT_SETS), default="project")
    ap.add_argument("--out", type=Path, default=Path("out/proposals"))
    args = ap.parse_args()
    ws = Workspace.open(args.work / "index")
    _, ids, codes, rows = live_codes(ws, args.method)
    names = [Path(rows[int(i)].path).name for i in ids]
    origin = {n: int(re.match(r"p(\d+)-", n).group(1)) for n in names}
    photos = len(set(origin.values()))
    threshold = ws.method_state(args.method).duplicate_threshold
    loaded = live_codes(ws, args.method)[0]
    views = candidates.view_codes(ws.cache, ids, loaded.embedder.encode)
    voted = stored_votes(ids, Stored(ws.catalog))
    out = []
    for p in GRID:
        pairs, whole = candidates.proposed(codes, threshold, p, candidates.NEIGHBOURS, views,
                                           voted)
        groups = in_index(ws, args.method, proposals=p).groups
        out.append({"proposals": vars(p), "candidates": len(pairs),
                    "whole": int(whole.sum()),
                    "per_image": len(pairs) / len(ids),
                    **pair_scores(names_of(groups), origin),
                    "per_edit": edit_recall(names_of(groups), list(EDIT_SETS[args.edits]),
                                            photos),
                    "keeper": keeper_share(groups)})
        print(out[-1], file=sys.stderr, flush=True)
    ws.close()
    lines = [f"{args.work}: {len(ids)} files ({photos} photos), method {args.method}, "
             f"threshold {threshold:.4g}; the product's proposals: "
             f"{vars(candidates.PROPOSALS)}", "",
             "| loose | view neighbours | views | votes | close | candidate pairs | whole | "
             "per image | precision | recall | F1 | keeper | worst edit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out:
        p, worst = r["proposals"], min(r["per_edit"].items(), key=lambda kv: kv[1])
        k = r["keeper"]
        lines.append(f"| {p['loose']} | {p['view_neighbours']} | {p['views']} | "
                     f"{p['votes']} | {p['close']} | {r['candidates']:,} | {r['whole']:,} | "
                     f"{r['per_image']:.1f} | {r['precision']:.4f} | "
                     f"{r['recall']:.4f} | {r['f1']:.4f} | {k['original_kept']}/{k['groups']} | "
                     f"{worst[0]} ({worst[1]:.3f}) |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(args.out, text, {"work": str(args.work), "method": args.method,
                                  "threshold": threshold, "rows": out}, table=".md")


if __name__ == "__main__":
    main()
