"""Every format a camera writes: camera RAW through rawpy (LibRaw), from the embedded preview
or demosaiced, and the PNM family through Pillow. The RAW files are written here as DNG with
tifffile (a linear DNG, and a Bayer DNG holding an 8-bit preview in its first IFD, as
cameras and converters write them); nothing binary is committed."""

import sys

import numpy as np
import pytest
from PIL import Image

from imgsearch.errors import ImageLoadError
from imgsearch.images import EXTENSIONS, load_image, open_upright

from .conftest import bayer_dng, halves, linear_dng, pattern


def test_a_linear_dng_is_demosaiced_to_its_picture(tmp_path):
    pytest.importorskip("rawpy")  # the raw extra, which the tests install
    linear_dng(tmp_path / "a.dng", halves())
    pixels, info = load_image(tmp_path / "a.dng", 32)
    assert (info.width, info.height, info.format) == (120, 80, "RAW")
    left, right = pixels[:, :12].mean((0, 1)), pixels[:, -12:].mean((0, 1))
    assert left[0] > 3 * left[2] and right[2] > 3 * right[0]  # red stays left, blue right


def test_a_camera_dng_is_read_from_its_preview_when_large_enough(tmp_path):
    pytest.importorskip("rawpy")
    preview = halves(400, 600)
    bayer_dng(tmp_path / "cam.dng", preview)
    pixels, info = load_image(tmp_path / "cam.dng", 64)
    assert (info.width, info.height, info.format) == (600, 400, "RAW")
    want = np.asarray(Image.fromarray(preview).resize((64, 64), Image.Resampling.BILINEAR))
    assert np.abs(pixels.astype(int) - want).mean() < 2  # the preview, not the noise
    # a preview smaller than asked for is not enough: the mosaic is demosaiced instead
    bayer_dng(tmp_path / "small.dng", halves(40, 60))
    big = open_upright(tmp_path / "small.dng", 512)
    assert max(big.size) == 300  # LibRaw's half-size demosaic of the 600x400 mosaic


def test_raw_without_the_extra_is_a_one_line_error_naming_it(tmp_path, monkeypatch):
    pytest.importorskip("rawpy")
    linear_dng(tmp_path / "a.dng", halves())
    monkeypatch.setitem(sys.modules, "rawpy", None)  # as if not installed
    with pytest.raises(ImageLoadError, match=r"pip install 'imgsearch\[raw\]'"):
        load_image(tmp_path / "a.dng", 32)


@pytest.mark.parametrize("suffix, mode", [(".ppm", "RGB"), (".pgm", "L"), (".pbm", "1")])
def test_pnm_files_are_images(tmp_path, suffix, mode):
    assert suffix in EXTENSIONS
    Image.fromarray(pattern(3)).convert(mode).save(tmp_path / f"a{suffix}")
    pixels, info = load_image(tmp_path / f"a{suffix}", 32)
    assert pixels.shape == (32, 32, 3) and info.format in ("PPM", "PBM", "PGM")


def test_a_folder_of_raw_and_pnm_files_is_indexed(tmp_path):
    pytest.importorskip("rawpy")
    from imgsearch.config import IndexConfig
    from imgsearch.pipeline import update_index
    from imgsearch.workspace import Workspace

    photos = tmp_path / "photos"
    photos.mkdir()
    linear_dng(photos / "a.dng", halves())
    bayer_dng(photos / "b.dng", np.asarray(Image.fromarray(pattern(4)).resize((600, 400))))
    Image.fromarray(pattern(5)).save(photos / "c.ppm")
    Image.fromarray(pattern(6)).convert("L").save(photos / "d.pgm")
    with Workspace.create(tmp_path / "idx", IndexConfig(input_size=16, pixel_size=8)) as ws:
        report = update_index(ws, photos, ["pixels"])
        assert report.ingest.added == 4 and not report.ingest.failed
        formats = sorted(r.format for r in ws.catalog.rows())
        assert formats == ["PPM", "PPM", "RAW", "RAW"]  # Pillow names the whole family PPM


def test_raw_files_that_failed_for_want_of_the_extra_are_read_once_it_is_installed(
        tmp_path, monkeypatch):
    pytest.importorskip("rawpy")
    from imgsearch.config import IndexConfig
    from imgsearch.pipeline import update_index
    from imgsearch.workspace import Workspace

    photos = tmp_path / "photos"
    photos.mkdir()
    linear_dng(photos / "a.dng", halves())
    Image.fromarray(pattern(7)).save(photos / "b.ppm")
    with Workspace.create(tmp_path / "idx", IndexConfig(input_size=16, pixel_size=8)) as ws:
        with monkeypatch.context() as m:
            m.setitem(sys.modules, "rawpy", None)  # not installed yet
            m.setattr("imgsearch.ingest.raw_readable", lambda: False)
            first = update_index(ws, photos, ["pixels"], workers=1)
        assert [p for p, _ in first.ingest.failed] == [str(photos / "a.dng")]
        again = update_index(ws, photos, ["pixels"], workers=1)  # the extra is here now
        assert again.ingest.updated + again.ingest.added == 1 and not again.ingest.failed
