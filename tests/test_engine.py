"""Engines: the local one is today's behaviour; the Ray one, on a local Ray instance of 2 CPUs,
gives the same catalog rows, cached pixels and codes, also when its workers fail or die, or
when its driver is killed. (The tests that use Ray are marked slow: about 45 s together.)"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsearch.catalog import FAILED
from imgsearch.cli import app
from imgsearch.config import IndexConfig
from imgsearch.engine import INSTALL_HINT, LOCAL, Fault, RayEngine, engine_for
from imgsearch.errors import EngineError, ImgSearchError
from imgsearch.index import VectorIndex
from imgsearch.integrity import check
from imgsearch.methods import get
from imgsearch.pipeline import update_index
from imgsearch.reading import read_one
from imgsearch.workspace import Workspace

from .conftest import Watched, find, imgsearch, pattern

FAST = {"max_steps": 2, "min_steps": 0, "epochs": 1, "batch_size": 4}
CONFIG = IndexConfig(input_size=32)


def snapshot(ws: Workspace) -> dict:
    """What an index holds, keyed by file path: catalog rows, cached pixels, each method's
    codes."""
    rows = {r.path: r for r in ws.catalog.rows()}
    path_of = {r.id: p for p, r in rows.items()}
    out = {"rows": {p: (r.id, r.state, r.hash, r.size, r.width, r.height, r.format, r.reason)
                    for p, r in rows.items()},
           "cache": {p: ws.cache.read([r.id])[0].tobytes() for p, r in rows.items()
                     if r.state == "indexed"}}
    for method in ws.built_methods():
        index = VectorIndex.load(ws.index_path(method))
        ids = index.ids()
        out[method] = dict(zip((path_of[i] for i in ids.tolist()), index.vectors(ids)))
    return out


def assert_same(got: dict, want: dict, methods: list[str]) -> None:
    assert got["rows"] == want["rows"]  # paths, ids, states, hashes, sizes, reasons
    assert got["cache"] == want["cache"]  # byte-equal pixels
    for m in methods:
        assert got[m].keys() == want[m].keys(), m
        for p in want[m]:
            np.testing.assert_allclose(got[m][p], want[m][p], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{m}: {p}")


def index_with(tmp_path, name: str, photos, methods: list[str], engine=LOCAL) -> dict:
    ws = Workspace.create(tmp_path / name, CONFIG)
    try:
        update_index(ws, photos, methods, training=FAST, workers=1, engine=engine)
        assert check(ws).ok
        return snapshot(ws)
    finally:
        ws.close()


@pytest.fixture
def photos(photo_dir):
    """The generated photos and one file that is no image."""
    (photo_dir / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return photo_dir


# -- the local engine and choosing one ---------------------------------------------------
def test_local_engine_is_the_worker_pool_and_the_embedder_in_process(photos, tmp_path):
    paths = sorted(str(p) for p in photos.rglob("*") if p.is_file())
    tasks = [(p, 16, {}, 0.0) for p in paths]
    got = sorted(LOCAL.read(tasks, 2), key=lambda r: r["path"])
    assert got == [read_one(t) for t in tasks]
    pixels = np.stack([pattern(i, 16) for i in range(5)])
    embedder = get("pixels").create(IndexConfig(input_size=16, pixel_size=8))
    (ids, codes), = LOCAL.encode("pixels", embedder, tmp_path, CONFIG, [([1, 2, 3, 4, 5],
                                                                        pixels)])
    assert ids == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(codes, embedder.encode(pixels))


def test_engine_for_names_the_choices():
    assert engine_for("local") is LOCAL
    with pytest.raises(ImgSearchError, match=r"^unknown engine 'spark'; choose one of local, "
                                             r"ray$"):
        engine_for("spark")
    with pytest.raises(ImgSearchError, match=r"^--ray-address needs --engine ray$"):
        engine_for("local", "10.0.0.1:6379")


def test_without_ray_one_line_says_how_to_install_it(monkeypatch, photo_dir, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(EngineError) as e:
        engine_for("ray")
    assert str(e.value) == INSTALL_HINT == "--engine ray needs Ray: pip install 'imgsearch[ray]'"
    result = CliRunner().invoke(app, ["index", str(photo_dir), "--index", str(tmp_path / "i"),
                                      "--engine", "ray"])
    assert result.exit_code == 1
    assert result.stderr == f"error: {INSTALL_HINT}\n"
    assert not (tmp_path / "i").exists()  # refused before an index folder was made


# -- the Ray engine on a local Ray instance ------------------------------------------------
@pytest.mark.slow
def test_ray_encoding_actors_are_kept_between_calls_and_replaced_when_retrained(ray_local,
                                                                               tmp_path):
    pixels = np.stack([pattern(i, 32) for i in range(40)])
    batches = [(list(range(20)), pixels[:20]), (list(range(20, 40)), pixels[20:])]
    folder = tmp_path / "pca"
    folder.mkdir()

    def fitted(images):
        pca = get("pca").create(CONFIG)
        pca.fit(lambda: iter([images]), len(images))
        pca.save(folder)
        return pca

    def codes(engine, pca):
        got = list(engine.encode("pca", pca, folder, CONFIG, batches))
        assert [ids for ids, _ in got] == [ids for ids, _ in batches]
        np.testing.assert_allclose(np.concatenate([c for _, c in got]), pca.encode(pixels),
                                   rtol=1e-4, atol=1e-4)
        return got

    with RayEngine(actors=2) as engine:
        first = fitted(pixels)
        codes(engine, first)  # an IVF build's training sample ...
        actors = list(engine._pool[2])
        assert len(actors) == 2
        codes(engine, first)  # ... then every code: the same actors answer
        assert engine._pool[2] == actors
        retrained = fitted(pixels[::-1][:30])
        codes(engine, retrained)  # new files: a new pool, whose codes are the new model's
        assert len(engine._pool[2]) == 2
        assert not set(engine._pool[2]) & set(actors)
        # a read releases the pool: on 2 CPUs, its idle actors would starve the read tasks
        assert len(list(engine.read([(str(tmp_path / "none.jpg"), 16, {}, 0.0)]))) == 1
        assert engine._pool is None
    assert engine._pool is None


@pytest.mark.slow
def test_ray_run_equals_local_run_then_syncs_alike(ray_local, photos, tmp_path):
    methods = ["pixels", "pca", "ae"]
    want = index_with(tmp_path, "local", photos, methods)
    with RayEngine() as ray_engine:
        got = index_with(tmp_path, "ray", photos, methods, ray_engine)
    assert_same(got, want, methods)
    broken = str(find(photos, "broken.jpg"))
    assert got["rows"][broken][1] == FAILED
    assert got["rows"][broken][7] == "not a recognised image format"
    assert ray_local.is_initialized()  # the engine leaves a Ray it did not start alone

    find(photos, "img03.bmp").unlink()  # a deleted, a changed and a new photo: every step
    find(photos, "img05.gif").rename(photos / "moved.gif")
    Image.fromarray(pattern(99)).save(photos / "a" / "new.png")
    want = index_with(tmp_path, "local", photos, methods)
    with RayEngine() as ray_engine:
        got = index_with(tmp_path, "ray", photos, methods, ray_engine)
    assert_same(got, want, methods)
    assert str(photos / "moved.gif") in got["pixels"]


def answers(root, methods: list[str]) -> dict:
    """What an index answers, by file path: each file's catalog id, each method's state.json
    figures (self-check, thresholds, margin) and the top 10 of a query by every indexed
    image's code."""
    from dataclasses import asdict

    from imgsearch.build import load_method
    from imgsearch.search import Searcher

    ws = Workspace.open(root)
    try:
        rows = {r.id: r.path for r in ws.catalog.rows()}
        out = {"ids": {p: i for i, p in rows.items()}, "preference": ws.preference()}
        for m in methods:
            loaded = load_method(ws, m)
            state = asdict(ws.method_state(m))
            state.pop("gen")
            out[m] = state
            ids, codes = loaded.index.items()
            searcher = Searcher(ws.catalog, loaded.embedder, loaded.index, CONFIG.input_size)
            out[m, "top10"] = {rows[int(i)]: [h.path for h in searcher.search_code(c, 10)]
                               for i, c in zip(ids, codes)}
        return out
    finally:
        ws.close()


@pytest.mark.slow
def test_ray_and_local_give_one_answer_on_the_real_photos(ray_local, real_photos, tmp_path):
    """The demo's real photos (scripts/fetch_data.sh): the same catalog ids, self-check
    scores, thresholds and margins, and every query's top 10, whichever engine ingests."""
    methods = ["pixels", "pca"]
    for name, engine in (("local", LOCAL), ("ray", RayEngine())):
        with engine:
            ws = Workspace.create(tmp_path / name, CONFIG)
            try:
                update_index(ws, real_photos, methods, workers=2, engine=engine)
            finally:
                ws.close()
    want, got = answers(tmp_path / "local", methods), answers(tmp_path / "ray", methods)
    assert len(want["ids"]) > 100
    assert got["ids"] == want["ids"]
    assert got["preference"] == want["preference"]  # the same default, for the same reason
    for m in methods:
        assert want[m]["selfcheck"] is not None, m
        shown = got[m].pop("reconstruction"), want[m].pop("reconstruction")
        # each held-out image's hits, on the copies and the other shots, under the same keys
        for measure in ("selfcheck_outcome", "shots"):
            assert got[m].pop(measure) == want[m].pop(measure), (m, measure)
        assert got[m] == pytest.approx(want[m]), m
        assert (shown[0] or {}) == pytest.approx(shown[1] or {}), m
        assert got[m, "top10"] == want[m, "top10"], m


@pytest.mark.slow
@pytest.mark.parametrize("stage, kind", [("read", "raise"), ("read", "exit"),
                                         ("encode", "raise"), ("encode", "exit")])
def test_a_failed_or_killed_worker_is_retried(ray_local, photos, tmp_path, stage, kind):
    want = index_with(tmp_path, "local", photos, ["pixels"])
    fault = Fault(str(tmp_path / "fault"), stage, kind)
    got = index_with(tmp_path, "ray", photos, ["pixels"], RayEngine(fault=fault))
    assert (tmp_path / "fault.0").exists()  # it did fail once
    assert_same(got, want, ["pixels"])


@pytest.mark.slow
@pytest.mark.parametrize("stage, step", [("read", "reading photos"), ("encode", "encoding")])
def test_a_worker_failing_every_retry_stops_the_run_in_one_line(ray_local, photos, tmp_path,
                                                                  stage, step):
    ws = Workspace.create(tmp_path / "ray", CONFIG)
    try:
        fault = Fault(str(tmp_path / "fault"), stage, "raise", times=100)
        with pytest.raises(EngineError) as e:
            update_index(ws, photos, ["pixels"], engine=RayEngine(fault=fault))
        assert str(e.value) == (f"Ray: {step} failed after 3 retries: RuntimeError: injected "
                                f"fault 4 of 100 in {stage}")
        assert check(ws).ok  # what was committed is consistent ...
    finally:
        ws.close()
    want = index_with(tmp_path, "local", photos, ["pixels"])
    with RayEngine() as ray_engine:  # ... and the next run completes it
        assert_same(index_with(tmp_path, "ray", photos, ["pixels"], ray_engine), want,
                    ["pixels"])


@pytest.mark.slow
def test_killing_the_driver_leaves_a_consistent_index_the_next_run_completes(ray_local,
                                                                            tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(60):
        Image.fromarray(pattern(i, 80)).save(photos / f"p{i:02d}.{('jpg', 'png')[i % 2]}")
    index = tmp_path / "idx"
    address = ray_local.get_runtime_context().gcs_address
    args = ["index", str(photos), "--index", str(index), "--methods", "pixels,pca",
            "--input-size", "32"]
    ray_args = ["--engine", "ray", "--ray-address", address]
    for marker in ("decoding", "encoding pca"):  # SIGKILL while Ray reads, then encodes
        run = Watched(imgsearch(*args, *ray_args))
        assert run.wait_for(marker, timeout=120), run.output
        time.sleep(0.2)
        os.killpg(run.proc.pid, signal.SIGKILL)
        assert run.finish() == -signal.SIGKILL, run.output  # killed, not finished
        ws = Workspace.open(index)
        try:
            assert check(ws).ok, check(ws).all_problems()
        finally:
            ws.close()
    final = subprocess.run(imgsearch(*args, *ray_args), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    clean = subprocess.run(imgsearch(*args[:3], str(tmp_path / "clean"), *args[4:],
                                     "--workers", "1"), capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    got, want = (Workspace.open(p) for p in (index, tmp_path / "clean"))
    try:
        assert_same(snapshot(got), snapshot(want), ["pixels", "pca"])
    finally:
        got.close()
        want.close()


@pytest.mark.slow
def test_workers_of_a_ray_the_engine_starts_run_the_drivers_code(tmp_path):
    code = ("import ray; from imgsearch.engine import RayEngine\n"
            "with RayEngine('local') as engine:\n"
            "    engine._connect()\n"
            "    where = ray.remote(lambda: __import__('imgsearch').__file__)\n"
            "    print(ray.get(where.options(num_cpus=0).remote()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "/runtime_resources/py_modules_files/" in out.stdout  # shipped, not installed
