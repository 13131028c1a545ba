"""`imgsearch index` over a generated corpus of bad and awkward files mixed with good photos.

Nothing binary is committed: every file is made here. Each bad file must end up `failed` with
a reason, every good or awkward-but-valid file `indexed` with the right pixels, and the run must
exit 0 with a summary.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import imgsearch.ingest as ingest_mod
import imgsearch.reading as reading
from imgsearch.catalog import FAILED, INDEXED
from imgsearch.cli import app
from imgsearch.config import IndexConfig
from imgsearch.images import load_image
from imgsearch.workspace import Workspace

from .conftest import STORED, WrittenWhileRead, pattern

SIZE = 32
runner = CliRunner()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def bomb_png(side: int = 40_000) -> bytes:
    """A small PNG that declares side x side RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + side * 3) * 4)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def growing_jpeg() -> bytes:
    """The finished version of the file that is written to while it is read."""
    return jpeg_bytes(Image.fromarray(pattern(18, 96)))


def corrupt_exif_jpeg() -> bytes:
    """A JPEG whose APP1 Exif segment holds garbage after a valid TIFF header start."""
    good = jpeg_bytes(Image.fromarray(pattern(21, 64)))
    junk = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + os.urandom(40)
    app1 = b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk
    return good[:2] + app1 + good[2:]


def make_corpus(root, outside) -> dict[str, str]:
    """Write the corpus; return {relative path: 'indexed' | 'failed'} for what the catalog
    must say of each file (a folder named like an image is not a file and has no row)."""
    rng = np.random.default_rng(0)
    root.mkdir()
    outside.mkdir()
    expect: dict[str, str] = {}

    def put(name: str, data: bytes, state: str) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expect[name] = state

    for i in range(6):  # the good photos
        put(f"good/photo{i}.jpg", jpeg_bytes(Image.fromarray(pattern(100 + i, 128))), INDEXED)
    good_jpeg = jpeg_bytes(Image.fromarray(pattern(7, 128)))
    # -- bad files
    put("zero.jpg", b"", FAILED)
    put("truncated.jpg", good_jpeg[: len(good_jpeg) // 2], FAILED)
    good_png = png_bytes(Image.fromarray(pattern(8, 128)))
    put("truncated.png", good_png[: len(good_png) // 2], FAILED)
    put("random.jpg", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), FAILED)
    put("text.png", b"this is a text file, not a picture\n" * 20, FAILED)
    put("page.webp", b"<!doctype html><html><body>404 Not Found</body></html>", FAILED)
    put("bomb.png", bomb_png(), FAILED)
    os.symlink("loop2.jpg", root / "loop1.jpg")
    os.symlink("loop1.jpg", root / "loop2.jpg")
    expect["loop1.jpg"] = expect["loop2.jpg"] = FAILED
    os.symlink(root / "does-not-exist.jpg", root / "broken-link.jpg")
    expect["broken-link.jpg"] = FAILED
    os.mkfifo(root / "pipe.jpg")  # reading it would block forever
    expect["pipe.jpg"] = FAILED
    # -- awkward but valid
    (root / "photo.jpg").mkdir()  # a folder named like a photo: walked into, not read
    put("photo.jpg/inside.png", png_bytes(Image.fromarray(pattern(9, 64))), INDEXED)
    (outside / "elsewhere.jpg").write_bytes(jpeg_bytes(Image.fromarray(pattern(10, 64))))
    os.symlink(outside / "elsewhere.jpg", root / "link-outside.jpg")  # followed
    expect["link-outside.jpg"] = INDEXED
    big = Image.new("RGB", (10_000, 10_000), (30, 120, 200))
    big.paste((250, 200, 20), (0, 0, 5000, 10_000))
    put("huge-10000x10000.jpg", jpeg_bytes(big), INDEXED)
    del big
    put("one-pixel.png", png_bytes(Image.new("RGB", (1, 1), (200, 10, 10))), INDEXED)
    put("long-10000x3.png", png_bytes(Image.new("RGB", (10_000, 3), (10, 200, 10))), INDEXED)
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.gif", buf.getvalue(), INDEXED)
    grey16 = Image.fromarray(np.full((40, 40), 32768, dtype=np.uint16))
    put("grey16.png", png_bytes(grey16), INDEXED)
    put("cmyk.jpg", jpeg_bytes(Image.new("CMYK", (40, 40), (0, 255, 255, 0))), INDEXED)
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    pal.paste(1, (0, 0, 40, 20))  # top half index 1 (blue), bottom index 0 (red)
    put("palette-transparent.png", png_bytes(pal, transparency=0), INDEXED)  # red is clear
    put("la.png", png_bytes(Image.new("LA", (40, 40), (60, 128))), INDEXED)
    upright = Image.fromarray(pattern(3, 96)[:, :72].copy())  # 72 wide, 96 high
    put("exif/upright.jpg", jpeg_bytes(upright), INDEXED)
    for o in range(1, 9):
        stored = upright if STORED[o] is None else upright.transpose(STORED[o])
        exif = Image.Exif()
        exif[0x0112] = o
        put(f"exif/orientation{o}.jpg", jpeg_bytes(stored, exif=exif), INDEXED)
    put("corrupt-exif.jpg", corrupt_exif_jpeg(), INDEXED)
    put("progressive.jpg", jpeg_bytes(Image.fromarray(pattern(11, 128)), progressive=True),
        INDEXED)
    put("png-named.jpg", good_png, INDEXED)  # the format is sniffed, not taken from the name
    put("UPPER.JPG", jpeg_bytes(Image.fromarray(pattern(12, 64))), INDEXED)
    odd = os.fsdecode(b"not-utf8-\xff\xfe.jpg")  # bytes that are not UTF-8
    put(odd, jpeg_bytes(Image.fromarray(pattern(13, 64))), INDEXED)
    put('spaces "quotes" \'single\'\nnewline.png', png_bytes(Image.fromarray(pattern(14, 64))),
        INDEXED)
    put("vanishes.jpg", jpeg_bytes(Image.fromarray(pattern(15, 64))), FAILED)
    put("changes.png", png_bytes(Image.fromarray(pattern(16, 64))), INDEXED)
    growing = growing_jpeg()
    put("growing.jpg", growing[: len(growing) // 3], INDEXED)  # written to while it is read
    return expect


KINDS = [  # what the corpus covers, one line per kind
    "zero-byte file", "truncated JPEG", "truncated PNG", "random bytes named .jpg",
    "text file named .png", "HTML page named .webp", "folder named photo.jpg", "symlink loop",
    "broken symlink", "symlink to a file outside the folder (followed)",
    "decompression bomb PNG (40000x40000 declared)", "10000x10000 JPEG", "1x1 image",
    "10000x3 image", "animated GIF", "16-bit grayscale PNG", "CMYK JPEG",
    "palette PNG with transparency", "LA image", "EXIF orientations 1-8",
    "JPEG with a corrupt EXIF block", "progressive JPEG", "PNG data named .jpg",
    "upper-case extension", "file name that is not UTF-8",
    "file name with spaces, quotes and a newline", "named pipe named .jpg",
    "file that disappears between the scan and the read",
    "file that changes between the scan and the read",
    "file that changes while it is read",
]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    root, outside = tmp_path / "photos", tmp_path / "outside"
    expect = make_corpus(root, outside)
    changed = png_bytes(Image.fromarray(pattern(17, 80)))
    real_scan = ingest_mod.scan

    def racing_scan(folder, rules):  # the files move under the first scan's feet
        found, bad = real_scan(folder, rules)
        if (root / "vanishes.jpg").exists():
            (root / "vanishes.jpg").unlink()
            (root / "changes.png").write_bytes(changed)
        return found, bad

    monkeypatch.setattr(ingest_mod, "scan", racing_scan)
    monkeypatch.setattr(reading, "open", WrittenWhileRead(root / "growing.jpg",
                                                             growing_jpeg(), 1),
                        raising=False)  # inherited by the forked decoding workers
    return root, expect, changed


def test_corpus_covers_at_least_25_kinds():
    assert len(KINDS) >= 25


def test_hostile_corpus_is_indexed_without_a_crash(corpus, tmp_path):
    root, expect, changed = corpus
    index = tmp_path / "idx"
    result = runner.invoke(app, ["index", str(root), "--index", str(index), "--methods",
                                 "pixels,pca", "--input-size", str(SIZE), "--workers", "2"])
    assert result.exit_code == 0, result.output
    n_failed = sum(s == FAILED for s in expect.values())
    n_good = len(expect) - n_failed
    assert f"{n_failed} failed" in result.stderr
    assert "index ready" in result.stderr
    assert "Traceback" not in result.output

    ws = Workspace.open(index)
    try:
        rows = {os.path.relpath(r.path, root): r for r in ws.catalog.rows()}
        assert set(rows) == set(expect)  # every file has its row; the folder photo.jpg none
        for name, state in expect.items():
            assert rows[name].state == state, (name, rows[name].reason)
            if state == FAILED:
                assert rows[name].reason, name
        assert "FileNotFoundError" in rows["vanishes.jpg"].reason
        assert "not a regular file" in rows["pipe.jpg"].reason
        assert "DecompressionBomb" in rows["bomb.png"].reason
        assert ws.catalog.counts()[INDEXED] == n_good
        for method in ("pixels", "pca"):
            assert ws.method_state(method).count == n_good

        def pixels(name):
            return ws.cache.read([rows[name].id])[0].astype(int)

        # awkward but valid files are decoded correctly
        assert (rows["huge-10000x10000.jpg"].width, rows["huge-10000x10000.jpg"].height) == (
            10_000, 10_000)
        huge = pixels("huge-10000x10000.jpg")
        assert np.abs(huge[:, :14] - [250, 200, 20]).max() < 12  # left half
        assert np.abs(huge[:, 18:] - [30, 120, 200]).max() < 12  # right half
        assert np.abs(pixels("one-pixel.png") - [200, 10, 10]).max() <= 1
        assert (rows["long-10000x3.png"].width, rows["long-10000x3.png"].height) == (10_000, 3)
        assert np.abs(pixels("long-10000x3.png") - [10, 200, 10]).max() <= 1
        assert np.abs(pixels("animated.gif") - [255, 0, 0]).max() <= 2  # first frame
        assert np.abs(pixels("grey16.png") - 128).max() <= 1  # scaled, not clipped
        cmyk = pixels("cmyk.jpg")  # C=0 M=255 Y=255 K=0 is red
        assert cmyk[..., 0].mean() > 200 and cmyk[..., 1:].mean() < 60
        pal = pixels("palette-transparent.png")
        assert np.abs(pal[: SIZE // 2 - 2] - [0, 0, 255]).max() <= 2  # opaque blue top
        assert np.abs(pal[SIZE // 2 + 2 :] - 255).max() <= 2  # transparent: white
        la = pixels("la.png")  # grey 60 at alpha 128 over white
        assert np.abs(la - (60 * 128 + 255 * 127) / 255).max() <= 2
        want = pixels("exif/upright.jpg")
        for o in range(1, 9):
            assert np.abs(pixels(f"exif/orientation{o}.jpg") - want).mean() < 6, o
            assert (rows[f"exif/orientation{o}.jpg"].width,
                    rows[f"exif/orientation{o}.jpg"].height) == (72, 96)
        # the file changed after the scan is recorded as it was read
        changes = rows["changes.png"]
        assert changes.size == len(changed)
        assert (changes.width, changes.height) == (80, 80)
        # the file written to while it was read is recorded whole, as it was finished
        growing = rows["growing.jpg"]
        assert growing.size == (root / "growing.jpg").stat().st_size
        assert (growing.width, growing.height) == (96, 96)
        np.testing.assert_array_equal(pixels("growing.jpg"),
                                      load_image(root / "growing.jpg", SIZE)[0])
    finally:
        ws.close()

    # every EXIF-rotated copy lands next to its upright original
    upright = str(root / "exif" / "upright.jpg")
    for o in range(1, 9):
        result = runner.invoke(app, ["query", str(root / "exif" / f"orientation{o}.jpg"),
                                     "--index", str(index), "--method", "pixels", "-k", "9",
                                     "--json"])
        assert result.exit_code == 0, result.output
        paths = [h["path"] for h in json.loads(result.stdout)["results"]]
        assert upright in paths and all("/exif/" in p for p in paths), paths

    # a second run reads nothing again and still exits 0
    again = runner.invoke(app, ["index", str(root), "--index", str(index), "--methods",
                                "pixels,pca"])
    assert again.exit_code == 0, again.output
    unreadable_by_scan = {"vanishes.jpg", "loop1.jpg", "loop2.jpg", "broken-link.jpg",
                          "pipe.jpg"}  # bad files with content are unchanged, not re-read
    unchanged = len(expect) - len(unreadable_by_scan)
    assert f"0 new, 0 changed, {unchanged} unchanged" in again.stderr, again.stderr
    assert "1 removed" in again.stderr  # vanishes.jpg is gone for good


def test_non_utf8_name_round_trips_and_prints(corpus, tmp_path):
    """The non-UTF-8 name round-trips through the catalog and prints without a crash."""
    root, _, _ = corpus
    index = tmp_path / "idx"
    runner.invoke(app, ["index", str(root), "--index", str(index), "--methods", "pixels",
                        "--input-size", str(SIZE)])
    odd = root / os.fsdecode(b"not-utf8-\xff\xfe.jpg")
    result = runner.invoke(app, ["query", str(odd), "--index", str(index), "-k", "1"])
    assert result.exit_code == 0, result.output
    assert "not-utf8-\ufffd\ufffd.jpg" in result.stdout
    result = runner.invoke(app, ["query", str(odd), "--index", str(index), "-k", "1", "--json"])
    assert os.fsencode(json.loads(result.stdout)["results"][0]["path"]).endswith(
        b"not-utf8-\xff\xfe.jpg")
    ws = Workspace.open(index)
    assert ws.catalog.by_path(str(odd)).state == INDEXED
    ws.close()
    assert IndexConfig.load(index / "config.json").input_size == SIZE
