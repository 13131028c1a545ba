"""End to end in a real browser: `imgsearch serve` in its own process on a free local port,
driven by Playwright through Debian's Chromium (/usr/bin/chromium; nothing is downloaded).

The test is skipped where no Chromium is installed, unless IMGSEARCH_REQUIRE_BROWSER=1 (set by
.ci/run, which installs it), where a missing browser fails it. IMGSEARCH_SCREENSHOTS=DIR keeps
the screenshots (the README's picture comes from here)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from .conftest import add_copies_of_img00, find, serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.slow


def build(photo_dir, index):
    from typer.testing import CliRunner

    from imgsearch.cli import app

    built = CliRunner().invoke(app, ["index", str(photo_dir), "--index", str(index),
                                     "--methods", "pixels,pca", "--input-size", "32"])
    assert built.exit_code == 0, built.output


@pytest.fixture
def server(photo_dir, tmp_path):
    build(photo_dir, tmp_path / "idx")
    with serving(tmp_path / "idx") as url:
        yield url


@pytest.fixture
def dup_server(photo_dir, tmp_path):
    """The 12 photos and three copies of img00: larger (the keeper), a smaller JPEG, a crop."""
    add_copies_of_img00(photo_dir)
    build(photo_dir, tmp_path / "idx")
    with serving(tmp_path / "idx") as url:
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

    tiles.nth(4).click()  # a photo: its neighbours by every method, at its own address
    page.wait_for_selector("[data-testid=detail] [data-testid=results] figure")
    assert page.evaluate("location.hash") == f"#/photo/{tiles.nth(4).get_attribute('data-id')}"
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

    assert page.evaluate("location.hash") == "#/search"

    page.click("button[data-view=duplicates]")
    page.wait_for_selector("[data-testid=duplicates] >> text=group(s) of near-duplicates")
    assert page.locator("[data-testid=detail]").is_hidden()  # the photo's panel went with it
    page.click("button[data-view=map]")
    page.wait_for_selector("#mapbox img")
    assert page.locator("#mapbox img").count() == 12
    page.screenshot(path=str(shots / "serve-map.png"))
    assert errors == [] and page.locator("#error").is_hidden()


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    return page, errors


def group_of(page, keeper: str):
    return page.locator("[data-testid=group]", has=page.locator(
        ".keeper figcaption", has_text=keeper))


def test_every_photo_and_group_has_an_address(dup_server, browser):
    page, errors = open_page(browser, dup_server)
    page.wait_for_selector("[data-testid=grid] figure")
    assert page.evaluate("location.hash") == ""
    page.click("button[data-view=duplicates]")
    group = group_of(page, "orig.png")
    group.wait_for()
    method = page.locator("[data-testid=method]").input_value()
    assert page.evaluate("location.hash") == f"#/duplicates?method={method}"
    keeper = group.locator(".keeper")
    keeper_id = keeper.get_attribute("data-id")
    assert keeper.locator("[data-testid=keep]").inner_text() == "keep"
    assert group.locator("[data-testid=keep]").count() == 1  # one keeper a group
    assert group.locator("[data-testid=member]").count() == 4

    group.locator(".member:not(.keeper) .pic").first.click()  # a copy: its own address
    page.wait_for_selector("[data-testid=detail] [data-testid=results] figure")
    name = page.locator("[data-testid=detail] .query strong").inner_text()
    hash_ = page.evaluate("location.hash")
    assert hash_.startswith("#/photo/") and name in ("small.jpg", "crop.png", "img00.jpg")
    assert page.locator("[data-testid=duplicates]").is_hidden()

    page.reload()  # the address alone brings it back
    page.wait_for_selector("[data-testid=detail] [data-testid=results] figure")
    assert page.locator("[data-testid=detail] .query strong").inner_text() == name
    assert page.evaluate("location.hash") == hash_

    page.click("button[data-view=map]")  # another view: the photo's panel goes
    page.wait_for_selector("#mapbox img")
    assert page.locator("[data-testid=detail]").is_hidden()
    page.go_back()  # and comes back with the address
    page.wait_for_selector("[data-testid=detail] .query strong >> text=" + name)
    assert page.locator("[data-testid=detail]").is_visible()

    page.goto(f"{dup_server}/#/duplicates/group/{keeper_id}?method={method}")
    page.wait_for_selector("[data-testid=group]")
    assert page.locator("[data-testid=group]").count() == 1
    assert page.locator("[data-testid=group] .keeper").get_attribute("data-id") == keeper_id
    page.click("text=‹ all groups")
    page.wait_for_function("location.hash.startsWith('#/duplicates?')")
    assert errors == [] and page.locator("#error").is_hidden()


def test_move_the_others_away_undo_and_dismiss(dup_server, browser, photo_dir, tmp_path):
    page, errors = open_page(browser, dup_server + "/#/duplicates")
    group = group_of(page, "orig.png")
    group.wait_for()
    groups = page.locator("[data-testid=group]").count()

    group.locator("[data-testid=move]").click()  # no folder given: refused, nothing moved
    status = group.locator("[data-testid=status]")
    status.wait_for()
    assert "choose a folder" in status.inner_text()
    page.fill("[data-testid=move-to]", str(photo_dir / "aside"))
    group.locator("[data-testid=move]").click()  # a folder inside the collection: refused
    page.wait_for_selector("[data-testid=status] >> text=inside the indexed folder")
    assert len(list(photo_dir.rglob("*.*"))) == 15

    aside = tmp_path / "aside"
    page.fill("[data-testid=move-to]", str(aside))
    group.locator("[data-testid=move]").click()
    page.wait_for_selector("[data-testid=notice] >> text=Moved 3 file(s)")
    assert "imgsearch index" in page.inner_text("[data-testid=notice]")
    group_of(page, "orig.png").wait_for(state="detached")
    assert page.locator("[data-testid=group]").count() == groups - 1
    assert sorted(p.name for p in aside.rglob("*.*") if p.suffix != ".jsonl") == [
        "crop.png", "img00.jpg", "small.jpg"]

    page.click("[data-testid=undo]")
    page.wait_for_selector("[data-testid=notice] >> text=Put back 3 file(s)")
    group_of(page, "orig.png").wait_for()
    assert (photo_dir / "copies" / "small.jpg").is_file()
    assert [p.suffix for p in aside.rglob("*.*")] == [".jsonl"]  # only the log left

    group_of(page, "orig.png").locator("[data-testid=dismiss]").click()
    page.wait_for_selector("[data-testid=notice] >> text=not duplicates")
    group_of(page, "orig.png").wait_for(state="detached")
    assert page.locator("[data-testid=group]").count() == groups - 1
    page.reload()  # recorded by the server, not only hidden on the page
    page.wait_for_selector("[data-testid=duplicates] >> text=group(s) of near-duplicates")
    assert group_of(page, "orig.png").count() == 0
    assert len(list(photo_dir.rglob("*.*"))) == 15  # nothing deleted, nothing left aside
    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert errors == [refused] * 2  # the two moves refused above, and nothing else
    assert page.locator("#error").is_hidden()


def test_groups_a_page_at_a_time_in_an_order_and_every_group_moved_at_once(browser,
                                                                          tmp_path):
    from .conftest import copied_scenes

    photos = copied_scenes(tmp_path / "photos")  # three groups: of 3, 2 and 2 pictures
    build(photos, tmp_path / "idx")
    with serving(tmp_path / "idx") as url:
        page, errors = open_page(browser, url + "/#/duplicates?per=2")
        pager = page.locator("[data-testid=pager]")
        page.wait_for_selector("[data-testid=pager] >> text=groups 1–2 of 3")
        assert page.locator("[data-testid=group]").count() == 2
        page.click("[data-testid=next-groups]")
        page.wait_for_selector("[data-testid=pager] >> text=groups 3–3 of 3")
        assert page.locator("[data-testid=group]").count() == 1
        assert "page=2" in page.evaluate("location.hash")
        assert page.locator("[data-testid=group] .title").inner_text() == "group 3"
        page.select_option("[data-testid=order]", "size")
        page.wait_for_selector("[data-testid=pager] >> text=groups 1–2 of 3")
        assert "order=size" in page.evaluate("location.hash")
        assert page.locator("[data-testid=group]").first.locator(
            "[data-testid=member]").count() == 3  # the largest group first

        pager.locator("[data-testid=move-all]").click()  # no folder: refused, nothing moved
        page.wait_for_selector("[data-testid=move-all-status] >> text=choose a folder")
        aside = tmp_path / "aside"
        page.fill("[data-testid=move-to]", str(aside))
        assert "4 files" in pager.locator("[data-testid=move-all]").inner_text()
        page.click("[data-testid=move-all]")
        page.wait_for_selector("[data-testid=notice] >> text=Moved the others of 3 groups")
        assert len(list(aside.glob("imgsearch-moves-*.jsonl"))) == 1  # one log, one undo
        assert len(list(photos.iterdir())) == 6
        page.wait_for_selector("[data-testid=duplicates] >> text=0 group(s)")
        page.click("[data-testid=undo]")
        page.wait_for_selector("[data-testid=notice] >> text=Put back 4 file(s)")
        page.wait_for_selector("[data-testid=pager] >> text=of 3")
        assert len(list(photos.iterdir())) == 10
        refused = ("Failed to load resource: the server responded with a status of 400 "
                   "(Bad Request)")
        assert errors == [refused]  # the move without a folder, and nothing else


def test_verification_is_shown_where_the_api_gives_it(dup_server, browser):
    """The fields of geometric verification (verified, shared, inliers, box, keeper_reason)
    added to the API's answers on their way to the page: it draws them."""
    page, errors = open_page(browser, "about:blank")

    def add_fields(route):
        data = route.fetch().json()
        if "groups" in data:
            for g in data["groups"]:
                g["keeper_reason"] = "original: the others are crops/edits of it"
                g["keeper"].update(inliers=None, shared=None, box=None)
                for m in g["others"]:
                    m.update(inliers=152, shared=0.843,
                             box=[[0.1, 0.1], [0.9, 0.12], [0.88, 0.9], [0.12, 0.88]])
        else:  # whichever photo that is, only its first hit is a verified copy
            for hits in data["results"].values():
                for h in hits:
                    h.update(verified=False, shared=0.0, inliers=0)
                hits[0].update(verified=True, shared=0.5, inliers=40)
                hits[1].update(verified=False, shared=0.1, inliers=3)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(data))

    page.route("**/api/duplicates?*", add_fields)
    page.route("**/api/similar/*", add_fields)
    page.goto(dup_server + "/#/duplicates")
    group = group_of(page, "orig.png")
    group.wait_for()
    assert "keeper: original: the others are crops/edits of it" in group.inner_text()
    other = group.locator(".member:not(.keeper)").first
    assert "84% shared · 152 inliers" in other.inner_text()
    polygon = other.locator("[data-testid=region] polygon")
    assert polygon.get_attribute("points") == "0.1,0.1 0.9,0.12 0.88,0.9 0.12,0.88"
    outline, picture = polygon.bounding_box(), other.locator("img").bounding_box()
    assert abs(outline["x"] - (picture["x"] + 0.1 * picture["width"])) < 3  # on the picture
    assert abs(outline["width"] - 0.8 * picture["width"]) < 4
    assert group.locator(".keeper [data-testid=region]").count() == 0

    page.goto(dup_server + "/#/photo/1")
    page.wait_for_selector("[data-testid=detail] [data-testid=results] figure")
    rows = page.locator("[data-testid=detail] [data-testid=results]")
    for n in range(rows.count()):
        badges = rows.nth(n).locator("[data-testid=verified]")
        assert badges.count() == 1 and badges.inner_text() == "verified copy · 50% shared"
        assert rows.nth(n).locator("figure").first.locator("[data-testid=verified]").count() == 1
    assert errors == []


def test_the_page_shows_a_model_training_as_a_progress_bar(photo_dir, tmp_path, browser):
    """A training run in progress (its progress file, written by this process as a run
    writes it) shows as a progress bar with its step and best self-check so far; refreshed,
    and then said interrupted once the run says it stopped."""
    import time

    from imgsearch.store import write_json

    build(photo_dir, tmp_path / "idx")
    progress = tmp_path / "idx" / "training" / "ae.progress.json"
    progress.parent.mkdir(exist_ok=True)
    run = {"method": "ae", "pid": os.getpid(), "step": 120, "work": 300,
           "best_selfcheck": 0.8512, "started": time.time(), "updated": time.time()}
    write_json(progress, run)
    with serving(tmp_path / "idx") as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        bar = page.wait_for_selector("[data-testid=training] progress")
        assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("120", "300")
        text = page.inner_text("[data-testid=training]")
        assert "ae training" in text and "120/300 steps" in text and "0.851" in text
        write_json(progress, {**run, "step": 240, "state": "interrupted"})
        page.wait_for_function("document.querySelector('#training').innerText"
                               ".includes('interrupted')", timeout=15_000)  # refreshed
        assert page.get_attribute("[data-testid=training] progress", "value") == "240"
        assert "imgsearch index` resumes it" in page.inner_text("[data-testid=training]")
