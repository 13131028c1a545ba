import os
import shutil

import numpy as np
import pytest
from PIL import Image

import imgsearch.ingest as ingest_mod
from imgsearch.catalog import FAILED, INDEXED, REMOVED
from imgsearch.errors import ImageLoadError, ImgSearchError
from imgsearch.images import load_image
from imgsearch.ingest import ScanRules, ingest, scan

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
        ("LA", (100, 0), "png", WHITE),  # fully transparent: composited on white
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
    assert rgb_of(tmp_path / "pt.png")[0] == WHITE


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
    monkeypatch.setattr(ingest_mod, "open", spy, raising=False)
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
    monkeypatch.setattr(ingest_mod, "_READ_TRIES", 2)
    monkeypatch.setattr(ingest_mod, "open", WrittenWhileRead(target, final, times=99),
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
