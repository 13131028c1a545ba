"""Interrupted runs: `imgsearch index` and `imgsearch train` killed with SIGKILL at random points.

Each round changes the photo folder (new, modified, deleted and renamed files, so every run
has work), starts a real `imgsearch` process, waits for a randomly chosen phase to begin (the
phase lines of `-v`), sleeps a random fraction of a second and SIGKILLs it. After every kill the
catalog, pixel cache and every method index must agree (`imgsearch.integrity.check`). A final run
must then leave exactly what a clean run over the same folder leaves: the same catalog rows,
the same cached pixels, the same codes.

IMGSEARCH_KILLS sets the number of kills (default 10; docs/RELIABILITY.md reports a run with
more) and IMGSEARCH_KILL_REPORT a JSON file to write the tally to.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch.catalog import INDEXED, REMOVED
from imgsearch.index import VectorIndex
from imgsearch.integrity import check
from imgsearch.workspace import Workspace

from .conftest import PHASES, Watched, imgsearch, pattern

KILLS = int(os.environ.get("IMGSEARCH_KILLS", "10"))
ARGS = ["--methods", "pixels,pca,ae", "--input-size", "32", "--workers", "2",
        "--train-minutes", "0.05", "--train-epochs", "2"]


class Photos:
    """A folder that changes a little every round."""

    def __init__(self, root: Path, n: int, rng: np.random.Generator, side: int = 80,
                 exts: tuple[str, ...] = ("jpg", "png")):
        self.root, self.rng, self.seed, self.side, self.exts = root, rng, 0, side, exts
        root.mkdir(parents=True)
        for _ in range(n):
            self.add()

    def add(self) -> None:
        self.seed += 1
        ext = self.exts[self.seed % len(self.exts)]
        sub = self.root / f"d{self.seed % 4}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(pattern(self.seed, self.side)).save(sub / f"p{self.seed}.{ext}",
                                                            quality=92)

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def change(self) -> None:
        for _ in range(3):
            self.add()
        files = self.files()
        pick = self.rng.choice(len(files), 3, replace=False)
        modified, deleted, renamed = (files[i] for i in pick)
        self.seed += 1
        Image.fromarray(pattern(1000 + self.seed, 80)).save(modified, quality=92)
        st = modified.stat()
        os.utime(modified, (st.st_atime, st.st_mtime + 5))
        deleted.unlink()
        renamed.rename(renamed.with_name("r" + renamed.name))


def assert_consistent(index: Path) -> None:
    if not (index / "config.json").is_file():
        return  # killed before the index existed
    ws = Workspace.open(index)
    try:
        result = check(ws)
        assert result.ok, result.all_problems()
        # the features are committed with their rows: no kill leaves a row without them
        assert result.lacking_features == 0
    finally:
        ws.close()


def snapshot(index: Path) -> dict:
    """What an index holds, keyed by file path: catalog rows, cached pixels, each method's
    codes."""
    ws = Workspace.open(index)
    try:
        rows = {r.path: r for r in ws.catalog.rows() if r.state != REMOVED}
        path_of = {r.id: r.path for r in rows.values()}
        live = [r for r in rows.values() if r.state == INDEXED]
        out = {
            "rows": {p: (r.state, r.hash, r.size, r.width, r.height) for p, r in rows.items()},
            "cache": {r.path: ws.cache.read([r.id])[0] for r in live},
        }
        for method in ws.built_methods():
            index_ = VectorIndex.load(ws.index_path(method))
            ids = index_.ids()
            out[method] = dict(zip((path_of[i] for i in ids.tolist()), index_.vectors(ids)))
        return out
    finally:
        ws.close()


def distances(codes: dict) -> np.ndarray:
    x = np.stack([codes[p] for p in sorted(codes)])
    return np.linalg.norm(x[:, None] - x[None], axis=2)


@pytest.mark.slow
def test_sigkill_at_random_points_never_corrupts(tmp_path):
    seed = int(os.environ.get("IMGSEARCH_KILL_SEED", "0"))
    rng = np.random.default_rng(seed)
    photos = Photos(tmp_path / "photos", 120, rng)
    index = tmp_path / "idx"
    tally: Counter = Counter()
    completed = 0
    for _ in range(KILLS):
        phase = str(rng.choice(list(PHASES)))
        if phase == "train" and (index / "methods" / "ae" / "model.pt").is_file():
            cmd = imgsearch("train", "--index", str(index), "--model", "ae", "--epochs", "3",
                            "--max-minutes", "0.1", "--fresh")
        else:
            extra = ["--rebuild"] if phase == "fit" else []
            cmd = imgsearch("index", str(photos.root), "--index", str(index), *ARGS, *extra)
        run = Watched(cmd)
        marker, longest = PHASES[phase]
        if run.wait_for(marker, timeout=120) and run.proc.poll() is None:
            time.sleep(rng.uniform(0, longest))
            os.killpg(run.proc.pid, signal.SIGKILL)  # the process and its decoding workers
            run.finish()
            tally[run.phase()] += 1
        else:
            assert run.finish() == 0, run.output  # it finished before the phase came
            completed += 1
        assert_consistent(index)
        photos.change()

    report = {"kills": sum(tally.values()), "by_phase": dict(tally),
              "finished_before_the_kill": completed, "seed": seed}
    print(json.dumps(report))
    if os.environ.get("IMGSEARCH_KILL_REPORT"):
        Path(os.environ["IMGSEARCH_KILL_REPORT"]).write_text(json.dumps(report, indent=1))
    assert sum(tally.values()) >= KILLS // 2  # most rounds must really have been killed

    final = Watched(imgsearch("index", str(photos.root), "--index", str(index), *ARGS))
    assert final.finish() == 0, final.output
    assert_consistent(index)
    clean_index = tmp_path / "clean"
    clean = Watched(imgsearch("index", str(photos.root), "--index", str(clean_index), *ARGS))
    assert clean.finish() == 0, clean.output

    got, want = snapshot(index), snapshot(clean_index)
    assert got["rows"] == want["rows"]  # same files, states, hashes: no duplicates, no losses
    assert got["cache"].keys() == want["cache"].keys()
    for p in want["cache"]:  # the cached pixels survived every kill intact
        np.testing.assert_array_equal(got["cache"][p], want["cache"][p], err_msg=p)
    indexed = {p for p, r in want["rows"].items() if r[0] == INDEXED}
    for method in ("pixels", "pca", "ae"):
        assert set(got[method]) == set(want[method]) == indexed, method
    for p in indexed:  # raw-pixel codes are a pure function of the cached pixels: equal
        np.testing.assert_array_equal(got["pixels"][p], want["pixels"][p], err_msg=p)
    # PCA was fitted on an earlier state of the folder; refitted, it matches the clean fit up
    # to the sign of each component (so compare distances between codes) and up to the
    # randomized SVD's precision: catalog ids, and so the order of the rows it is fitted on,
    # follow the workers' completion order, which differs between any two runs.
    refit = Watched(imgsearch("index", str(photos.root), "--index", str(index), *ARGS,
                              "--rebuild"))
    assert refit.finish() == 0, refit.output
    np.testing.assert_allclose(distances(snapshot(index)["pca"]), distances(want["pca"]),
                               rtol=1e-2)



@pytest.mark.slow
def test_sigint_stops_cleanly_and_says_how_to_resume(tmp_path):
    # PNGs (never draft-decoded) big enough that decoding them lasts a few seconds, so that
    # the interrupt lands while decoding, as the test says (small files were all decoded
    # within 0.2 s, and the interrupt then fell in a later phase)
    photos = Photos(tmp_path / "photos", 300, np.random.default_rng(1), side=480,
                    exts=("png",))
    index = tmp_path / "idx"
    run = Watched(imgsearch("index", str(photos.root), "--index", str(index), *ARGS))
    assert run.wait_for("decoding", timeout=120)
    time.sleep(0.1)
    os.killpg(run.proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    assert run.finish() == 130, run.output
    assert "interrupted" in run.output and "Re-run the same command" in run.output
    assert "Traceback" not in run.output
    assert_consistent(index)
    ws = Workspace.open(index)
    kept = ws.catalog.counts()[INDEXED]
    ws.close()
    again = Watched(imgsearch("index", str(photos.root), "--index", str(index), *ARGS))
    assert again.finish() == 0, again.output
    assert f"{kept} unchanged" in again.output  # the work done before Ctrl-C is kept
    assert_consistent(index)
    shutil.rmtree(tmp_path / "photos")


@pytest.mark.slow
def test_ctrl_c_in_training_keeps_the_best_weights_and_the_next_run_resumes(tmp_path):
    """While `ae` trains, the run says queries work already and `info` (another process)
    names `ae` as training, with its step; Ctrl-C keeps the checkpoint with the best-scoring
    weights, `info` then says "interrupted", and the next `imgsearch index` resumes and says
    so, building `ae` from that checkpoint."""
    import subprocess

    from imgsearch.models.checkpoint import load_checkpoint

    from .conftest import env

    photos = Photos(tmp_path / "photos", 40, np.random.default_rng(3), side=48)
    index = tmp_path / "idx"
    args = ["--methods", "pixels,ae", "--input-size", "16", "--workers", "2",
            "--train-minutes", "0"]

    def info() -> dict:
        done = subprocess.run(imgsearch("info", "--index", str(index), "--json"),
                              capture_output=True, text=True, env=env(), timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    run = Watched(imgsearch("index", str(photos.root), "--index", str(index), *args,
                            "--train-steps", "1000000"))
    assert run.wait_for("queries work now with pixels", timeout=180), run.output
    assert run.wait_for(", self-check ", timeout=300), run.output  # best weights exist
    training = info()["training"]["ae"]
    assert training["state"] == "training" and training["step"] >= 1
    assert training["work"] == 1_000_000 and training["best_selfcheck"] is not None
    os.killpg(run.proc.pid, signal.SIGINT)
    assert run.finish() == 130, run.output
    assert "Traceback" not in run.output
    ckpt = load_checkpoint(index / "training" / "ae.pt")
    assert ckpt["best"]["selfcheck"] is not None and ckpt["step"] >= training["step"]
    stopped = info()["training"]["ae"]
    assert stopped["state"] == "interrupted" and "ae" not in info()["methods"]
    again = Watched(imgsearch("index", str(photos.root), "--index", str(index), *args,
                              "--train-steps", "1"))  # no more steps: build from the checkpoint
    assert again.finish() == 0, again.output
    assert f"resumed from step {ckpt['step']:,}" in again.output
    after = info()
    assert "ae" in after["methods"] and after["training"] == {}
