"""Near-duplicate groups: the engine on planted codes, and `imgsearch duplicates` end to end."""

import csv
import io
import json
import os
import time

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsearch.catalog import Row
from imgsearch.cli import app
from imgsearch.copies import candidates
from imgsearch.copies.calibration import threshold_between
from imgsearch.copies.candidates import pairs_from, pairs_within, views
from imgsearch.copies.groups import around_originals, complete_groups, farthest_l2, find_groups
from imgsearch.copies.keeper import choose_keeper

from .conftest import find

runner = CliRunner()


def planted(n_groups=30, size=3, singles=400, d=16, seed=0):
    """Codes: groups of near-identical codes (noise 0.01) among scattered singles."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, d))
    groups = np.repeat(centres, size, 0) + 0.01 * rng.normal(size=(n_groups * size, d))
    codes = np.concatenate([groups, rng.normal(size=(singles, d))]).astype(np.float32)
    truth = [list(range(g * size, (g + 1) * size)) for g in range(n_groups)]
    return codes, truth


def rows_for(n):
    return {i: Row(i, f"/p/{i}.jpg", 1000, float(i), "h", 100, 100, "JPEG", "indexed", None, 1)
            for i in range(n)}


def test_threshold_sits_between_copies_and_distinct_neighbours():
    copies = np.linspace(0.0, 1.0, 101)  # 95th percentile: 0.95
    distinct = np.linspace(2.0, 4.0, 101)
    cal = threshold_between(copies, distinct)
    assert cal.threshold == pytest.approx(0.95) and cal.distinct_within == 0
    assert cal.copies_within == pytest.approx(96 / 101)
    overlapping = threshold_between(copies, np.linspace(0.7, 3.0, 101))
    assert overlapping.threshold == pytest.approx(0.746)  # 2nd percentile of the distinct side
    # the collection's own duplicates (nearest distances under the copies' median) are not
    # taken for distinct images, and the threshold never falls below that median
    crowded = threshold_between(copies, np.r_[np.zeros(60), np.linspace(2.0, 4.0, 41)])
    assert crowded.threshold == pytest.approx(0.95)
    assert threshold_between(copies, np.linspace(0.0, 0.6, 50)).threshold == pytest.approx(
        0.5, abs=0.01)  # just above the copies' median


@pytest.mark.parametrize("exact_max", [100_000, 100])  # exact search, and the IVF path
def test_planted_groups_are_found_exactly(monkeypatch, exact_max):
    monkeypatch.setattr(candidates, "EXACT_MAX", exact_max)
    codes, truth = planted()
    groups = find_groups(np.arange(len(codes)), codes, rows_for(len(codes)), 0.2)
    found = sorted(sorted([g.keeper.id, *(m.id for m in g.others)]) for g in groups)
    assert found == truth


def test_complete_linkage_never_chains_distinct_photos():
    # 0 -- 1 -- 2 on a line, 0.1 apart: 0 and 2 are 0.2 apart, over the threshold of 0.15,
    # so single linkage's chain [0, 1, 2] is refused and 2 stays alone; 5 and 6 pair up
    codes = np.array([[0.0], [0.1], [0.2], [5], [6], [9.0], [9.05], [20]], np.float32)
    i, j, d = pairs_within(codes, 0.15, k=4)
    assert np.all(np.diff(d) >= 0) and set(zip(i.tolist(), j.tolist())) == {(0, 1), (1, 2),
                                                                            (5, 6)}
    groups = complete_groups(8, i, j, 0.15, farthest_l2(codes))
    assert groups in ([[0, 1], [5, 6]], [[1, 2], [5, 6]])
    # within a looser threshold every pair fits, and the three join
    i, j, _ = pairs_within(codes, 0.25, k=4)
    assert complete_groups(8, i, j, 0.25, farthest_l2(codes)) == [[0, 1, 2], [5, 6]]


def test_complete_linkage_keeps_every_pair_of_a_group_within_the_threshold():
    rng = np.random.default_rng(0)
    codes = np.cumsum(rng.normal(0, 0.05, (300, 8)), axis=0).astype(np.float32)  # a long walk
    i, j, _ = pairs_within(codes, 0.2)
    far = farthest_l2(codes)
    groups = complete_groups(len(codes), i, j, 0.2, far)
    assert groups and all(far(g, g) <= 0.2 + 1e-5 for g in groups)
    # the product's path (find_groups) gives the same groups
    found = find_groups(np.arange(len(codes)), codes, rows_for(len(codes)), 0.2)
    assert sorted(sorted([g.keeper.id, *(m.id for m in g.others)]) for g in found) == groups


def test_keeper_is_highest_resolution_then_largest_then_oldest():
    codes = np.zeros((4, 2), np.float32)
    rows = {0: Row(0, "/a", 500, 3.0, "h", 100, 100, "JPEG", "indexed", None, 1),
            1: Row(1, "/b", 900, 2.0, "h", 100, 100, "JPEG", "indexed", None, 1),
            2: Row(2, "/c", 900, 1.0, "h", 100, 100, "JPEG", "indexed", None, 1),
            3: Row(3, "/d", 100, 0.0, "h", 50, 50, "JPEG", "indexed", None, 1)}
    (group,) = find_groups(np.arange(4), codes, rows, 0.1)
    assert group.keeper.id == 2  # same pixels as 1 and same size: the oldest
    assert [m.id for m in group.others] == [1, 0, 3] or {m.id for m in group.others} == {0, 1, 3}
    bigger = {**rows, 3: Row(3, "/d", 100, 0.0, "h", 400, 400, "JPEG", "indexed", None, 1)}
    assert find_groups(np.arange(4), codes, bigger, 0.1)[0].keeper.id == 3


@pytest.fixture
def with_copies(photo_dir, tmp_path):
    """The 12 generated photos plus: an exact copy, a half-size copy and a JPEG re-save."""
    src = find(photo_dir, "img01.png")
    (photo_dir / "copies").mkdir()
    (photo_dir / "copies" / "exact.png").write_bytes(src.read_bytes())
    Image.open(src).resize((48, 48)).save(photo_dir / "copies" / "small.png")
    Image.open(find(photo_dir, "img04.tiff")).convert("RGB").save(
        photo_dir / "copies" / "resaved.jpg", quality=60)
    return photo_dir, indexed(photo_dir, tmp_path / "idx", "pixels,pca")


def indexed(photos, index, methods: str):
    """``index`` of the folder ``photos`` with ``methods``, at input size 32."""
    result = runner.invoke(app, ["index", str(photos), "--index", str(index), "--methods",
                                 methods, "--input-size", "32", "--workers", "1"])
    assert result.exit_code == 0, result.output
    return index


def groups_of(data):
    return sorted(sorted([g["keeper"]["path"].rsplit("/", 1)[-1],
                          *(m["path"].rsplit("/", 1)[-1] for m in g["others"])])
                  for g in data["groups"])


def test_duplicates_json_and_csv(with_copies):
    _, index = with_copies
    result = runner.invoke(app, ["duplicates", "--index", str(index), "--method", "pixels",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["threshold_from"] == "calibrated now"  # 15 images: no self-check at build
    assert groups_of(data) == [["exact.png", "img01.png", "small.png"],
                               ["img04.tiff", "resaved.jpg"]]
    keepers = {g["keeper"]["path"].rsplit("/", 1)[-1] for g in data["groups"]}
    assert keepers == {"img01.png", "img04.tiff"}  # 96x96 originals beat 48x48 and re-saves
    table = list(csv.reader(io.StringIO(runner.invoke(
        app, ["duplicates", "--index", str(index), "--method", "pixels", "--csv"]).stdout)))
    assert table[0][:4] == ["group", "role", "id", "path"] and len(table) == 6
    none = runner.invoke(app, ["duplicates", "--index", str(index), "--method", "pixels",
                               "--threshold", "0", "--no-verify", "--json"])
    assert groups_of(json.loads(none.stdout)) == [["exact.png", "img01.png"]]  # identical only
    # codes propose only the identical pair at distance 0, but the local features still
    # propose the re-saved copy (the 48-pixel one has too few keypoints for their votes)
    voted = runner.invoke(app, ["duplicates", "--index", str(index), "--method", "pixels",
                                "--threshold", "0", "--json"])
    assert groups_of(json.loads(voted.stdout)) == [["exact.png", "img01.png"],
                                                   ["img04.tiff", "resaved.jpg"]]


def test_move_aside_updates_the_index_and_undo_puts_back(with_copies, tmp_path):
    photos, index = with_copies
    aside = tmp_path / "aside"
    args = ["duplicates", "--index", str(index), "--method", "pixels", "--move-to", str(aside)]
    refused = runner.invoke(app, args, input="n\n")
    assert refused.exit_code == 1 and not aside.exists()  # asked, and told no
    inside = runner.invoke(app, [*args[:-1], str(photos / "aside"), "--yes"])
    assert inside.exit_code == 1 and "inside the indexed folder" in inside.stderr
    moved = runner.invoke(app, [*args, "--yes", "--montage", str(tmp_path / "sheets")])
    assert moved.exit_code == 0, moved.output
    assert sorted(p.relative_to(aside).as_posix() for p in aside.rglob("*.*")
                  if p.suffix != ".jsonl") == ["copies/exact.png", "copies/resaved.jpg",
                                               "copies/small.png"]
    assert len(list((tmp_path / "sheets").glob("group-*.png"))) == 2
    info = json.loads(runner.invoke(app, ["info", "--index", str(index), "--json"]).stdout)
    assert info["counts"]["indexed"] == 12 and info["counts"]["removed"] == 3
    log = next(aside.glob("imgsearch-moves-*.jsonl"))
    back = runner.invoke(app, ["duplicates", "--index", str(index), "--undo", str(log)])
    assert back.exit_code == 0, back.output
    assert ((photos / "copies" / "small.png").is_file() and not (aside / "copies").exists()) or \
        not any((aside / "copies").iterdir())
    info = json.loads(runner.invoke(app, ["info", "--index", str(index), "--json"]).stdout)
    assert info["counts"]["indexed"] == 15


@pytest.fixture
def edited_collection(tmp_path):
    """Six distinct textured photos; the first with a crop, a quarter turn, a caption, a white
    border and a half-size copy written after it; the second with a mirror."""
    from PIL import ImageOps

    from .conftest import scene

    photos = tmp_path / "photos"
    photos.mkdir()
    for s in range(6):
        scene(100 + s).save(photos / f"photo{s}.jpg", quality=92)
    time.sleep(0.05)  # the copies are made after their originals
    first = scene(100)
    first.crop((60, 40, 420, 310)).save(photos / "crop.png")
    first.rotate(90, expand=True).save(photos / "turned.png")
    ImageOps.expand(first, border=50, fill="white").save(photos / "border.png")
    first.resize((240, 180)).save(photos / "small.jpg", quality=80)
    ImageOps.mirror(scene(101)).save(photos / "mirror.png")
    return photos, indexed(photos, tmp_path / "idx", "pixels")


def test_verified_groups_find_edits_and_keep_the_original(edited_collection):
    _, index = edited_collection
    result = runner.invoke(app, ["duplicates", "--index", str(index), "--method", "pixels",
                                 "--threshold", "100", "--json"])  # every pair a candidate
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verified"] is True
    assert groups_of(data) == [["border.png", "crop.png", "photo0.jpg", "small.jpg",
                                "turned.png"], ["mirror.png", "photo1.jpg"]]
    first = next(g for g in data["groups"] if len(g["others"]) == 4)
    assert first["keeper"]["path"].endswith("photo0.jpg"), first
    assert first["keeper_reason"].startswith("original"), first
    for m in first["others"]:
        assert m["inliers"] >= 15 and 0 < m["shared"] <= 1 and len(m["box"]) == 4, m
    crop = next(m for m in first["others"] if m["path"].endswith("crop.png"))
    assert crop["shared"] > 0.85  # the crop is explained whole by its original
    border = next(m for m in first["others"] if m["path"].endswith("border.png"))
    xs = [x for x, _ in border["box"]]
    assert min(xs) > 0.05 and max(xs) < 0.95  # the original sits inside the border
    unverified = json.loads(runner.invoke(app, [
        "duplicates", "--index", str(index), "--method", "pixels", "--threshold", "100",
        "--no-verify", "--json"]).stdout)
    assert unverified["verified"] is False
    assert len(groups_of(unverified)) == 1  # by distance alone, everything is one group


def test_keep_rules_and_threshold_multiples(edited_collection):
    _, index = edited_collection
    base = ["duplicates", "--index", str(index), "--method", "pixels", "--threshold", "100",
            "--json"]

    def keeper(*extra):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        g = next(g for g in data["groups"] if len(g["others"]) == 4)
        return g["keeper"]["path"].rsplit("/", 1)[-1], g["keeper_reason"]

    assert keeper("--keep", "largest")[0] == "border.png"  # the most pixels
    assert keeper("--keep", "newest")[0] in {"border.png", "small.jpg", "turned.png",
                                             "crop.png"}
    assert keeper("--keep", "*.png")[0] != "photo0.jpg"
    assert keeper("--keep", "*.png")[1] == "matches *.png"
    twice = runner.invoke(app, ["duplicates", "--index", str(index), "--method", "pixels",
                                "--threshold", "2x", "--json"])
    assert twice.exit_code == 0, twice.output
    assert json.loads(twice.stdout)["threshold_from"].startswith("2x")
    bad = runner.invoke(app, ["duplicates", "--index", str(index), "--threshold", "twice"])
    assert bad.exit_code == 1 and "multiple of the calibrated one" in bad.stderr


def test_distinct_photos_are_never_grouped_when_verified(edited_collection):
    _, index = edited_collection
    data = json.loads(runner.invoke(app, [
        "duplicates", "--index", str(index), "--method", "pixels", "--threshold", "100",
        "--json"]).stdout)
    for g in data["groups"]:
        names = {m["path"].rsplit("/", 1)[-1] for m in (g["keeper"], *g["others"])}
        assert len(names & {f"photo{s}.jpg" for s in range(6)}) == 1, names


def test_dismissed_pairs_never_join(edited_collection):
    from imgsearch.catalog import Catalog
    from imgsearch.copies import review

    _, index = edited_collection
    cat = Catalog(index / "catalog.db")
    ids = {r.path.rsplit("/", 1)[-1]: r.id for r in cat.rows()}
    review.dismiss(index, [ids["photo1.jpg"], ids["mirror.png"]])
    for how in ("--verify", "--no-verify"):
        data = json.loads(runner.invoke(app, [
            "duplicates", "--index", str(index), "--method", "pixels", "--threshold", "100",
            "--json", how]).stdout)
        assert data["groups"], how
        for names in groups_of(data):
            assert not {"mirror.png", "photo1.jpg"} <= set(names), (how, names)


class FakeVerifier:
    """match(a, b) from a table of matching.Match (the proven pairs; others not the same)."""

    def __init__(self, table):
        from imgsearch.copies import matching

        self.m = matching
        self.table = table

    def match(self, a, b):
        if (a, b) in self.table:
            return self.table[a, b]
        if (b, a) in self.table:
            return self.m.reverse(self.table[b, a])
        return self.m.NO_MATCH


def placed(x0, y0, x1, y1, shared_b=1.0):
    """A proven match whose b lies at [x0, x1] x [y0, y1] of a's unit frame."""
    from imgsearch.copies import matching

    h = (x1 - x0, 0.0, x0, 0.0, y1 - y0, y0, 0.0, 0.0, 1.0)
    return matching.Match(True, 50, (x1 - x0) * (y1 - y0), shared_b, False, h)


def by_position(pos, neighbours):
    return sorted(pos)  # the smallest position is the original


def smaller_first(p, q):
    return p < q


def test_a_caption_and_a_crop_join_through_their_original():
    # 0: the original; 1: its left-half crop; 2: a captioned copy (1 and 2 are not copies of
    # each other: the caption covers the crop). Complete linkage would split them.
    v = FakeVerifier({(0, 1): placed(0, 0, 0.5, 1), (0, 2): placed(0, 0, 1, 1, 0.9)})
    groups = around_originals(3, [(0, 1), (0, 2)], int, v, by_position, smaller_first)
    assert groups == [[0, 1, 2]]
    # a dismissed pair never joins
    apart = around_originals(3, [(0, 1), (0, 2)], int, v, by_position, smaller_first,
                             lambda a, b: {a, b} == {0, 2})
    assert apart == [[0, 1]]


def test_two_pictures_pasted_into_one_collage_do_not_join_through_it():
    # 0: a collage holding 1 on its left and 2 on its right: both proven in it, but they share
    # no part of it
    v = FakeVerifier({(0, 1): placed(0, 0, 0.5, 1), (0, 2): placed(0.5, 0, 1, 1)})
    (group,) = around_originals(3, [(0, 1), (0, 2)], int, v, by_position, smaller_first)
    assert group[0] == 0 and len(group) == 2


def test_a_second_shot_does_not_bring_its_own_copies_along():
    # 0 and 2 are two shots of one scene, wrongly proven the same (each explains 0.85 of the
    # other); 1 is a copy of 0 and 3 a copy of 2, each explained whole by its own original
    table = {(0, 1): placed(0, 0, 1, 1), (2, 3): placed(0, 0, 1, 1),
             (0, 2): placed(0, 0, 1, 1, 0.85), (0, 3): placed(0, 0, 1, 1, 0.85),
             (1, 2): placed(0, 0, 1, 1, 0.85)}
    v = FakeVerifier(table)
    groups = around_originals(4, list(table), int, v, by_position, smaller_first)
    assert groups == [[0, 1], [2, 3]]


def test_views_propose_a_turned_and_a_bordered_copy():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    pixels[1, :4] = 255  # a uniform top margin
    v, owner = views(pixels)
    assert v.shape[1:] == (32, 32, 3) and len(v) == len(owner)
    assert np.array_equal(v[0], np.rot90(pixels[0]))  # the first quarter turn of image 0
    assert owner.tolist().count(1) == owner.tolist().count(0) + 1  # image 1 less its margin
    # a view's code near another image's code proposes the pair, once, smaller first
    codes = np.array([[0.0, 0], [5, 5], [0.1, 0]], np.float32)
    i, j, d = pairs_from(np.array([[5.0, 5.1]]), np.array([2]), codes, 0.5)
    assert list(zip(i, j)) == [(1, 2)] and np.allclose(d, [0.1])


def test_local_features_vote_for_copies_and_mirrors_only():
    from imgsearch.copies.candidates import votes

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (120, 32), dtype=np.uint8)
    copy = a[:80].copy()
    copy[:, 4:] ^= (rng.random((80, 28)) < 0.05).astype(np.uint8) << 3  # a few bits apart
    other = rng.integers(0, 256, (120, 32), dtype=np.uint8)
    mirror = rng.integers(0, 256, (120, 32), dtype=np.uint8)  # its own descriptors ...
    empty = np.zeros((0, 32), np.uint8)
    direct = [a, copy, other, mirror, empty]
    mirrored = [rng.integers(0, 256, (120, 32), dtype=np.uint8), empty, empty, a[80:], empty]
    i, j, count = votes(direct, mirrored)  # ... and a's among its mirror image's
    found = dict(zip(zip(i.tolist(), j.tolist()), count.tolist()))
    assert set(found) == {(0, 1), (0, 3)}
    assert found[(0, 1)] >= 80 and found[(0, 3)] >= 40
    assert votes(direct, mirrored, least=200)[0].size == 0
    assert votes([empty, empty], [empty, empty])[0].size == 0


def test_the_original_is_kept_over_a_screenshot_of_it_and_a_crop(tmp_path):
    from PIL import ImageDraw

    from imgsearch.copies.verification import Verifier

    from .conftest import scene

    original = scene(120)
    page = Image.new("RGB", (800, 600), (235, 235, 240))
    ImageDraw.Draw(page).rectangle((0, 0, 800, 40), fill=(40, 40, 60))
    page.paste(original, (60, 90))
    files = {"original.jpg": original, "page.png": page,
             "crop.png": original.crop((100, 80, 400, 300))}
    rows = []
    for n, (name, im) in enumerate(files.items()):
        im.save(tmp_path / name)
        rows.append(Row(n, str(tmp_path / name), 1000, float(n), "h", im.width, im.height,
                        "PNG" if name.endswith("png") else "JPEG", "indexed", None, 1))
    v = Verifier(lambda i: rows[i].path, workers=1)
    ranked, reason = choose_keeper(rows, "original", v)
    assert ranked[0].path.endswith("original.jpg"), (ranked, reason)
    # the page holds the original whole, but pasted: ruled out first, not taken for a frame
    assert ranked[-1].path.endswith("page.png") and reason == "original: contains the others"


# -- found at index time, kept, and updated incrementally --------------------------------
def kept_groups(index):
    data = json.loads((index / "duplicates.json").read_text())["duplicates"]
    return groups_of(data), {g["keeper"]["path"].rsplit("/", 1)[-1] for g in data["groups"]}


def test_the_index_finds_the_groups_and_duplicates_reads_them_without_matching(
        edited_collection, monkeypatch):
    from imgsearch.copies import matching

    _, index = edited_collection
    assert (index / "duplicates.json").is_file()  # found by `imgsearch index` itself
    found, _ = kept_groups(index)

    def never(*_):
        raise AssertionError("a pair was matched again")

    monkeypatch.setattr(matching, "match", never)
    result = runner.invoke(app, ["duplicates", "--index", str(index), "--json"])
    assert result.exit_code == 0, result.output
    assert groups_of(json.loads(result.stdout)) == found
    # other options find the groups again, from the verdicts stored with the index: pairs
    # the codes now propose anew would be matched (and fail here); none of these is new
    again = runner.invoke(app, ["duplicates", "--index", str(index), "--keep", "largest",
                                "--json"])
    assert again.exit_code == 0, again.output
    assert groups_of(json.loads(again.stdout)) == found


def test_verdicts_are_stored_and_dropped_when_a_file_changes(edited_collection):
    from imgsearch.copies.evidence import MATCH_VERSION
    from imgsearch.workspace import Workspace

    photos, index = edited_collection
    ws = Workspace.open(index)
    try:
        stored = ws.catalog.db.execute("select a, b, same from pairs").fetchall()
        crop = ws.catalog.by_path(str(photos / "crop.png")).id
        first = ws.catalog.by_path(str(photos / "photo0.jpg")).id
        assert (min(crop, first), max(crop, first), 1) in stored  # proven, kept
        assert any(s == 0 for *_, s in stored)  # refused pairs are kept too
        assert ws.catalog.pairs([(min(crop, first), max(crop, first))], MATCH_VERSION)
    finally:
        ws.close()
    from .conftest import scene

    scene(999).save(photos / "crop.png")  # now another picture
    os.utime(photos / "crop.png", (1, time.time() + 5))
    indexed(photos, index, "pixels")
    ws = Workspace.open(index)
    try:
        pair = (min(crop, first), max(crop, first))
        m = ws.catalog.pairs([pair], MATCH_VERSION)
        assert not m or not ws.catalog.db.execute(
            "select same from pairs where a = ? and b = ?", pair).fetchone()[0]
    finally:
        ws.close()
    found, _ = kept_groups(index)
    assert not any("crop.png" in g for g in found)


def test_groups_after_adding_photos_equal_a_fresh_index_of_the_folder(tmp_path):
    from PIL import ImageOps

    from .conftest import scene

    photos = tmp_path / "photos"
    photos.mkdir()
    for s in range(8):
        scene(200 + s).save(photos / f"p{s}.jpg", quality=92)
    scene(200).crop((60, 40, 420, 310)).save(photos / "p0-crop.png")
    index = indexed(photos, tmp_path / "idx", "pixels,pca")
    (photos / "new").mkdir()  # then new photos: copies of old ones and of each other
    scene(201).rotate(90, expand=True).save(photos / "new" / "p1-turned.png")
    ImageOps.mirror(scene(202)).save(photos / "new" / "p2-mirror.png")
    scene(208).save(photos / "new" / "p8.jpg", quality=90)
    scene(208).resize((240, 180)).save(photos / "new" / "p8-small.jpg")
    ImageOps.expand(scene(200), border=40, fill="white").save(photos / "new" / "p0-border.png")
    indexed(photos, index, "pixels,pca")
    fresh = indexed(photos, tmp_path / "fresh", "pixels,pca")
    after, keepers = kept_groups(index)
    assert (after, keepers) == kept_groups(fresh)
    assert ["p0-border.png", "p0-crop.png", "p0.jpg"] in after
    assert ["p8-small.jpg", "p8.jpg"] in after


def test_no_duplicates_leaves_them_to_the_command_which_keeps_them(tmp_path):
    from .conftest import scene

    photos = tmp_path / "photos"
    photos.mkdir()
    for s in range(4):
        scene(300 + s).save(photos / f"p{s}.jpg", quality=92)
    scene(300).resize((240, 180)).save(photos / "p0-small.jpg")
    index = tmp_path / "idx"
    result = runner.invoke(app, ["index", str(photos), "--index", str(index), "--methods",
                                 "pixels", "--input-size", "32", "--workers", "1",
                                 "--no-duplicates"])
    assert result.exit_code == 0, result.output
    assert not (index / "duplicates.json").exists() and "duplicates (" not in result.output
    found = runner.invoke(app, ["duplicates", "--index", str(index), "--json"])
    assert found.exit_code == 0, found.output
    assert groups_of(json.loads(found.stdout)) == [["p0-small.jpg", "p0.jpg"]]
    assert kept_groups(index)[0] == [["p0-small.jpg", "p0.jpg"]]  # kept for the next reader


def test_finding_at_index_time_shares_its_progress_and_removes_it(with_copies, monkeypatch):
    from imgsearch.copies import kept
    from imgsearch.workspace import Workspace

    _, index = with_copies
    (index / kept.FILE).unlink()  # found again below
    seen = []
    real = kept.find

    def spy(ws, method, **options):
        seen.append(kept.finding(ws))
        return real(ws, method, **options)

    monkeypatch.setattr(kept, "find", spy)
    ws = Workspace.open(index)
    try:
        found = kept.at_index_time(ws, "pixels")
        assert found is not None and found.groups
        assert seen == [{"method": "pixels", "phase": "starting", "done": 0, "total": 0}]
        assert kept.finding(ws) is None and not (index / kept.PROGRESS).exists()
    finally:
        ws.close()
