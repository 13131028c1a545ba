"""A query's neighbours by two methods, one row each: the README's first picture.

Each row is what `imgsearch query QUERY --method M --json` answers (the product's own search,
run as a user runs it), drawn as the query then its k nearest, each captioned with its rank,
distance and file name. With --edit, the query is first written as an edited copy of the
given photo (mirrored, then its centre 70% cropped, then re-saved as JPEG quality 60), so the
picture also shows which method finds the original of a copy.

    make demo   # the demo index
    python scripts/compare_picture.py --index demo \
        --query data/photos/mate/nature/Dune.jpg --methods pixels,ae -k 6 \
        --out docs/screenshots/pixels-vs-ae.png
    python scripts/compare_picture.py --index demo --edit \
        --query data/photos/opencv/baboon.jpg --methods pixels,ae -k 6 \
        --out docs/screenshots/pixels-vs-ae-copy.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.images import open_upright
from imgsearch.search import Hit
from imgsearch.viz import THUMB, query_sheet, save_png


def edited_copy(photo: Path, out: Path) -> Path:
    """``photo`` mirrored, its centre 70% of each side kept, saved as JPEG quality 60."""
    im = ImageOps.mirror(open_upright(photo, 1024))
    w, h = im.size
    dw, dh = round(w * 0.15), round(h * 0.15)
    im.crop((dw, dh, w - dw, h - dh)).save(out, "JPEG", quality=60)
    return out


def answer(index: str, query: Path, method: str, k: int) -> list[dict]:
    """The product's answer, as `imgsearch query --json` prints it."""
    run = subprocess.run([sys.executable, "-m", "imgsearch", "query", str(query), "--index",
                          index, "--method", method, "-k", str(k), "--json"],
                         capture_output=True, text=True, check=False)
    if run.returncode:
        raise SystemExit(f"imgsearch query failed: {run.stderr.strip()}")
    return json.loads(run.stdout)["results"]


def picture(query: Path, rows: list[tuple[str, list[dict]]], title: str) -> Image.Image:
    sheets = [query_sheet(query, None, [Hit(**h) for h in hits], method, columns=len(hits) + 1)
              for method, hits in rows]
    font = ImageFont.load_default()
    width = max(s.width for s in sheets)
    out = Image.new("RGB", (width, 24 + sum(s.height for s in sheets)), "white")
    ImageDraw.Draw(out).text((8, 6), title, fill="black", font=font)
    y = 24
    for s in sheets:
        out.paste(s, (0, y))
        y += s.height
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", default="demo")
    ap.add_argument("--query", type=Path, required=True)
    ap.add_argument("--edit", action="store_true",
                    help="query with an edited copy of --query (mirrored, cropped, JPEG)")
    ap.add_argument("--methods", default="pixels,ae")
    ap.add_argument("-k", type=int, default=6)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        query = (edited_copy(args.query, Path(tmp) / f"copy-of-{args.query.stem}.jpg")
                 if args.edit else args.query)
        rows = [(m, answer(args.index, query, m, args.k)) for m in args.methods.split(",")]
        what = (f"an edited copy of {args.query.name} (mirrored, centre 70% cropped, JPEG 60)"
                if args.edit else args.query.name)
        save_png(picture(query, rows, f"index {args.index}: the neighbours of {what}, by "
                         + " and by ".join(m for m, _ in rows)), args.out)
    for m, hits in rows:
        print(f"{m}: " + ", ".join(f"{Path(h['path']).name} ({h['distance']:.3f})"
                                   for h in hits))
    print(f"written {args.out} ({THUMB}px tiles)")


if __name__ == "__main__":
    main()
