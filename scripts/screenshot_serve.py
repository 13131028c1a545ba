"""Screenshots of `imgsearch serve` on an index, for the README: the grid, one photo with its
neighbours by every built method, and the review of duplicates (duplicates-review.png).

    python scripts/screenshot_serve.py --index demo --out docs/screenshots

Needs Chromium (Debian's `chromium`, /usr/bin/chromium) and playwright (the test extra).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from report import serving

CHROMIUM = os.environ.get("IMGSEARCH_CHROMIUM", "/usr/bin/chromium")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", default="demo")
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    ap.add_argument("--photo", type=int, default=7, help="which tile of the grid to open")
    ap.add_argument("--move-to", default="~/duplicates",
                    help="the folder shown in the review's box (nothing is moved)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with serving(args.index) as (host, port), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://{host}:{port}")
        page.wait_for_selector("[data-testid=grid] figure")
        page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => "
                               "i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(args.out / "serve-grid.png"))
        page.locator("[data-testid=grid] figure").nth(args.photo).click()
        page.wait_for_selector("[data-testid=detail] [data-testid=results] figure")
        page.wait_for_function("[...document.querySelectorAll('[data-testid=detail] img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(args.out / "serve-neighbours.png"))
        page.click("button[data-view=duplicates]")
        page.wait_for_selector("[data-testid=duplicates] >> text=group(s) of near-duplicates",
                               timeout=300_000)  # verified by geometry: a minute or two
        page.fill("[data-testid=move-to]", args.move_to)
        page.locator("[data-testid=move-to]").blur()
        page.wait_for_function("[...document.querySelectorAll('#duplicates img')].every(i => "
                               "(i.complete && i.naturalWidth > 0) || "
                               "i.getBoundingClientRect().top > innerHeight)",  # lazy, below
                               timeout=180_000)  # thumbnails of large photos made now
        page.screenshot(path=str(args.out / "duplicates-review.png"))
        browser.close()
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
