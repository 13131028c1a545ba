"""Screenshots of `imgsearch serve` on an index, for the README: the grid, one photo with its
neighbours by every built method, and the duplicates view.

    python scripts/screenshot_serve.py --index demo --out docs/screenshots

Needs Chromium (Debian's `chromium`, /usr/bin/chromium) and playwright (the test extra).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("IMGSEARCH_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"imgsearch serve exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/api/info", timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"imgsearch serve did not answer at {url} within {seconds:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", default="demo")
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    ap.add_argument("--photo", type=int, default=7, help="which tile of the grid to open")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "imgsearch", "serve", "--index", args.index,
                             "--port", str(port)])
    try:
        wait_up(url, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
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
            page.wait_for_selector("[data-testid=duplicates] >> text=group(s) of near-duplicates")
            page.screenshot(path=str(args.out / "serve-duplicates.png"))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
