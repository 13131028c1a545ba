"""What storing the features costs in verdicts: edited copies of the distinct demo photos
(scripts/evaluate_copy_detection.py's edits) matched against their originals with features
fresh from the files, with the original's features stored (a query: the copy fresh), and
with both stored (two indexed images), for each stored format asked for; and the pairs of
distinct photos wrongly proven the same. Sizes are of copies/evidence.py's packed bytes.

    python scripts/evaluate_stored_features.py --photos data/photos \\
        --formats 500:90,250:90,150:85 --out docs/results/stored-features

A format is KEYPOINTS:QUALITY: at most that many keypoints of each orientation (the first
in matching's order), the grey picture as a JPEG of that quality. Writes OUT.json, OUT.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from evaluate_copy_detection import EDITS, edit_file
from report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.copies import evidence, matching
from imgsearch.datasets import distinct_photos, photo_files
from imgsearch.images import open_upright


def stored(f: matching.Features) -> matching.Features:
    return evidence.unpack(evidence.pack(f))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, nargs="*", default=[Path("data/photos")])
    ap.add_argument("--formats", default="500:90,250:90,150:85")
    ap.add_argument("--max-photos", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("out/stored-features"))
    args = ap.parse_args()
    photos, _, _ = distinct_photos(photo_files(args.photos), 64)
    photos = photos[: args.max_photos]
    fresh = {p.name: matching.load_features(p) for p in photos}
    copies = []  # (original's name, edit, the copy's fresh features)
    for k, p in enumerate(photos):
        im = open_upright(p, 1024)
        rng = np.random.default_rng([args.seed, k])
        copies += [(p.name, e, matching.load_features(edit_file(im, e, rng))) for e in EDITS]
    base = {"fresh": float(np.mean([matching.match(fresh[n], c).same for n, _, c in copies])),
            "false": sum(matching.match(fresh[a], fresh[b]).same
                         for a, b in itertools.combinations(fresh, 2))}
    rows = []
    for fmt in args.formats.split(","):
        kps, quality = (int(x) for x in fmt.split(":"))
        evidence.STORED_KEYPOINTS, evidence.GREY_QUALITY = kps, quality
        sizes = [len(evidence.pack(f)) for f in fresh.values()]
        kept = {n: stored(f) for n, f in fresh.items()}
        query = [matching.reverse(matching.match(kept[n], c)).same for n, _, c in copies]
        both = [matching.match(kept[n], stored(c)).same for n, _, c in copies]
        false = sum(matching.match(kept[a], kept[b]).same
                    for a, b in itertools.combinations(kept, 2))
        rows.append({"keypoints": kps, "quality": quality, "mean_bytes": float(np.mean(sizes)),
                     "max_bytes": int(max(sizes)), "query": float(np.mean(query)),
                     "both": float(np.mean(both)), "false": int(false)})
    pairs = len(fresh) * (len(fresh) - 1) // 2
    lines = [f"{len(photos)} distinct photos x {len(EDITS)} edits = {len(copies)} copies; "
             f"{pairs} distinct pairs. Proven with features fresh from the files: "
             f"{base['fresh']:.4f}; distinct pairs proven: {base['false']}.", "",
             "| keypoints | grey JPEG quality | mean KiB | max KiB | proven, original stored "
             "| proven, both stored | distinct pairs proven |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['keypoints']} | {r['quality']} | {r['mean_bytes'] / 1024:.1f} | "
              f"{r['max_bytes'] / 1024:.1f} | {r['query']:.4f} | {r['both']:.4f} | "
              f"{r['false']} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(args.out, text, {"photos": len(photos), "copies": len(copies),
                                  "distinct_pairs": pairs, "fresh": base, "formats": rows},
                 table=".md")


if __name__ == "__main__":
    main()
