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

from .conftest import pattern

DNG = [(50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion 1.4
       (50708, "s", 0, "imgsearch test camera", True)]  # UniqueCameraModel


def linear_dng(path, rgb: np.ndarray) -> None:
    """A linear DNG (demosaiced sensor data, 16 bits a sample) of an 8-bit RGB picture."""
    import tifffile

    tifffile.imwrite(path, rgb.astype(np.uint16) * 257, photometric=34892,
                     extratags=[*DNG, (50717, "I", 3, (65535,) * 3, True)])  # WhiteLevel


def bayer_dng(path, preview: np.ndarray, side: tuple[int, int] = (600, 400)) -> None:
    """A Bayer DNG: an 8-bit RGB preview in the first IFD, the sensor's mosaic (noise) in
    its SubIFD, as a camera's DNG holds them."""
    import tifffile

    w, h = side
    mosaic = (np.random.default_rng(0).random((h, w)) * 4000).astype(np.uint16)
    with tifffile.TiffWriter(path) as t:
        t.write(preview, photometric="rgb", subifds=1, subfiletype=1, extratags=DNG)
        t.write(mosaic, photometric=32803, subfiletype=0,
                extratags=[(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),
                           (50717, "I", 1, (4095,), True)])  # CFA 2x2 RGGB, WhiteLevel


def halves(height: int = 80, width: int = 120) -> np.ndarray:
    """Red on the left, blue on the right."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2, 0] = 230
    rgb[:, width // 2 :, 2] = 230
    return rgb


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
