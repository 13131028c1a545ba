"""The review of duplicates at scale: the Duplicates view's first paint in Chromium, and the API's
answer, with many groups kept with an index, against the same with a few groups (the baseline,
in the same run); then every group's others moved at once under one log, and put back.

The index is real (`imgsearch index` of --photos, pixels only); the groups are made: --groups
groups of two files each (copies of one small JPEG, so every member's file exists, as the view
checks) written as the groups the index keeps (copies/kept.py, under the index's own key), as
`imgsearch index` would have written them for a library with that many duplicates. First paint:
from the page's navigation to the first group on screen with the pager (Playwright, Debian's
Chromium), median of --runs page loads in a fresh tab each.

    python scripts/bench_review.py --photos data/photos/opencv --groups 10000 \\
        --out docs/results/bench-review

Writes OUT.json and OUT.txt.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from report import serving, write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.copies import kept
from imgsearch.copies.groups import Duplicates, Group, Member
from imgsearch.pipeline import update_index
from imgsearch.store import write_json
from imgsearch.workspace import Workspace

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def keep_groups(index: Path, files: Path, n: int) -> None:
    """Write ``n`` made groups of two files each as the groups ``index`` keeps."""
    src = next(files.parent.glob("seed.jpg")).read_bytes()
    groups = []
    for g in range(n):
        a, b = files / f"{g:06d}-a.jpg", files / f"{g:06d}-b.jpg"
        a.write_bytes(src)
        b.write_bytes(src)
        groups.append(Group(Member(10**6 + 2 * g, str(a), 0.0, 64, 48, len(src)),
                            (Member(10**6 + 2 * g + 1, str(b), 0.01, 64, 48,
                                    len(src) - g % 97, 40, 0.9),), "original: made"))
    ws = Workspace.open(index)
    try:
        method = ws.preferred_method()
        digest = kept.key(ws, method, None, 1.0, True, "original")
        found = Duplicates(method, 1.0, "calibrated", groups, n * 2, True)
        write_json(index / kept.FILE, {"key": digest, "duplicates": found.as_dict()})
    finally:
        ws.close()


def measure(index: Path, runs: int) -> dict:
    from playwright.sync_api import sync_playwright

    with serving(index, clean=True) as (host, port), sync_playwright() as p:
        url = f"http://{host}:{port}"
        api = []
        for _ in range(runs):
            t0 = time.perf_counter()
            body = json.loads(urllib.request.urlopen(f"{url}/api/duplicates", timeout=600).read())
            api.append(time.perf_counter() - t0)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        paint = []
        for _ in range(runs):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            t0 = time.perf_counter()
            page.goto(f"{url}/#/duplicates")
            page.wait_for_selector("[data-testid=pager]")
            page.locator("[data-testid=group]").first.wait_for()
            paint.append(time.perf_counter() - t0)
            page.close()
        browser.close()
        t0 = time.perf_counter()
        moved = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{url}/api/duplicates/move-all", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"groups": body["total"], "to": str(index.parent / "aside"),
                             "method": body["method"]}).encode()), timeout=600).read())
        move = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{url}/api/duplicates/undo", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"log": moved["log"]}).encode()), timeout=600).read())
        undo = time.perf_counter() - t0
    logs = list((index.parent / "aside").glob("imgsearch-moves-*.jsonl"))
    return {"groups": body["total"], "api_s": statistics.median(api), "apis": api,
            "paint_s": statistics.median(paint), "paints": paint, "moved": moved["moved"],
            "move_s": move, "restored": back["restored"], "undo_s": undo, "logs": len(logs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--baseline", type=int, default=10, help="groups of the baseline run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("out/bench-review"))
    args = ap.parse_args()
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ws = Workspace.create(root / "index")
        update_index(ws, args.photos, ["pixels"], duplicates=False)
        ws.close()
        first = next(p for p in sorted(args.photos.rglob("*.jpg")))
        shutil.copy(first, root / "seed.jpg")
        for label, n in (("baseline", args.baseline), ("many", args.groups)):
            files = root / f"files-{label}"
            files.mkdir()
            keep_groups(root / "index", files, n)
            res[label] = measure(root / "index", args.runs)
            shutil.rmtree(root / "aside", ignore_errors=True)
            print(label, res[label], file=sys.stderr, flush=True)
    b, m = res["baseline"], res["many"]
    text = (f"groups kept: {b['groups']:,} (baseline) and {m['groups']:,}; median of "
            f"{args.runs}\n\n"
            f"| | {b['groups']:,} groups | {m['groups']:,} groups | ratio |\n|---|---|---|---|\n"
            f"| GET /api/duplicates (first page of 50), first after the server starts | "
            f"{b['apis'][0]:.3f} s | {m['apis'][0]:.3f} s | {m['apis'][0] / b['apis'][0]:.1f} |\n"
            f"| ... median (the server keeps the groups it read) | {b['api_s']:.3f} s | "
            f"{m['api_s']:.3f} s | {m['api_s'] / b['api_s']:.1f} |\n"
            f"| first paint of the Duplicates view | {b['paint_s']:.3f} s | "
            f"{m['paint_s']:.3f} s | {m['paint_s'] / b['paint_s']:.1f} |\n"
            f"| move the others of every group (one log) | {b['move_s']:.2f} s, "
            f"{b['moved']:,} files, {b['logs']} log | {m['move_s']:.2f} s, {m['moved']:,} "
            f"files, {m['logs']} log | |\n"
            f"| undo it | {b['undo_s']:.2f} s, {b['restored']:,} back | {m['undo_s']:.2f} s, "
            f"{m['restored']:,} back | |\n")
    print(text)
    write_report(args.out, text, res)


if __name__ == "__main__":
    main()
