"""Corrupt files in an index and out-of-range arguments: one clear line naming the file and
the fix, exit code 1, never a traceback; the named fix works."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from imgsearch.cli import app
from imgsearch.errors import IndexFileError
from imgsearch.models.checkpoint import load_checkpoint

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr  # after any progress bar
    return errors[0]


@pytest.fixture
def built(photo_dir, tmp_path):
    index = tmp_path / "idx"
    result = run("index", photo_dir, "--index", index, "--methods", "pixels,pca",
                 "--input-size", 32)
    assert result.exit_code == 0, result.output
    return index


def query(built, photo_dir, method="pca"):
    return run("query", next(photo_dir.rglob("img01.png")), "--index", built, "--method",
               method)


@pytest.mark.parametrize("target, damage", [
    ("catalog.db", b"this is not a database" * 100),
    ("methods/pca/index.faiss", b"\x00garbage"),
    ("methods/pca/state.json", b"{not json"),
    ("methods/pca/pca.npz", b"PK\x03\x04 truncated zip"),
])
def test_corrupt_file_names_itself_and_rebuild_fixes_it(built, photo_dir, target, damage):
    path = built / target
    path.write_bytes(damage)
    for suffix in ("-wal", "-shm"):
        (built / f"catalog.db{suffix}").unlink(missing_ok=True)
    line = one_error_line(query(built, photo_dir))
    assert str(path) in line and "imgsearch index PHOTOS_DIR --rebuild" in line

    fixed = run("index", photo_dir, "--index", built, "--methods", "pixels,pca", "--rebuild")
    assert fixed.exit_code == 0, fixed.output
    result = query(built, photo_dir)
    assert result.exit_code == 0, result.output
    assert "img01.png" in result.stdout
    assert run("check", "--index", built).exit_code == 0
    if target == "catalog.db":
        assert list(built.glob("catalog.db.corrupt-*"))  # kept aside, not deleted


def test_corrupt_config_names_itself(built, photo_dir):
    (built / "config.json").write_text("[1, 2")
    line = one_error_line(run("info", "--index", built))
    assert str(built / "config.json") in line


def test_corrupt_model_names_itself_and_the_fix(built, photo_dir):
    ae = built / "methods" / "ae"
    ae.mkdir()
    (ae / "model.pt").write_bytes(b"not a checkpoint")
    (ae / "index.faiss").write_bytes((built / "methods/pca/index.faiss").read_bytes())
    (ae / "state.json").write_text('{"gen": 1, "kind": "flat", "dim": 8, "count": 12}')
    line = one_error_line(query(built, photo_dir, "ae"))
    assert str(ae / "model.pt") in line and "imgsearch train" in line


def test_corrupt_training_checkpoint_names_itself(built):
    ckpt = built / "training" / "ae.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"\x80\x04 truncated pickle")
    line = one_error_line(run("train", "--index", built, "--max-minutes", 0.01))
    assert str(ckpt) in line and "--fresh" in line


class Exploit:
    """Unpickling this calls open(TARGET, "w"): arbitrary code, if a loader allowed it."""

    target = ""

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_checkpoints_never_unpickle_arbitrary_objects(tmp_path):
    evil = tmp_path / "evil.pt"
    Exploit.target = str(tmp_path / "exploit-ran")
    torch.save({"kind": "ae", "payload": Exploit()}, evil)
    with pytest.raises(IndexFileError, match="unreadable"):
        load_checkpoint(evil)
    assert not (tmp_path / "exploit-ran").exists()
    unsafe = torch.load(evil, weights_only=False)  # the same file, unpickled: it runs
    unsafe["payload"].close()
    assert (tmp_path / "exploit-ran").exists()


@pytest.mark.parametrize("args, says", [
    (["query", "{img}", "--index", "{idx}", "-k", "0"], "-k must be at least 1"),
    (["query", "{img}", "--index", "{idx}", "-k", "-3"], "-k must be at least 1"),
    (["query", "{img}", "--index", "{idx}", "--method", "sift"], "unknown method 'sift'"),
    (["query", "{photos}", "--index", "{idx}"], "query is not a file"),
    (["query", "{photos}/nope.jpg", "--index", "{idx}"], "query image not found"),
    (["query", "{img}", "--index", "{tmp}/no-such-index"], "no index at"),
    (["index", "{photos}/nope", "--index", "{idx}"], "folder not found"),
    (["index", "{img}", "--index", "{idx}"], "not a folder"),
    (["index", "{photos}", "--index", "{idx}", "--methods", "pixels,sift"],
     "unknown method 'sift'"),
    (["index", "{photos}", "--index", "{idx}", "--workers", "-1"], "--workers must be"),
    (["index", "{photos}", "--index", "{idx}", "--input-size", "20"], "--input-size must be"),
    (["index", "{photos}", "--index", "{idx}", "--train-epochs", "0"], "--train-epochs"),
    (["index", "{photos}", "--index", "{idx}", "--train-minutes", "-1"], "--train-minutes"),
    (["train", "--index", "{idx}", "--model", "pca"], "--model must be ae, vae, tcvae or aae"),
    (["train", "--index", "{idx}", "--epochs", "0"], "--epochs"),
    (["train", "--index", "{idx}", "--denoise", "blur"], "denoise must be one of"),
    (["reconstruct", "--index", "{idx}", "--out", "{tmp}/r.png", "-n", "0"], "-n must be"),
    (["sample", "--index", "{idx}", "--out", "{tmp}/s.png", "--steps", "1"], "--steps"),
])
def test_out_of_range_arguments_get_one_line(built, photo_dir, tmp_path, args, says):
    img = next(photo_dir.rglob("img01.png"))
    filled = [a.format(img=img, idx=built, photos=photo_dir, tmp=tmp_path) for a in args]
    line = one_error_line(runner.invoke(app, filled))
    assert says in line, line
