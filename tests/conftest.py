"""Shared fixtures and helpers: generated images (nothing binary is committed), fresh index
folders, a file that changes while it is read, and imgsearch run as a watched subprocess."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgsearch.config import IndexConfig
from imgsearch.workspace import Workspace


def pattern(seed: int, size: int = 96) -> np.ndarray:
    """A distinct, smooth RGB test image: seeded blobs over a seeded gradient."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.empty((size, size, 3))
    for c in range(3):
        a, b, p = rng.uniform(-3, 3, 3)
        img[..., c] = 0.5 + 0.5 * np.sin(a * x * 3 + b * y * 3 + p)
    for _ in range(3):
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2
        img[mask] = rng.uniform(0, 1, 3)
    return (img * 255).astype(np.uint8)


def scene(seed: int, w: int = 480, h: int = 360):
    """A textured photo-like picture: a colour field, shapes, lines and fine noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (4, 5, 3)).astype(np.uint8)
    im = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x, y = rng.integers(0, w), rng.integers(0, h)
        r = int(rng.integers(6, 40))
        fill = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + r, y + int(rng.integers(6, 40))), fill=fill)
        else:
            draw.polygon([(x, y), (x + r, y + 5), (x + 3, y + r)], fill=fill)
    for _ in range(15):
        draw.line([tuple(rng.integers(0, w, 2)), tuple(rng.integers(0, h, 2))],
                  fill=tuple(int(c) for c in rng.integers(0, 255, 3)), width=2)
    noise = rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im) + noise, 0, 255).astype(np.uint8))


def add_copies_of_img00(photo_dir) -> None:
    """Make img00 of ``photo_dir`` a textured picture (so that geometry proves its copies)
    and add three copies of it under copies/: larger (orig.png), a smaller JPEG, a crop."""
    big = scene(0, 160, 160)
    big.resize((96, 96)).save(find(photo_dir, "img00.jpg"), quality=95)
    (photo_dir / "copies").mkdir()
    big.save(photo_dir / "copies" / "orig.png")
    big.resize((120, 120)).save(photo_dir / "copies" / "small.jpg", quality=90)
    big.crop((8, 8, 152, 152)).save(photo_dir / "copies" / "crop.png")


def copied_scenes(folder: Path) -> Path:
    """Six distinct textured photos in ``folder``, and copies of three of them: two of p0 (a
    smaller JPEG, a crop), one of p1 (a re-save), one of p2 (a larger PNG): three groups."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(6):
        scene(40 + n, 160, 120).save(folder / f"p{n}.jpg", quality=92)
    scene(40, 160, 120).resize((120, 90)).save(folder / "p0-small.jpg", quality=85)
    scene(40, 160, 120).crop((10, 8, 150, 112)).save(folder / "p0-crop.png")
    scene(41, 160, 120).save(folder / "p1-again.jpg", quality=70)
    scene(42, 160, 120).resize((320, 240)).save(folder / "p2-big.png")
    return folder


REAL_PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"


@pytest.fixture
def real_photos() -> Path:
    """The demo's real photos (scripts/fetch_data.sh): skipped where they were not fetched,
    failed instead under IMGSEARCH_REQUIRE_DATA (CI fetches them)."""
    if not REAL_PHOTOS.is_dir():
        if os.environ.get("IMGSEARCH_REQUIRE_DATA"):
            pytest.fail(f"no real photos in {REAL_PHOTOS}: run bash scripts/fetch_data.sh")
        pytest.skip(f"no real photos in {REAL_PHOTOS}: run bash scripts/fetch_data.sh")
    return REAL_PHOTOS


@pytest.fixture
def photo_dir(tmp_path):
    """A folder of 12 distinct generated images in nested folders and several formats."""
    root = tmp_path / "photos"
    (root / "a" / "b").mkdir(parents=True)
    formats = ["jpg", "png", "webp", "bmp", "tiff", "gif"]
    for i in range(12):
        sub = root / ("a/b" if i % 3 == 0 else "a" if i % 3 == 1 else "")
        ext = formats[i % len(formats)]
        Image.fromarray(pattern(i)).save(sub / f"img{i:02d}.{ext}", quality=95)
    return root


@pytest.fixture
def tiny_config():
    return IndexConfig(input_size=16, pixel_size=8, code_dim=8)


@pytest.fixture
def ws(tmp_path, tiny_config):
    w = Workspace.create(tmp_path / "index", tiny_config)
    yield w
    w.close()


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance of 2 CPUs for one test module, shut down after it. Not skipped
    when Ray is missing: CI installs the `ray` extra, so its absence is an error."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def find(root, name):
    return next(root.rglob(name))


# Pillow's exif_transpose applies these; storing the inverse makes the upright image U again.
STORED = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
          6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_270}


class WrittenWhileRead:
    """Stands in for ``open`` in the ingest module: while one file is read, another process
    (simulated) rewrites it, for the first ``times`` reads of that file."""

    def __init__(self, target, new_content: bytes, times: int):
        self.target, self.new_content, self.times, self.reads = str(target), new_content, times, 0

    def __call__(self, path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)  # noqa: SIM115 - handed back to the reader
        if str(path) != self.target:
            return f
        self.reads += 1
        if self.reads > self.times:
            return f
        real_read = f.read

        def read(*a):
            data = real_read(*a)
            with open(path, "ab") as w:  # the writer appends the rest of the file meanwhile
                w.write(self.new_content[len(data):] or b"\0")
            st = os.stat(path)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
            return data

        f.read = read
        return f


# -- imgsearch as a subprocess, its -v log watched ------------------------------------------
#: phase -> the start of the `-v` log line that opens it, and how long to wait at most in it
PHASES = {
    "scan": ("scanning", 0.05),
    "decode": ("decoding", 1.0),
    "fit": ("fitting pca", 0.3),
    "train": ("training ae", 3.0),
    "encode": ("encoding", 0.5),
    "write": ("writing the", 0.05),
}
def imgsearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgsearch", "-v", *args]


def env() -> dict:
    return {**os.environ, "COLUMNS": "300", "PYTHONUNBUFFERED": "1"}


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child, before exec: Ctrl-C back to its default. A shell without job control
    starts background commands (``cmd &`` in a script, as CI runners and nohup'd suites do)
    with SIGINT ignored, the child inherits that, and Python then installs no KeyboardInterrupt
    handler: the SIGINT tests would see a run that cannot be interrupted, which no user at a
    terminal has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Watched:
    """A running imgsearch process whose stderr lines are collected as they arrive."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env(), start_new_session=True,
                                     preexec_fn=_ctrl_c_as_in_a_terminal)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def wait_for(self, marker: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(marker in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    return any(marker in line for line in self.lines)
                self.cond.wait(min(left, 0.02))
            return True

    def phase(self) -> str:
        """The last phase whose line has been seen."""
        with self.cond:
            for line in reversed(self.lines):
                for name, (marker, _) in PHASES.items():
                    if marker in line:
                        return name
        return "start-up"

    def finish(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout)
        self.reader.join(10)
        return rc

    @property
    def output(self) -> str:
        return "".join(self.lines)


# -- imgsearch serve in its own process -----------------------------------------------------
@contextmanager
def serving(index) -> Iterator[str]:
    """`imgsearch serve` on a free local port (scripts/report.serving, which the benchmarks
    use too); yields its URL, stops it after, and fails if any request crashed in it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        from report import serving as serve
    finally:
        sys.path.pop(0)
    with serve(index, clean=True) as (host, port):
        yield f"http://{host}:{port}"


# -- camera RAW files, written here (tifffile) ---------------------------------------------
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
