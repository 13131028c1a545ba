"""The planner, driven directly (no CLI): what it decides for each method, and what it does."""

import json
import shutil
import subprocess
import sys

import pytest

from imgsearch import fitting
from imgsearch.config import IndexConfig
from imgsearch.errors import ConfigMismatch, IndexLocked, UnknownMethod
from imgsearch.pipeline import Step, plan, update_index
from imgsearch.store import WriteLock
from imgsearch.workspace import Workspace

from .conftest import find

FAST = {"epochs": 1, "min_steps": 0, "max_steps": 2, "batch_size": 4}


@pytest.fixture
def small(tmp_path):
    ws = Workspace.create(tmp_path / "idx", IndexConfig(input_size=16, pixel_size=8,
                                                        code_dim=8))
    yield ws
    ws.close()


def actions(report):
    return [(b.method, b.action) for b in report.built]


def test_first_run_fits_baselines_and_trains_the_learned_method(small, photo_dir):
    calls = []
    report = update_index(small, photo_dir, ["pixels", "pca", "ae"], training=FAST,
                          progress=lambda *a: calls.append(a))
    assert actions(report) == [("pixels", "fit"), ("pca", "fit"), ("ae", "train")]
    assert report.ingest.added == 12 and all(b.total == 12 for b in report.built)
    assert small.built_methods() == ["pixels", "pca", "ae"]
    phases = {c[0] for c in calls}
    assert {"ingest", "encode pixels", "encode pca", "train ae", "encode ae"} <= phases
    assert all(done <= total for _, done, total, _ in calls if total is not None)
    from imgsearch.build import load_method

    assert load_method(small, "ae").embedder.spec == "flip,center,whiten=0.5,l2"  # saved


def test_second_run_syncs_only_what_changed(small, photo_dir):
    update_index(small, photo_dir, ["pixels", "ae"], training=FAST)
    find(photo_dir, "img03.bmp").unlink()
    report = update_index(small, photo_dir, ["pixels", "ae"], training=FAST)
    assert actions(report) == [("pixels", "sync"), ("ae", "sync")]
    assert [(b.encoded, b.removed, b.total) for b in report.built] == [(0, 1, 11)] * 2


def test_rebuild_refits_baselines_and_reencodes_with_the_saved_model(small, photo_dir):
    update_index(small, photo_dir, ["pca", "ae"], training=FAST)
    model = (small.method_dir("ae") / "model.pt").read_bytes()
    report = update_index(small, photo_dir, ["pca", "ae"], training=FAST, rebuild=True)
    assert actions(report) == [("pca", "fit"), ("ae", "encode")]
    assert (small.method_dir("ae") / "model.pt").read_bytes() == model  # not retrained


def test_plan_decides_once_per_method(small, photo_dir):
    assert plan(small, ["pixels", "vae"]) == [
        Step("pixels", "fit", "not built yet"), Step("vae", "train", "no trained model yet")]
    # models train last, whatever the order asked: the baselines answer while they train
    assert [(s.method, s.action) for s in plan(small, ["ae", "pixels", "vae", "pca"])] == [
        ("pixels", "fit"), ("pca", "fit"), ("ae", "train"), ("vae", "train")]
    update_index(small, photo_dir, ["pixels", "ae"], training=FAST)
    assert [(s.method, s.action) for s in plan(small, ["pixels", "ae"])] == [
        ("pixels", "sync"), ("ae", "sync")]
    assert [(s.method, s.action) for s in plan(small, ["pixels"], imported="ae")] == [
        ("ae", "import"), ("pixels", "sync")]
    shutil.rmtree(small.method_dir("ae") / ".." / "pixels")  # a model but no index: encode
    (small.method_dir("ae") / "state.json").unlink()
    assert [(s.method, s.action) for s in plan(small, ["pixels", "ae"])] == [
        ("pixels", "fit"), ("ae", "encode")]


def test_importing_a_model_trained_elsewhere(small, photo_dir, tmp_path):
    update_index(small, photo_dir, ["ae"], training=FAST)
    other = Workspace.create(tmp_path / "other", small.config)
    report = update_index(other, photo_dir, ["pixels"], model=small.method_dir("ae") / "model.pt")
    assert actions(report) == [("ae", "import"), ("pixels", "fit")]
    wrong = Workspace.create(tmp_path / "wrong", IndexConfig(input_size=32, code_dim=8))
    with pytest.raises(ConfigMismatch, match="model expects 3-channel 16x16 images"):
        update_index(wrong, photo_dir, ["pixels"], model=small.method_dir("ae") / "model.pt")
    assert wrong.catalog.counts()["indexed"] == 0  # refused before any work
    other.close()
    wrong.close()


def test_update_holds_the_write_lock_and_checks_names_first(small, photo_dir):
    with pytest.raises(UnknownMethod):
        update_index(small, photo_dir, ["pixels", "sift"])
    with WriteLock(small.root, "test"), pytest.raises(IndexLocked):
        update_index(small, photo_dir, ["pixels"])


def test_a_corrupt_catalog_is_moved_aside_on_rebuild(small, photo_dir):
    update_index(small, photo_dir, ["pixels"])
    small.close()
    (small.root / "catalog.db").write_bytes(b"not a database" * 100)
    ws = Workspace.open(small.root)
    report = update_index(ws, photo_dir, ["pixels"], rebuild=True)
    assert report.notes and "moved it to" in report.notes[0]
    assert report.ingest.added == 12 and actions(report) == [("pixels", "fit")]
    ws.close()


def test_model_config_takes_the_index_sizes_and_the_method_defaults(small):
    cfg = fitting.model_config(small, "vae", beta=0.5)
    assert (cfg.input_size, cfg.code_dim, cfg.beta) == (16, 8, 0.5)
    with pytest.raises(ConfigMismatch, match="not learned"):
        fitting.model_config(small, "pca")


QUERY_PATHS = {
    "query --method ae": "app(['query', QUERY, '--index', INDEX, '--method', 'ae', '--json'])",
    "query (default method)": "app(['query', QUERY, '--index', INDEX, '--json'])",
    "info": "app(['info', '--index', INDEX, '--json'])",
    "serve (the app made)": "from imgsearch.server import create_app\n"
                            "create_app(INDEX)\nraise SystemExit(0)",
}


@pytest.mark.slow
def test_a_query_never_loads_training_code(small, photo_dir):
    """Inference apart from training: a query (with a learned method, or the default one),
    ``info`` and the server's start, each in a fresh process, run the encoder exported to
    ONNX and import neither the training loop, nor torchvision, nor torch, nor pandas."""
    update_index(small, photo_dir, ["ae"], training=FAST)
    query = find(photo_dir, "img01.png")
    for name, call in QUERY_PATHS.items():
        code = (
            "import json, sys\n"
            "from imgsearch.cli import app\n"
            f"QUERY, INDEX = {str(query)!r}, {str(small.root)!r}\n"
            "try:\n"
            + "".join(f"    {line}\n" for line in call.splitlines()) +
            "except SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, (name, run.stderr[-2000:])
        loaded = set(json.loads(run.stderr.strip().splitlines()[-1]))
        if name.startswith("query"):
            assert '"method": "ae"' in run.stdout, (name, run.stdout)
            assert "onnxruntime" in loaded and "imgsearch.methods.onnx" in loaded, name
        assert "imgsearch.training" not in loaded and "imgsearch.augment" not in loaded, name
        # pandas too: sqlite-utils would import it (0.23 s) for nothing the catalog stores
        heavy = {m.split(".")[0] for m in loaded} & {"torch", "torchvision", "ray", "pandas"}
        assert not heavy, (name, heavy)


def test_an_inverted_index_syncs_adds_and_removes_like_an_exact_one(tmp_path, photo_dir):
    from imgsearch.build import load_method
    from imgsearch.integrity import check

    ws = Workspace.create(tmp_path / "idx", IndexConfig(input_size=16, pixel_size=8,
                                                        code_dim=8, exact_threshold=4))
    try:
        moved = find(photo_dir, "img03.bmp")
        aside = tmp_path / "aside.bmp"
        shutil.move(moved, aside)
        first = update_index(ws, photo_dir, ["pixels", "pca"])
        assert {b.index_type for b in first.built} == {"ivf-flat"}  # 11 codes > 4
        shutil.move(aside, moved)
        find(photo_dir, "img05.gif").unlink()
        second = update_index(ws, photo_dir, ["pixels", "pca"])
        assert [(b.action, b.encoded, b.removed, b.total) for b in second.built] == [
            ("sync", 1, 1, 11)] * 2
        assert check(ws).ok
        loaded = load_method(ws, "pixels")
        assert loaded.index.index_type == "ivf-flat" and 0 < loaded.state.recall <= 1
        held = set(loaded.index.ids().tolist())
        assert len(held) == 11 and loaded.index.search(loaded.index.vectors(sorted(held)[:1]),
                                                        1)[1][0, 0] == sorted(held)[0]
    finally:
        ws.close()


@pytest.mark.slow
def test_the_demo_photos_give_the_same_model_on_a_busy_machine(real_photos, tmp_path):
    """Training is measured in steps, not minutes: the demo photos indexed twice, once with a
    CPU-bound thread beside the training, give the same self-check score (well within two
    standard errors: the same weights) and the same default method."""
    import threading

    import numpy as np

    quiet = Workspace.create(tmp_path / "quiet", IndexConfig())
    try:
        update_index(quiet, real_photos, ["pixels"], workers=2)
    finally:
        quiet.close()
    shutil.copytree(tmp_path / "quiet", tmp_path / "busy")
    training = {"steps": 8, "max_minutes": 0}
    stop = threading.Event()

    def burn() -> None:  # element-wise work, not BLAS: two threads calling OpenBLAS at once
        #                    can leave one spinning in its thread pool for good (seen in CI)
        x = np.random.default_rng(0).random(1 << 20)
        while not stop.is_set():
            np.sin(x, out=x)
            x += 1.0

    states = {}
    for name in ("quiet", "busy"):
        busy = threading.Thread(target=burn) if name == "busy" else None
        if busy:
            busy.start()
        ws = Workspace.open(tmp_path / name)
        try:
            update_index(ws, real_photos, ["pixels", "ae"], training=training, workers=2)
            states[name] = (ws.method_state("ae"), ws.preference(), ws.method_state("pixels"))
        finally:
            ws.close()
            if busy:
                stop.set()
                busy.join()
    (a, pa, base), (b, pb, _) = states["quiet"], states["busy"]
    assert a.training["steps"] == b.training["steps"] == 8
    assert abs(a.selfcheck - b.selfcheck) <= 2 * max(a.selfcheck_se, b.selfcheck_se)
    assert a.selfcheck == b.selfcheck and pa == pb
    # both methods were scored on the same copies, kept image by image: their lead is paired
    from imgsearch.stats import paired

    mine, other = a.selfcheck_outcome, base.selfcheck_outcome
    assert mine["key"] == other["key"] and len(mine["per_image"]) == len(other["per_image"])
    assert sum(mine["per_image"]) / (mine["copies"] * len(mine["per_image"])) == pytest.approx(
        a.selfcheck)
    lead = paired({"ae": mine, "pixels": other}, "ae", "pixels")
    assert lead is not None and lead[0] == pytest.approx(a.selfcheck - base.selfcheck)
    # and the other shots of the same held-out images: the default weighs both
    assert a.shots["key"] == base.shots["key"] and 0 <= a.shots["score"] <= 1
    both = paired({"ae": [mine, a.shots], "pixels": [other, base.shots]}, "ae", "pixels")
    assert both[0] == pytest.approx((lead[0] + a.shots["score"] - base.shots["score"]) / 2)
    if pa.method == "ae" or pa.lead:  # where ae was weighed against the baseline, paired
        assert pa.lead["paired"] and pa.lead["lead"] == pytest.approx(both[0], abs=1e-6)
        assert "copies and other shots" in pa.reason or pa.method == "pixels"


def test_a_training_run_says_how_far_it_is_until_the_method_is_built(small, photo_dir):
    """While `ae` trains, the workspace says so (the step, the planned steps, this process);
    once `ae` is built, nothing is left saying it trains."""
    seen = []

    def progress(phase, done, total, note=""):
        if phase == "train ae":
            seen.append(small.training())

    update_index(small, photo_dir, ["pixels", "ae"], training={**FAST, "steps": 3, "max_steps": 3},
                 progress=progress)
    assert seen and all(set(t) == {"ae"} for t in seen)
    last = seen[-1]["ae"]
    assert last["state"] == "training" and last["work"] == 3 and 1 <= last["step"] <= 3
    assert small.training() == {} and small.has_model("ae")


def test_an_interrupted_training_is_said_so_and_resumed(small, photo_dir, monkeypatch):
    """Ctrl-C in training: the checkpoint keeps the steps done and the best weights, the
    workspace says "interrupted" with the step, and the next run resumes from there."""
    from imgsearch import training as loop

    real = loop.train

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)  # a few steps, checkpointed
        raise KeyboardInterrupt

    work = {**FAST, "steps": 6, "max_steps": 2}  # 2 steps a run
    monkeypatch.setattr(loop, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        update_index(small, photo_dir, ["pixels", "ae"], training=work)
    stopped = small.training()["ae"]
    assert stopped["state"] == "interrupted" and stopped["step"] >= 1
    assert not small.has_model("ae") and small.training_checkpoint("ae").exists()
    monkeypatch.setattr(loop, "train", real)
    notes = []
    update_index(small, photo_dir, ["pixels", "ae"], training=work,
                 progress=lambda phase, done, total, note="": notes.append(note))
    assert any(n.startswith("resumed from step 2") for n in notes), notes
    assert small.has_model("ae") and small.training() == {}
    assert small.method_state("ae").training["steps"] == 4  # 2 before, 2 after


def test_each_method_that_reconstructs_is_measured_on_held_out_images(tmp_path):
    """The held-out PSNR of `ae`, and of PCA at `ae`'s code size fitted on `ae`'s training
    images (not the held-out ones), kept in the state and shown by `imgsearch info`."""
    from PIL import Image

    from imgsearch.cli import reconstruction_line
    from imgsearch.evaluate import psnr
    from imgsearch.methods.baselines import PCAEmbedder, pixel_vectors

    from .conftest import pattern

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(30):
        Image.fromarray(pattern(i, 48)).save(photos / f"p{i:02d}.png")
    ws = Workspace.create(tmp_path / "idx", IndexConfig(input_size=16, pixel_size=8,
                                                        code_dim=8))
    update_index(ws, photos, ["pixels", "pca", "ae"], training=FAST)
    assert ws.method_state("pixels").reconstruction is None
    assert ws.method_state("pca").reconstruction is None  # its fit saw the held-out images
    ae = ws.method_state("ae").reconstruction
    held, rest = fitting.held_out(ws, ws.catalog.indexed_ids())
    assert ae["images"] == len(held) > 0 and ae["size"] == 8
    # PCA refitted by hand on the images ae trained on: the same PSNR
    ref = PCAEmbedder(8, 8)
    ref.fit(lambda: iter([ws.cache.read(rest)]), len(rest))
    images = ws.cache.read(held)
    drawn = (ref.reconstruct(images) * 255 + 0.5).clip(0, 255).astype("uint8")
    want = psnr(pixel_vectors(images, 8), pixel_vectors(drawn, 8))
    assert ae["pca_dim"] == 8 and abs(ae["pca_psnr"] - want) < 1e-3
    assert 5 < ae["psnr"] < 60
    line = reconstruction_line(ae)
    assert f"PSNR {ae['psnr']:.1f} dB" in line and f"{ae['pca_psnr']:.1f} dB" in line
    ws.close()
