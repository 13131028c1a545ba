"""Verification by geometry (imgsearch/copies/matching.py), measured: the share of edited copies
proven the same picture as their original, by edit, and the pairs of distinct photos and of
same-scene shots wrongly proven so.

- Copies: every distinct photo (datasets.distinct_photos) with each edit of
  scripts/evaluate_copy_detection.py and of the second duplicates benchmark
  (scripts/evaluate_duplicates.SECOND: quarter turns, 70 and 50% crops, white borders ...),
  made on the photo reduced to 1024 pixels; the original is matched from its file.
- Distinct photos: every pair of the distinct photos.
- Same scene, not copies (the demo's opencv-doc files): the calibration board shots of one
  fixed camera (left01..14), the stereo pairs (leftNN/rightNN, aloeL/aloeR, left/right),
  optical-flow frames (basketball, rubberwhale, aero) and others listed in SAME_SCENE.

    python scripts/evaluate_verification.py --photos data/photos --out docs/results/verification

Writes OUT.json and OUT.md. Times are per pair, in this process, on whatever else runs.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from evaluate_copy_detection import EDITS, edit_file
from evaluate_duplicates import SECOND
from report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.copies import matching
from imgsearch.datasets import distinct_photos, photo_files
from imgsearch.images import open_upright

BOARDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14]
SAME_SCENE = (
    [(f"left{i:02d}.jpg", f"left{j:02d}.jpg") for i, j in itertools.combinations(BOARDS, 2)]
    + [(f"left{i:02d}.jpg", f"right{i:02d}.jpg") for i in BOARDS]
    + [("aloeL.jpg", "aloeR.jpg"), ("left.jpg", "right.jpg"),
       ("basketball1.png", "basketball2.png"), ("rubberwhale1.png", "rubberwhale2.png"),
       ("aero1.jpg", "aero3.jpg"), ("box.png", "box_in_scene.png"),
       ("leuvenA.jpg", "leuvenB.jpg"), ("graf1.png", "graf3.png"),
       ("Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"),
       ("text_defocus.jpg", "text_motion.jpg")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, nargs="*", default=[Path("data/photos")])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("out/verification"))
    args = ap.parse_args()
    photos, _, _ = distinct_photos(photo_files(args.photos), 64)
    feats = {p.name: matching.load_features(p) for p in photos}
    edits = {**EDITS, **{k: v for k, v in SECOND.items() if k not in EDITS}}
    passed: dict[str, list[bool]] = {e: [] for e in edits}
    seconds = []
    for k, p in enumerate(photos):
        im = open_upright(p, 1024)
        rng = np.random.default_rng([args.seed, k])
        for e, edit in edits.items():
            copy = edit_file(im, e, rng) if e in EDITS else _saved(edit(im, rng))
            fb = matching.load_features(copy)
            t0 = time.perf_counter()
            passed[e].append(matching.match(feats[p.name], fb).same)
            seconds.append(time.perf_counter() - t0)
    names = list(feats)
    wrong = []
    for a, b in itertools.combinations(names, 2):
        m = matching.match(feats[a], feats[b])
        if m.same:
            wrong.append([a, b, m.inliers, round(m.shared_a, 3), round(m.shared_b, 3)])
    folder = next((f.parent for f in photo_files(args.photos) if f.name == "left01.jpg"), None)
    scene = []
    if folder is not None:
        for a, b in SAME_SCENE:
            if (folder / a).is_file() and (folder / b).is_file():
                m = matching.match(feats.get(a) or matching.load_features(folder / a),
                                   feats.get(b) or matching.load_features(folder / b))
                scene.append([a, b, m.same, m.inliers, round(m.shared_a, 3),
                              round(m.shared_b, 3)])
    res = {"photos": len(photos), "per_edit": {e: float(np.mean(v)) for e, v in passed.items()},
           "copies": int(sum(map(len, passed.values()))),
           "copies_passed": int(sum(map(sum, passed.values()))),
           "match_ms_median": 1000 * float(np.median(seconds)),
           "match_ms_p90": 1000 * float(np.quantile(seconds, 0.9)),
           "distinct_pairs": len(names) * (len(names) - 1) // 2, "distinct_passed": wrong,
           "same_scene": scene}
    table = markdown(res)
    print(table)
    write_report(args.out, table, res, table=".md")


def _saved(im):
    import io

    buf = io.BytesIO()
    im.convert("RGB").save(buf, "PNG")
    buf.seek(0)
    return buf


def markdown(res: dict) -> str:
    lines = [f"{res['photos']} distinct photos, {res['copies']} edited copies: "
             f"{res['copies_passed']} ({res['copies_passed'] / res['copies']:.3f}) proven the "
             f"same picture as their original; median {res['match_ms_median']:.1f} ms a pair "
             f"(p90 {res['match_ms_p90']:.1f}).", "", "| edit | proven |", "|---|---|"]
    lines += [f"| {e} | {v:.3f} |" for e, v in res["per_edit"].items()]
    lines += ["", f"Distinct photos: {len(res['distinct_passed'])} of {res['distinct_pairs']} "
              "pairs proven the same picture:", ""]
    lines += [f"- {a} / {b}: {n} inliers, shared {sa} / {sb}"
              for a, b, n, sa, sb in res["distinct_passed"]]
    s = res["same_scene"]
    lines += ["", f"Same scene, not copies: {sum(x[2] for x in s)} of {len(s)} pairs proven "
              "the same picture:", ""]
    lines += [f"- {a} / {b}: {n} inliers, shared {sa} / {sb}"
              for a, b, same, n, sa, sb in s if same]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
