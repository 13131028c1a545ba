"""End to end in a real browser: `imgsearch serve` in its own process on a free local port,
driven by Playwright through Debian's Chromium (/usr/bin/chromium; nothing is downloaded).

The test is skipped where no Chromium is installed, unless IMGSEARCH_REQUIRE_BROWSER=1 (set by
.ci/run, which installs it), where a missing browser fails it. IMGSEARCH_SCREENSHOTS=DIR keeps
the screenshots (the README's picture comes from here)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from .conftest import find, serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.slow


@pytest.fixture
def server(photo_dir, tmp_path):
    from typer.testing import CliRunner

    from imgsearch.cli import app

    index = tmp_path / "idx"
    built = CliRunner().invoke(app, ["index", str(photo_dir), "--index", str(index),
                                     "--methods", "pixels,pca", "--input-size", "32"])
    assert built.exit_code == 0, built.output
    with serving(index) as url:
        yield url


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("IMGSEARCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM}; install Debian's chromium")
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def test_the_page_in_a_real_browser(server, browser, photo_dir, tmp_path):
    shots = Path(os.environ.get("IMGSEARCH_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server)
    page.wait_for_selector("[data-testid=grid] figure")
    assert "12 photos" in page.inner_text("[data-testid=summary]")
    tiles = page.locator("[data-testid=grid] figure")
    assert tiles.count() == 12
    page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => "
                           "i.complete && i.naturalWidth > 0)")  # thumbnails drawn

    tiles.nth(4).click()  # a photo: its neighbours by every method
    page.wait_for_selector("[data-testid=detail] [data-testid=results] figure")
    rows = page.locator("[data-testid=detail] [data-testid=results]")
    assert sorted(rows.nth(i).get_attribute("data-method") for i in range(rows.count())) == [
        "pca", "pixels"]
    assert rows.first.locator("figure").count() == 11  # all the others, closest first
    page.screenshot(path=str(shots / "serve-neighbours.png"))

    query = tmp_path / "query.png"
    Image.open(find(photo_dir, "img09.bmp")).convert("RGB").save(query)
    page.set_input_files("[data-testid=upload]", str(query))
    page.wait_for_selector("[data-testid=detail] >> text=uploaded image")
    first = page.locator("[data-testid=detail] [data-testid=results] figcaption").first
    assert "img09.bmp" in first.inner_text()  # the uploaded picture's own file comes first

    page.click("button[data-view=duplicates]")
    page.wait_for_selector("[data-testid=duplicates] >> text=group(s) of near-duplicates")
    page.click("button[data-view=map]")
    page.wait_for_selector("#mapbox img")
    assert page.locator("#mapbox img").count() == 12
    page.screenshot(path=str(shots / "serve-map.png"))
    assert errors == [] and page.locator("#error").is_hidden()
