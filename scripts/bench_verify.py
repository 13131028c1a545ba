"""Verification by geometry, timed: matching one candidate pair, and a cold query with and
without verification, each against a baseline measured in the same run.

1. Pairs: every distinct photo against one edited copy of itself (a 70% crop turned a quarter,
   which needs the homography) and against another photo (what most candidates are), matched
   from their features (matching.match) in this process, one core. The baseline is decoding
   the same photos as an index does (images.load_image at 64 pixels): the work a candidate
   costs an index run anyway. Features themselves (matching.load_features: decoding at 512
   pixels, ORB twice) are timed too: a query computes them for its candidates, and so is
   matching two photos' descriptors, as matching._matches does (FAISS's exact binary search,
   2 nearest) against OpenCV's brute-force matcher it replaced (knnMatch, k=2).
2. Cold query: whole `imgsearch query --json` processes, with verification (the default) and
   with --no-verify, timed together by hyperfine (median of --runs); the ratio is the
   target's (<= 1.2).

    python scripts/bench_verify.py --photos data/photos --index indexes/demo \\
        --image data/photos/opencv/left01.jpg --out docs/results/bench-verify

Writes OUT.json and OUT.txt.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from bench_query import hyperfine
from report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.copies import evidence, matching
from imgsearch.datasets import distinct_photos, photo_files
from imgsearch.images import load_image, open_upright

ROOT = Path(__file__).resolve().parents[1]


def per_item(fn, items) -> float:
    """Median seconds of fn(item) over items."""
    times = []
    for x in items:
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _opencv_matches(a: matching.Keypoints, b: matching.Keypoints) -> list:
    """What matching._matches did before it used FAISS: OpenCV's brute-force Hamming matcher,
    the 2 nearest of each of a's descriptors, with the same ratio test."""
    if len(a.descriptors) < 2 or len(b.descriptors) < 2:
        return []
    cv2 = matching._cv2()
    return [ms[0] for ms in cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors,
                                                                      b.descriptors, k=2)
            if len(ms) == 2 and ms[0].distance < matching.RATIO * ms[1].distance]


def pairs(photos: list[Path]) -> dict:
    feats = [matching.load_features(p) for p in photos]
    copies = []
    for p in photos:
        im = open_upright(p, 1024)
        w, h = im.size
        crop = im.crop((w // 10, h // 10, w // 10 + round(0.7 * w), h // 10 + round(0.7 * h)))
        copies.append(matching.features(np.asarray(crop.rotate(90, expand=True))))
    n = len(photos)
    copy_s = per_item(lambda i: matching.match(feats[i], copies[i]), range(n))
    other_s = per_item(lambda i: matching.match(feats[i], feats[(i + 1) % n]), range(n))
    kept = [evidence.unpack(evidence.pack(f)) for f in feats]  # as the index stores them
    stored_s = per_item(lambda i: matching.match(kept[i], kept[(i + 1) % n]), range(n))
    quick_s = per_item(lambda i: matching.match(kept[i], kept[(i + 1) % n], dense=False),
                       range(n))  # a pair only local features propose: keypoints alone
    features_s = per_item(matching.load_features, photos)
    faiss_s = per_item(lambda i: matching._matches(feats[i].direct, feats[(i + 1) % n].direct),
                       range(n))
    opencv_s = per_item(lambda i: _opencv_matches(feats[i].direct, feats[(i + 1) % n].direct),
                        range(n))
    decode_s = per_item(lambda p: load_image(p, 64), photos)
    return {"photos": n, "copy_pair_ms": 1000 * copy_s, "other_pair_ms": 1000 * other_s,
            "other_pair_stored_ms": 1000 * stored_s, "other_pair_keypoints_ms": 1000 * quick_s,
            "features_ms": 1000 * features_s, "decode_64_ms": 1000 * decode_s,
            "descriptors_faiss_ms": 1000 * faiss_s, "descriptors_opencv_ms": 1000 * opencv_s,
            "copy_pair_over_decode": copy_s / decode_s,
            "other_pair_over_decode": other_s / decode_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, nargs="*", default=[ROOT / "data/photos"])
    ap.add_argument("--index", default=None, help="An index, for the cold queries.")
    ap.add_argument("--image", default=None, help="The query image.")
    ap.add_argument("--method", default=None, help="The query's method (default: preferred).")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--out", type=Path, default=ROOT / "out/bench-verify")
    args = ap.parse_args()
    photos, _, _ = distinct_photos(photo_files(args.photos), 64)
    res = {"pairs": pairs(photos)}
    p = res["pairs"]
    lines = [f"{p['photos']} photos, one core, median per item:",
             f"  match a copy (70% crop, quarter turn)  {p['copy_pair_ms']:7.2f} ms "
             f"({p['copy_pair_over_decode']:.2f}x decoding at 64 px)",
             f"  match another photo                   {p['other_pair_ms']:7.2f} ms "
             f"({p['other_pair_over_decode']:.2f}x decoding at 64 px)",
             f"  match another photo, both stored       {p['other_pair_stored_ms']:7.2f} ms",
             f"  ... by keypoints alone (dense=False)   {p['other_pair_keypoints_ms']:7.2f} ms",
             f"  features of a file (decode at 512, ORB x2) {p['features_ms']:7.2f} ms",
             f"  descriptors of two photos matched, FAISS  {p['descriptors_faiss_ms']:7.2f} ms "
             f"(OpenCV's matcher: {p['descriptors_opencv_ms']:.2f} ms)",
             f"  baseline: decode at 64 px             {p['decode_64_ms']:7.2f} ms"]
    if args.index and args.image:
        exe = str(Path(sys.executable).with_name("imgsearch"))
        base = f"{exe} query {args.image} --index {args.index} --json"
        if args.method:
            base += f" --method {args.method}"
        t = hyperfine({"verified": base, "no-verify": base + " --no-verify"}, args.runs, 1)
        res["cold_query"] = {**t, "ratio": t["verified"]["median"] / t["no-verify"]["median"]}
        lines += [f"cold query, median of {args.runs} (hyperfine):",
                  f"  with verification  {t['verified']['median']:.3f} s",
                  f"  --no-verify        {t['no-verify']['median']:.3f} s",
                  f"  ratio              {res['cold_query']['ratio']:.2f} (target <= 1.2)"]
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(args.out, text, res)


if __name__ == "__main__":
    main()
