import os
import shutil

import numpy as np
import pytest
from PIL import Image

import imgsearch.reading as reading
from imgsearch.catalog import FAILED, INDEXED, REMOVED
from imgsearch.config import IndexConfig
from imgsearch.copies.groups import live_codes
from imgsearch.errors import ImageLoadError, ImgSearchError
from imgsearch.images import DECODE_VERSION, load_image
from imgsearch.ingest import ScanRules, ingest, scan
from imgsearch.pipeline import update_index
from imgsearch.workspace import Workspace

from .conftest import STORED, WrittenWhileRead, find, pattern

WHITE = (255, 255, 255)


def rgb_of(path, size=8):
    pixels, info = load_image(path, size)
    assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8
    return tuple(int(v) for v in pixels[size // 2, size // 2]), info


@pytest.mark.parametrize(
    "mode, value, ext, expected",
    [
        ("1", 1, "png", WHITE),
        ("1", 0, "png", (0, 0, 0)),
        ("L", 100, "png", (100, 100, 100)),
        ("LA", (100, 255), "png", (100, 100, 100)),
        ("LA", (100, 0), "png", WHITE),  # fully transparent: nothing visible, white
        ("RGBA", (200, 10, 10, 255), "png", (200, 10, 10)),
        ("RGBA", (200, 10, 10, 0), "png", WHITE),
        ("CMYK", (0, 0, 0, 0), "jpg", WHITE),
        ("CMYK", (0, 255, 255, 0), "tiff", (255, 0, 0)),
        ("I;16", 65535, "png", WHITE),
        ("I;16", 0, "png", (0, 0, 0)),
        ("RGB", (10, 200, 30), "bmp", (10, 200, 30)),
    ],
)
def test_every_mode_becomes_rgb(tmp_path, mode, value, ext, expected):
    path = tmp_path / f"x.{ext}"
    Image.new(mode, (20, 12), value).save(path)
    got, info = rgb_of(path)
    assert np.allclose(got, expected, atol=3), (mode, got)
    assert (info.width, info.height) == (20, 12)


def test_16_bit_midgrey_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(np.full((6, 6), 32896, np.uint16)).save(path)  # 128 * 257
    assert Image.open(path).mode.startswith("I")
    assert rgb_of(path)[0] == (128, 128, 128)


def test_palette_with_and_without_transparency(tmp_path):
    im = Image.new("P", (10, 10), 1)
    im.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    im.save(tmp_path / "p.png")
    assert rgb_of(tmp_path / "p.png")[0] == (10, 20, 30)
    im.save(tmp_path / "pt.png", transparency=1)
    assert rgb_of(tmp_path / "pt.png")[0] == WHITE  # nothing visible: white


def test_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    r, _g, b = rgb_of(tmp_path / "a.gif")[0]
    assert r > 200 and b < 50


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    upright = Image.fromarray(pattern(3, 64)[:, :48].copy())  # 48 wide, 64 high
    stored = upright if STORED[orientation] is None else upright.transpose(STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    stored.save(path, exif=exif, quality=95)
    upright.save(tmp_path / "u.jpg", quality=95)
    got, info = load_image(path, 16)
    want, _ = load_image(tmp_path / "u.jpg", 16)
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 6
    assert (info.width, info.height) == (48, 64)


def test_large_jpeg_is_draft_decoded(tmp_path, monkeypatch):
    Image.fromarray(pattern(1, 64)).resize((2048, 2048)).save(tmp_path / "big.jpg")
    seen = []
    original = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        seen.append(self.size)
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    _, info = load_image(tmp_path / "big.jpg", 64)
    assert (info.width, info.height) == (2048, 2048)  # the file's size is recorded ...
    assert seen[0] == (256, 256)  # ... but it was decoded at 1/8 scale


def test_unreadable_files_raise_image_load_error(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        load_image(tmp_path / "empty.jpg", 8)


def make_bad_files(root):
    (root / "zero.jpg").write_bytes(b"")
    good = find(root, "img00.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "random.png").write_bytes(np.random.default_rng(0).bytes(2000))
    (root / "text.webp").write_text("<html>not an image</html>")
    os.symlink(root / "nowhere.jpg", root / "broken-link.jpg")


def test_bad_files_are_recorded_not_fatal(photo_dir, ws):
    make_bad_files(photo_dir)
    (photo_dir / "notes.txt").write_text("ignored: not an image extension")
    report = ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    failed = {os.path.basename(p): reason for p, reason in report.failed}
    assert set(failed) == {"zero.jpg", "truncated.jpg", "random.png", "text.webp",
                           "broken-link.jpg"}
    assert "FileNotFoundError" in failed["broken-link.jpg"]
    assert failed["zero.jpg"] == "not a recognised image format"
    assert report.added == 12
    counts = ws.catalog.counts()
    assert counts == {INDEXED: 12, FAILED: 5, REMOVED: 0}
    assert ws.catalog.by_path(str(photo_dir / "zero.jpg")).reason == failed["zero.jpg"]


def test_cached_pixels_match_a_direct_decode(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.cache, workers=2)
    for r in ws.catalog.rows(INDEXED):
        want, _ = load_image(r.path, ws.config.input_size)
        np.testing.assert_array_equal(ws.cache.read([r.id])[0], want)


def test_scan_is_recursive_and_filters_extensions(photo_dir):
    (photo_dir / "readme.md").write_text("x")
    files, bad = scan(photo_dir)
    assert len(files) == 12 and not bad
    assert all(f.size > 0 for f in files)


def test_missing_and_non_folder_roots(tmp_path, ws):
    with pytest.raises(ImgSearchError, match="folder not found"):
        ingest(tmp_path / "nope", ws.catalog, ws.cache)
    (tmp_path / "f.jpg").write_bytes(b"x")
    with pytest.raises(ImgSearchError, match="not a folder"):
        ingest(tmp_path / "f.jpg", ws.catalog, ws.cache)


def bump_mtime(path):
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 10))


def test_rerun_processes_only_what_changed(photo_dir, ws):
    first = ingest(photo_dir, ws.catalog, ws.cache, workers=2)
    assert (first.added, first.decoded) == (12, 12)
    ids = {r.path: r.id for r in ws.catalog.rows()}

    again = ingest(photo_dir, ws.catalog, ws.cache, workers=2)
    assert (again.unchanged, again.decoded, again.added, again.removed) == (12, 0, 0, 0)

    modified = find(photo_dir, "img01.png")
    Image.fromarray(pattern(99)).save(modified)  # new content
    bump_mtime(modified)
    bump_mtime(find(photo_dir, "img02.webp"))  # same content, new mtime
    find(photo_dir, "img00.jpg").unlink()
    moved_from = find(photo_dir, "img04.tiff")
    shutil.move(moved_from, photo_dir / "renamed.tiff")
    shutil.copy(find(photo_dir, "img05.gif"), photo_dir / "copy.gif")
    changed_before = ws.catalog.gen

    third = ingest(photo_dir, ws.catalog, ws.cache, workers=2)
    assert third.updated == 1 and third.decoded == 1  # only img01 was decoded
    assert third.reused == 2 and third.added == 2  # the renamed and the copied file
    assert third.removed == 2  # the deleted and the renamed-away path
    assert third.unchanged == 9  # 8 untouched + the touched one
    changed = {ws.catalog.get(i).path.split("/")[-1]: s
               for i, s in ws.catalog.changed_since(changed_before)}
    assert changed == {"img01.png": INDEXED, "img00.jpg": REMOVED, "img04.tiff": REMOVED,
                       "renamed.tiff": INDEXED, "copy.gif": INDEXED}
    assert ws.catalog.by_path(str(modified)).id == ids[str(modified)]  # same id, new pixels
    renamed = ws.catalog.by_path(str(photo_dir / "renamed.tiff"))
    np.testing.assert_array_equal(ws.cache.read([renamed.id])[0],
                                  ws.cache.read([ids[str(moved_from)]])[0])


def test_deleted_then_restored_file_is_indexed_again(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    path = find(photo_dir, "img01.png")
    data = path.read_bytes()
    path.unlink()
    assert ingest(photo_dir, ws.catalog, ws.cache, workers=1).removed == 1
    path.write_bytes(data)
    report = ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    assert report.added == 1
    assert ws.catalog.by_path(str(path)).state == INDEXED


def test_file_changing_while_read_is_read_again(photo_dir, ws, monkeypatch):
    target = find(photo_dir, "img01.png")
    final = target.read_bytes()
    target.write_bytes(final[: len(final) // 2])  # half written when the run starts
    spy = WrittenWhileRead(target, final, times=1)
    monkeypatch.setattr(reading, "open", spy, raising=False)
    report = ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    assert spy.reads == 2 and not report.failed  # the torn read was thrown away
    row = ws.catalog.by_path(str(target))
    assert row.state == INDEXED and row.size == target.stat().st_size
    np.testing.assert_array_equal(ws.cache.read([row.id])[0],
                                  load_image(target, ws.cache.size)[0])


def test_file_that_never_holds_still_fails_and_is_read_next_run(photo_dir, ws, monkeypatch):
    target = find(photo_dir, "img01.png")
    final = target.read_bytes()
    target.write_bytes(final[:100])
    monkeypatch.setattr(reading, "_READ_TRIES", 2)
    monkeypatch.setattr(reading, "open", WrittenWhileRead(target, final, times=99),
                        raising=False)
    report = ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    assert [p for p, _ in report.failed] == [str(target)]
    assert "changed while being read" in report.failed[0][1]
    assert ws.catalog.by_path(str(target)).state == FAILED
    monkeypatch.undo()  # the writer has finished: the next run reads it again
    target.write_bytes(final)
    again = ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    assert again.updated == 1 and not again.failed
    assert ws.catalog.by_path(str(target)).state == INDEXED


# -- pixels of older decoding rules --------------------------------------------------------
def white_art(path, seed: int) -> None:
    """White shapes on a fully transparent background: a blank white square under decoding
    version 1, which composited transparency on white."""
    a = np.zeros((48, 48, 4), np.uint8)
    a[pattern(seed, 48)[..., 0] > 128] = 255
    Image.fromarray(a, "RGBA").save(path)


def age(ws, paths) -> None:
    """Make ``paths``' rows look cached by decoding version 1: the version, and the white
    square it decoded white art on transparency to."""
    ws.catalog.db.execute("update images set decoding = 1")
    ws.catalog.db.conn.commit()
    for path in paths:
        ws.cache.write(ws.catalog.by_path(str(path)).id,
                       np.full((ws.cache.size, ws.cache.size, 3), 255, np.uint8))
    ws.cache.flush()


def test_unchanged_files_of_an_older_decoding_are_decoded_again(tmp_path, ws, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    white_art(photos / "art.png", 1)
    Image.fromarray(pattern(2)).save(photos / "opaque.png")
    Image.fromarray(pattern(3)).save(photos / "photo.jpg")
    ingest(photos, ws.catalog, ws.cache, workers=1)
    assert {r.decoding for r in ws.catalog.rows()} == {DECODE_VERSION}
    age(ws, [photos / "art.png"])
    before = ws.catalog.gen
    decoded = []

    def spy(source, *args):
        pixels, info = load_image(source, *args)
        decoded.append(info.format)
        return pixels, info

    monkeypatch.setattr(reading, "load_image", spy)
    report = ingest(photos, ws.catalog, ws.cache, workers=1)
    assert sorted(decoded) == ["PNG", "PNG"]  # a JPEG has no alpha: version 2 changed nothing
    assert (report.redecoded, report.unchanged, report.updated, report.decoded) == (2, 3, 0, 2)
    art = ws.catalog.by_path(str(photos / "art.png"))
    np.testing.assert_array_equal(ws.cache.read([art.id])[0],
                                  load_image(photos / "art.png", ws.cache.size)[0])
    assert ws.cache.read([art.id]).min() == 0  # the art on black, not a white square
    # only the file whose pixels changed is re-encoded by the methods
    assert ws.catalog.changed_since(before) == [(art.id, INDEXED)]
    by_name = {r.path.rsplit("/", 1)[1]: r.decoding for r in ws.catalog.rows()}
    assert by_name == {"art.png": DECODE_VERSION, "opaque.png": DECODE_VERSION,
                       "photo.jpg": 1}  # the JPEG's pixels are still version 1's, and right
    decoded.clear()
    assert ingest(photos, ws.catalog, ws.cache, workers=1).redecoded == 0 and not decoded


def test_a_run_stopped_after_new_pixels_still_has_them_re_encoded(tmp_path, ws, monkeypatch):
    """Stopped after the new pixels are written but before the row records their version,
    the next run finds the cache already right; the row kept the stopped run's generation,
    so the methods (synced to an older one) still re-encode it."""
    photos = tmp_path / "photos"
    photos.mkdir()
    white_art(photos / "art.png", 1)
    ingest(photos, ws.catalog, ws.cache, workers=1)
    age(ws, [photos / "art.png"])
    synced = ws.catalog.gen  # where a method would be

    def killed(ids, version):
        raise KeyboardInterrupt

    monkeypatch.setattr(ws.catalog, "set_decoding", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest(photos, ws.catalog, ws.cache, workers=1)
    monkeypatch.undo()
    art = ws.catalog.by_path(str(photos / "art.png"))
    assert art.decoding == 1 and ws.cache.read([art.id]).min() == 0  # pixels in, not version
    report = ingest(photos, ws.catalog, ws.cache, workers=1)
    assert report.redecoded == 1 and ws.catalog.get(art.id).decoding == DECODE_VERSION
    assert ws.catalog.changed_since(synced) == [(art.id, INDEXED)]


def test_a_copy_of_stale_pixels_is_decoded_not_reused(tmp_path, ws):
    photos = tmp_path / "photos"
    photos.mkdir()
    white_art(photos / "art.png", 1)
    ingest(photos, ws.catalog, ws.cache, workers=1)
    age(ws, [photos / "art.png"])
    shutil.copy(photos / "art.png", photos / "copy.png")
    report = ingest(photos, ws.catalog, ws.cache, workers=1)
    assert (report.added, report.reused, report.redecoded) == (1, 0, 1)
    ids = [ws.catalog.by_path(str(photos / n)).id for n in ("art.png", "copy.png")]
    right = load_image(photos / "art.png", ws.cache.size)[0]
    for pixels in ws.cache.read(ids):
        np.testing.assert_array_equal(pixels, right)


def test_an_index_of_an_older_decoding_is_decoded_and_encoded_again(tmp_path):
    """An index whose cache and codes version 1 made (white art on transparency as white
    squares, so all alike) is brought up to date by the next `imgsearch index`: the stale
    pixels decoded again, their rows' version recorded, and the method re-encodes them."""
    photos = tmp_path / "photos"
    photos.mkdir()
    arts = [photos / f"art{i}.png" for i in range(3)]
    for i, path in enumerate(arts):
        white_art(path, 10 + i)
    for i in range(5):
        Image.fromarray(pattern(i, 48)).save(photos / f"photo{i}.jpg", quality=90)
    ws = Workspace.create(tmp_path / "index", IndexConfig(input_size=32))
    try:
        update_index(ws, photos, ["pixels"], workers=1)
        age(ws, arts)
        ws.catalog.db.execute("update images set decoding = 2")  # the codes of the white
        ws.catalog.db.conn.commit()  # squares, as version 1 left them: fitted on the cache
        update_index(ws, photos, ["pixels"], workers=1, rebuild=True)
        age(ws, arts)
        ids = [ws.catalog.by_path(str(p)).id for p in arts]
        codes = dict(zip(*live_codes(ws, "pixels")[1:3]))
        assert all(np.array_equal(codes[i], codes[ids[0]]) for i in ids)  # all alike

        report = update_index(ws, photos, ["pixels"], workers=1)
        assert report.ingest.redecoded == 3
        (built,) = report.built
        assert (built.action, built.encoded) == ("sync", 3)  # the three art files only
        for path, pixels in zip(arts, ws.cache.read(ids)):
            np.testing.assert_array_equal(pixels, load_image(path, 32)[0])
        assert all(ws.catalog.get(i).decoding == DECODE_VERSION for i in ids)
        codes = dict(zip(*live_codes(ws, "pixels")[1:3]))
        assert not np.array_equal(codes[ids[0]], codes[ids[1]])
        assert not np.array_equal(codes[ids[1]], codes[ids[2]])
    finally:
        ws.close()


# -- formats and folders people have ------------------------------------------------------
@pytest.mark.parametrize("ext, fmt", [("heic", "HEIF"), ("avif", "AVIF")])
def test_phone_formats_are_read(tmp_path, ext, fmt):
    from imgsearch.images import EXTENSIONS

    assert f".{ext}" in EXTENSIONS
    path = tmp_path / f"photo.{ext}"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(path, fmt, quality=95)
    rgb, info = rgb_of(path)
    assert np.allclose(rgb, (200, 30, 30), atol=12) and (info.width, info.height) == (40, 30)
    assert info.format == fmt


def test_hidden_appledouble_and_excluded_files_are_left_out(tmp_path):
    root = tmp_path / "photos"
    for rel in ("a.jpg", "keep/b.jpg", "keep/._b.jpg", ".hidden/c.jpg", "keep/.d.jpg",
                "Screenshots/e.jpg", "trips/2019/f.jpg", "trips/2020/g.png", "h.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pattern(len(rel))).save(root / rel)
    names = lambda found: sorted(os.path.relpath(f.path, root) for f in found)  # noqa: E731
    assert names(scan(root)[0]) == ["Screenshots/e.jpg", "a.jpg", "h.png", "keep/b.jpg",
                                    "trips/2019/f.jpg", "trips/2020/g.png"]
    rules = ScanRules(exclude=("Screenshots", "trips/2019/*", "*.png"), include_hidden=True)
    assert names(scan(root, rules)[0]) == [".hidden/c.jpg", "a.jpg", "keep/.d.jpg",
                                           "keep/b.jpg"]  # AppleDouble files never


def test_an_excluded_file_leaves_the_index_like_a_deleted_one(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    report = ingest(photo_dir, ws.catalog, ws.cache, workers=1, rules=ScanRules(("*.gif",)))
    assert report.removed == 2
    assert {r.path.endswith(".gif") for r in ws.catalog.rows(REMOVED)} == {True}


def test_images_over_the_megapixel_limit_are_recorded_failed(photo_dir, ws):
    big = photo_dir / "big.png"
    Image.new("RGB", (1200, 1000), (9, 9, 9)).save(big)
    report = ingest(photo_dir, ws.catalog, ws.cache, workers=1,
                    rules=ScanRules(max_megapixels=1.0))
    assert report.failed == [(str(big), "1.2 megapixels (1200x1000), over the limit of 1; "
                                        "raise --max-megapixels to index it")]
    assert ws.catalog.by_path(str(big)).state == FAILED
    assert ws.catalog.counts()[INDEXED] == 12


# -- the same-picture evidence, stored with the rows -------------------------------------
def stored_features(ws) -> dict:
    from imgsearch.copies.evidence import FEATURES_VERSION

    return ws.catalog.features(ws.catalog.indexed_ids(), FEATURES_VERSION)


def test_every_decoded_file_has_its_features_stored_and_a_copy_reuses_them(photo_dir, ws):
    from imgsearch.copies import evidence, matching

    first = ingest(photo_dir, ws.catalog, ws.cache, workers=2)
    assert first.features == 0  # computed while decoding, none read again
    blobs = stored_features(ws)
    assert set(blobs) == set(ws.catalog.indexed_ids()) and all(blobs.values())
    path = find(photo_dir, "img03.bmp")
    want = matching.load_features(path)
    got = evidence.unpack(blobs[ws.catalog.by_path(str(path)).id])
    np.testing.assert_array_equal(got.direct.descriptors, want.direct.descriptors)

    shutil.copy(path, photo_dir / "copy.bmp")
    again = ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    assert again.reused == 1 and again.features == 0
    copy = ws.catalog.by_path(str(photo_dir / "copy.bmp")).id
    assert stored_features(ws)[copy] == blobs[ws.catalog.by_path(str(path)).id]


def test_an_index_made_before_features_were_stored_gets_them_on_the_next_run(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    before = stored_features(ws)
    with ws.catalog.db.conn:  # as an index of schema 3 was: no features at all
        ws.catalog.db.execute("delete from features")
    seen = []
    again = ingest(photo_dir, ws.catalog, ws.cache, workers=2,
                   on_features=lambda done, total: seen.append((done, total)))
    assert again.features == 12 and again.decoded == 0  # no pixels decoded again
    assert seen[-1] == (12, 12)
    assert stored_features(ws) == before
    assert ingest(photo_dir, ws.catalog, ws.cache, workers=1).features == 0
