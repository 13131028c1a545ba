"""The web API through the ASGI test client: every endpoint, every error, traversal attempts,
concurrent requests, and a re-index picked up while serving."""

import dataclasses
import io
import json
import os
import re
import struct
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imgsearch.config import IndexConfig
from imgsearch.copies import review
from imgsearch.images import DECODE_VERSION
from imgsearch.pipeline import update_index
from imgsearch.search import Hit
from imgsearch.server import create_app
from imgsearch.workspace import Workspace

from .conftest import add_copies_of_img00, copied_scenes, find, linear_dng, pattern, serving


def build_index(photos, index):
    """``index`` of ``photos`` by pixels and pca, small."""
    ws = Workspace.create(index, IndexConfig(input_size=32, pixel_size=16, code_dim=8))
    update_index(ws, photos, ["pixels", "pca"], workers=1)
    ws.close()
    return index


@pytest.fixture
def index(photo_dir, tmp_path):
    return build_index(photo_dir, tmp_path / "idx")


@pytest.fixture
def client(index):
    with TestClient(create_app(index)) as c:
        yield c


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def bomb() -> bytes:
    """A valid PNG header declaring 100,000 x 100,000 pixels."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_page_and_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>imgsearch</title>" in page.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.css").status_code == 200


def test_info_and_pages_of_images(client):
    info = client.get("/api/info").json()
    assert info["counts"]["indexed"] == 12 and set(info["methods"]) == {"pixels", "pca"}
    assert info["preferred"] in ("pixels", "pca") and info["preferred_because"]
    first = client.get("/api/images?page=1&per=5").json()
    last = client.get("/api/images?page=3&per=5").json()
    assert first["total"] == 12 and len(first["images"]) == 5 and len(last["images"]) == 2
    assert {"id", "name", "width", "height"} <= set(first["images"][0])
    assert "path" not in first["images"][0]  # names only: no folder layout leaks


def test_similar_by_each_method(client):
    some = client.get("/api/images").json()["images"][3]
    data = client.get(f"/api/similar/{some['id']}?method=all&k=5").json()
    assert set(data["results"]) == {"pixels", "pca"}
    hit_fields = {f.name for f in dataclasses.fields(Hit)} - {"path"} | {"name"}
    for hits in data["results"].values():
        assert len(hits) == 5 and some["id"] not in {h["id"] for h in hits}
        assert all(set(h) == hit_fields for h in hits)  # every field of a hit (verified,
        #                                                 shared, ...), no path
        assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    one = client.get(f"/api/similar/{some['id']}?method=pca&k=3").json()
    assert list(one["results"]) == ["pca"]
    default = client.get(f"/api/similar/{some['id']}").json()
    assert list(default["results"]) == [client.get("/api/info").json()["preferred"]]


def test_search_with_an_upload_finds_the_photo(client, photo_dir):
    target = find(photo_dir, "img05.gif")
    data = client.post("/api/search?method=pixels&k=3",
                       files={"file": ("q.png", png(Image.open(target).convert("RGB")))}).json()
    assert data["results"]["pixels"][0]["name"] == "img05.gif"


def test_a_raw_upload_is_read_as_raw(client, photo_dir, tmp_path):
    pytest.importorskip("rawpy")
    target = np.asarray(Image.open(find(photo_dir, "img05.gif")).convert("RGB"))
    linear_dng(tmp_path / "q.dng", target)
    data = client.post("/api/search?method=pixels&k=3",
                       files={"file": ("q.dng", (tmp_path / "q.dng").read_bytes())}).json()
    assert data["results"]["pixels"][0]["name"] == "img05.gif"


@pytest.mark.parametrize("body, status, says", [
    (b"not an image at all", 415, "not an image"),
    (None, 413, "too many pixels"),  # the bomb
])
def test_bad_uploads_get_a_4xx_and_the_server_keeps_going(client, body, status, says):
    r = client.post("/api/search", files={"file": ("x.png", body or bomb())})
    assert r.status_code == status and says in r.json()["detail"]
    assert client.get("/api/info").status_code == 200


def test_oversized_upload_is_refused(client, monkeypatch):
    import imgsearch.server as server

    monkeypatch.setattr(server, "MAX_UPLOAD", 1000)
    r = client.post("/api/search", files={"file": ("big.png", b"\0" * 2000)})
    assert r.status_code == 413 and "upload over" in r.json()["detail"]


@pytest.mark.parametrize("url, status", [
    ("/api/similar/99999", 404), ("/api/similar/abc", 422), ("/api/similar/1?k=0", 400),
    ("/api/similar/1?method=nope", 400), ("/api/similar/1?method=ae", 404),
    ("/api/images?page=0", 422), ("/thumb/99999", 404), ("/api/duplicates?threshold=-1", 422),
])
def test_errors(client, url, status):
    r = client.get(url)
    assert r.status_code == status and r.json()["detail"]


def test_thumbnails_are_made_once_cached_and_carry_headers(client, index):
    r = client.get("/thumb/1")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "max-age" in r.headers["cache-control"] and r.headers["etag"]
    im = Image.open(io.BytesIO(r.content))
    assert max(im.size) <= 256
    cached = list((index / "thumbs").glob("1-*.jpg"))
    assert len(cached) == 1
    assert client.get("/thumb/1").content == cached[0].read_bytes()


def test_a_thumbnail_made_under_older_decoding_rules_is_made_again(client, index):
    ws = Workspace.open(index)
    row = ws.catalog.get(2)
    ws.close()
    old = index / "thumbs" / f"2-{row.hash[:12]}.jpg"  # the name before decoding versions
    old.parent.mkdir(exist_ok=True)
    Image.new("RGB", (64, 64), (255, 0, 0)).save(old)
    r = client.get("/thumb/2")
    assert r.status_code == 200
    assert Image.open(io.BytesIO(r.content)).size != (64, 64)  # made from the photo
    assert [p.name for p in (index / "thumbs").glob("2-*.jpg")] == [
        f"2-{row.hash[:12]}-d{DECODE_VERSION}.jpg"]  # the stale one removed


@pytest.mark.parametrize("url", [
    "/static/../server.py", "/static/..%2Fserver.py", "/static/%2e%2e%2fcli.py",
    "/static//etc/passwd", "/static/%2Fetc%2Fpasswd", "/thumb/..%2F..%2Fcatalog.db",
    "/thumb/%2Fetc%2Fpasswd", "/static/index.html", "/../../etc/passwd",
])
def test_path_traversal_is_refused(client, url):
    r = client.get(url)
    assert r.status_code in (404, 422)
    assert b"root:" not in r.content and b"SQLite" not in r.content and b"import" not in \
        r.content


def test_a_file_swapped_for_a_symlink_out_of_the_folder_is_not_served(client, index,
                                                                      photo_dir, tmp_path):
    secret = tmp_path / "secret.png"
    Image.fromarray(pattern(99)).save(secret)
    photo = find(photo_dir, "img07.png")
    ws = Workspace.open(index)
    row = ws.catalog.by_path(str(photo))
    ws.close()
    photo.unlink()
    os.symlink(secret, photo)  # the catalog's path now leads out of the folder
    r = client.get(f"/thumb/{row.id}")
    assert r.status_code == 404 and "changed since it was indexed" in r.json()["detail"]


@pytest.mark.slow
def test_concurrent_requests_to_a_real_server(index):
    """Many requests at once to `imgsearch serve` (uvicorn's worker threads, as a browser
    makes them: the test client would run them in one thread)."""
    with serving(index) as url:
        def get(path):
            with urllib.request.urlopen(url + path, timeout=30) as r:
                return r.status, r.read()

        ids = [im["id"] for im in json.loads(get("/api/images")[1])["images"]]
        paths = [p for i in ids for p in (f"/api/similar/{i}?method=all&k=4", f"/thumb/{i}",
                                          "/api/info", "/api/duplicates")] * 2
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(get, paths))
    assert [status for status, _ in results] == [200] * len(paths)
    similar = [json.loads(body) for (_, body), p in zip(results, paths) if "similar" in p]
    assert all(set(s["results"]) == {"pixels", "pca"} for s in similar)


def test_duplicates_and_map(client, index, photo_dir):
    dups = client.get("/api/duplicates?method=pixels").json()
    assert dups["method"] == "pixels" and dups["groups"] == [] and dups["images"] == 12
    got = client.get("/api/map?method=pca&n=10").json()
    assert len(got["points"]) == 10
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in got["points"])


def test_a_reindex_beside_the_server_is_picked_up(client, index, photo_dir):
    first = client.get("/api/info").json()["counts"]["indexed"]
    Image.fromarray(pattern(55)).save(photo_dir / "new.png")
    ws = Workspace.open(index)
    update_index(ws, photo_dir, ["pixels", "pca"], workers=1)
    ws.close()
    assert client.get("/api/info").json()["counts"]["indexed"] == first + 1
    data = client.post("/api/search?method=pca&k=1",
                       files={"file": ("q.png", png(Image.fromarray(pattern(55))))}).json()
    assert data["results"]["pca"][0]["name"] == "new.png"  # the new build answers


# -- reviewing duplicates: move the others away (and back), dismiss a group ------------------
DUPS = "method=pixels&threshold=3"  # the copies of img00 within it, distinct photos beyond


@pytest.fixture
def dup_index(photo_dir, tmp_path):
    """The 12 photos and three copies of img00 (larger, a smaller JPEG, a crop of it)."""
    add_copies_of_img00(photo_dir)
    return build_index(photo_dir, tmp_path / "idx")


@pytest.fixture
def dup_client(dup_index):
    with TestClient(create_app(dup_index)) as c:
        yield c


def the_group(client) -> dict:
    (group,) = client.get(f"/api/duplicates?{DUPS}").json()["groups"]
    return group


def test_the_copies_form_one_group(dup_client):
    g = the_group(dup_client)
    assert g["keeper"]["name"] == "orig.png"  # the highest resolution
    assert sorted(m["name"] for m in g["others"]) == ["crop.png", "img00.jpg", "small.jpg"]
    assert "path" not in g["keeper"] and all("path" not in m for m in g["others"])


def test_similar_and_search_put_verified_copies_first(dup_client, photo_dir):
    g = the_group(dup_client)
    copies = {m["id"] for m in g["others"]}
    data = dup_client.get(f"/api/similar/{g['keeper']['id']}?method=pixels&k=6").json()
    hits = data["results"]["pixels"]
    assert data["verified"] is True
    assert {h["id"] for h in hits[:3]} == copies and all(h["verified"] for h in hits[:3])
    assert all(h["verified"] is False for h in hits[3:]) and len(hits) == 6
    assert all(0 < h["shared"] <= 1 and h["inliers"] >= 15 for h in hits[:3])
    plain = dup_client.get(f"/api/similar/{g['keeper']['id']}?method=pixels&k=6"
                           "&verify=false").json()
    assert plain["verified"] is False
    assert all(h["verified"] is None for h in plain["results"]["pixels"])
    crop = (photo_dir / "copies" / "crop.png").read_bytes()
    found = dup_client.post("/api/search?method=all&k=4",
                            files={"file": ("q.png", crop, "image/png")}).json()
    for hits in found["results"].values():  # every method: the copies first
        assert hits[0]["verified"] is True and hits[0]["id"] in copies | {g["keeper"]["id"]}


def test_moving_refuses_a_missing_or_relative_folder_or_one_inside_the_collection(
        dup_client, photo_dir, tmp_path):
    g = the_group(dup_client)
    ids = [m["id"] for m in g["others"]]
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    for to, status, says in [
        ("", 400, "choose a folder"), ("   ", 400, "choose a folder"),
        ("aside", 400, "full path"),
        (str(photo_dir / "aside"), 400, "inside the indexed folder"),
        (str(photo_dir), 400, "inside the indexed folder"),
        (str(tmp_path / "notes.txt"), 400, "is a file"),
    ]:
        r = dup_client.post("/api/duplicates/move", json={"ids": ids, "to": to,
                                                          "method": "pixels", "threshold": 3})
        assert r.status_code == status and says in r.json()["detail"], (to, r.json())
    assert len(list(photo_dir.rglob("*.*"))) == 15  # nothing moved
    assert not (photo_dir / "aside").exists()


def test_only_the_others_of_one_group_can_be_moved(dup_client, tmp_path):
    g = the_group(dup_client)
    for ids in ([g["keeper"]["id"]], [g["others"][0]["id"], 1_000_000], []):
        r = dup_client.post("/api/duplicates/move", json={
            "ids": ids, "to": str(tmp_path / "aside"), "method": "pixels", "threshold": 3})
        assert r.status_code == 409 and "reload the page" in r.json()["detail"]
    assert not (tmp_path / "aside").exists()


def test_move_the_others_away_then_undo(dup_client, photo_dir, tmp_path):
    g = the_group(dup_client)
    before = {p: p.read_bytes() for p in photo_dir.rglob("*.*")}
    others = {m["name"]: m["id"] for m in g["others"]}
    aside = tmp_path / "aside"
    r = dup_client.post("/api/duplicates/move", json={
        "ids": list(others.values()), "to": str(aside), "method": "pixels", "threshold": 3})
    assert r.status_code == 200, r.json()
    moved = r.json()
    assert moved["moved"] == 3 and moved["to"] == str(aside)
    log = Path(moved["log"])
    assert log.parent == aside and re.fullmatch(r"imgsearch-moves-\d{8}-\d{6}\.jsonl", log.name)
    assert sorted(p.relative_to(aside).as_posix() for p in aside.rglob("*.*")
                  if p != log) == ["a/b/img00.jpg", "copies/crop.png", "copies/small.jpg"]
    assert (photo_dir / "copies" / "orig.png").is_file()  # the keeper stays
    assert not (photo_dir / "a" / "b" / "img00.jpg").exists()
    assert dup_client.get(f"/api/duplicates?{DUPS}").json()["groups"] == []  # files gone

    back = dup_client.post("/api/duplicates/undo", json={"log": str(log)})
    assert back.status_code == 200 and back.json()["restored"] == 3
    assert {p: p.read_bytes() for p in photo_dir.rglob("*.*")} == before  # every byte back
    assert the_group(dup_client)["keeper"]["id"] == g["keeper"]["id"]

    again = dup_client.post("/api/duplicates/move", json={  # a second log, never the first
        "ids": [others["small.jpg"]], "to": str(aside), "method": "pixels", "threshold": 3})
    assert again.status_code == 200 and again.json()["moved"] == 1
    assert Path(again.json()["log"]) != log and log.is_file()
    assert sorted(m["name"] for m in the_group(dup_client)["others"]) == [
        "crop.png", "img00.jpg"]


@pytest.mark.parametrize("log, status", [
    ("relative/imgsearch-moves-20240101-120000.jsonl", 400), ("/etc/passwd", 400),
    ("/nowhere/imgsearch-moves-20240101-120000.jsonl", 404),
])
def test_undo_takes_only_a_move_log(dup_client, log, status):
    r = dup_client.post("/api/duplicates/undo", json={"log": log})
    assert r.status_code == status and r.json()["detail"]


def test_dismissing_a_group_hides_it(dup_client, dup_index):
    g = the_group(dup_client)
    ids = [g["keeper"]["id"], *(m["id"] for m in g["others"])]
    some = dup_client.post("/api/duplicates/dismiss", json={"ids": ids[:2]})
    assert some.status_code == 200 and some.json() == {"dismissed": 1}
    assert the_group(dup_client)["keeper"]["id"] == ids[0]  # other pairs still undecided
    r = dup_client.post("/api/duplicates/dismiss", json={"ids": ids})
    assert r.status_code == 200 and r.json() == {"dismissed": 5}  # 6 pairs, 1 known
    assert review.dismissed(dup_index) == {(min(a, b), max(a, b)) for n, a in enumerate(ids)
                                           for b in ids[n + 1:]}
    assert dup_client.get(f"/api/duplicates?{DUPS}").json()["groups"] == []


@pytest.mark.parametrize("ids, status, says", [
    ([1], 400, "two photos or more"), ([1, 99999], 404, "no image with id 99999"),
])
def test_dismiss_errors(dup_client, ids, status, says):
    r = dup_client.post("/api/duplicates/dismiss", json={"ids": ids})
    assert r.status_code == status and says in r.json()["detail"]


def test_duplicates_of_all_methods_at_once_is_refused(dup_client):
    r = dup_client.get("/api/duplicates?method=all")
    assert r.status_code == 400 and "one method" in r.json()["detail"]


# -- the review at scale: pages of groups, in an order; every group moved under one log -------
@pytest.fixture
def groups_client(tmp_path):
    """Six distinct photos, copies of three of them: three groups (conftest.copied_scenes)."""
    photos = copied_scenes(tmp_path / "photos")
    with TestClient(create_app(build_index(photos, tmp_path / "idx"))) as c:
        yield c, photos, tmp_path / "idx"


def test_groups_come_a_page_at_a_time_in_an_order(groups_client):
    client, _, _ = groups_client
    ask = "/api/duplicates?method=pixels&threshold=3"
    by_size = client.get(f"{ask}&order=size&limit=2").json()
    assert by_size["total"] == 3 and by_size["numbers"] == [1, 2] and by_size["others"] == 4
    assert [len(g["others"]) for g in by_size["groups"]] == [2, 1]
    rest = client.get(f"{ask}&order=size&limit=2&offset=2").json()
    assert rest["numbers"] == [3] and len(rest["groups"]) == 1
    keepers = [g["keeper"]["name"][:2] for g in by_size["groups"] + rest["groups"]]
    assert sorted(keepers) == ["p0", "p1", "p2"]  # one group for each photo copied
    space = client.get(f"{ask}&order=space").json()
    freed = [sum(m["size"] for m in g["others"]) for g in space["groups"]]
    assert freed == sorted(freed, reverse=True) and space["freed"] == sum(freed)
    sure = client.get(f"{ask}&order=confidence").json()["groups"]
    weakest = [min(m["shared"] for m in g["others"]) for g in sure]
    assert weakest == sorted(weakest, reverse=True)
    one = sure[-1]["keeper"]["id"]
    only = client.get(f"{ask}&order=confidence&keeper={one}").json()
    assert only["numbers"] == [3] and only["groups"][0]["keeper"]["id"] == one
    assert client.get(f"{ask}&order=random").status_code == 422


def test_every_group_moves_under_one_log_and_one_undo_puts_all_back(groups_client, tmp_path):
    client, photos, _ = groups_client
    aside = tmp_path / "aside"
    ask = {"to": str(aside), "method": "pixels", "threshold": 3}
    stale = client.post("/api/duplicates/move-all", json={**ask, "groups": 2})
    assert stale.status_code == 409 and "3 groups" in stale.json()["detail"]
    r = client.post("/api/duplicates/move-all", json={**ask, "groups": 3}).json()
    assert r["groups"] == 3 and r["moved"] == 4 and Path(r["log"]).parent == aside
    assert len(list(photos.iterdir())) == 6  # the keepers and the photos never copied
    assert client.get("/api/duplicates?method=pixels&threshold=3").json()["total"] == 0
    assert len(list(aside.glob("imgsearch-moves-*.jsonl"))) == 1  # one log for all
    back = client.post("/api/duplicates/undo", json={"log": r["log"]}).json()
    assert back["restored"] == 4
    assert client.get("/api/duplicates?method=pixels&threshold=3").json()["total"] == 3


def test_while_the_index_finds_duplicates_the_page_is_told_its_progress(groups_client):
    import time

    client, _, index = groups_client
    progress = index / "duplicates-progress.json"
    progress.write_text(json.dumps({"method": "pixels", "phase": "verifying", "done": 10,
                                    "total": 40, "pid": os.getpid(), "time": time.time()}))
    data = client.get("/api/duplicates?method=pixels").json()
    assert data["finding"] == {"method": "pixels", "phase": "verifying", "done": 10,
                               "total": 40} and data["groups"] == []
    progress.write_text(json.dumps({"method": "pixels", "phase": "verifying", "done": 10,
                                    "total": 40, "pid": os.getpid(), "time": 0}))
    assert "finding" not in client.get("/api/duplicates?method=pixels").json()  # stale
