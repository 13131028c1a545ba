"""The CLI through typer's CliRunner: exit codes, exact error lines, JSON, pictures."""

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsearch.cli import app

from .test_ingest import find

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def built(photo_dir, tmp_path):
    index = tmp_path / "idx"
    result = run("index", photo_dir, "--index", index, "--workers", 2)
    assert result.exit_code == 0, result.output
    return index


def test_every_command_has_help():
    for command in app.registered_commands:
        assert command.callback.__doc__, command.name
        result = run(command.name, "--help")
        assert result.exit_code == 0 and "Example:" in result.output


def test_index_reports_summary_on_stderr(photo_dir, tmp_path):
    (photo_dir / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    result = run("index", photo_dir, "--index", tmp_path / "idx")
    assert result.exit_code == 0
    assert "13 files, 12 new" in result.stderr and "1 failed" in result.stderr
    assert "broken.jpg: not a recognised image format" in result.stderr
    assert result.stdout == ""
    again = run("index", photo_dir, "--index", tmp_path / "idx")
    assert "0 new, 0 changed, 13 unchanged" in again.stderr  # a failed file is not retried until it changes


def test_query_json_is_one_object(built, photo_dir):
    query = find(photo_dir, "img04.tiff")
    result = run("query", query, "--index", built, "-k", 3, "--method", "pca", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["query"] == str(query) and data["method"] == "pca"
    assert [r["rank"] for r in data["results"]] == [1, 2, 3]
    assert set(data["results"][0]) == {"rank", "id", "path", "distance"}
    assert data["results"][0]["path"] == str(query)


def test_query_table_and_montage(built, photo_dir, tmp_path):
    out = tmp_path / "m.png"
    query = find(photo_dir, "img07.png")
    result = run("query", query, "--index", built, "-k", 4, "--montage", out)
    assert result.exit_code == 0
    assert "(pca)" in result.stdout and "img07.png" in result.stdout  # default: best built
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > im.height > 100


def test_info(built):
    result = run("info", "--index", built, "--json")
    data = json.loads(result.stdout)
    assert data["counts"] == {"indexed": 12, "failed": 0, "removed": 0}
    assert set(data["methods"]) == {"pixels", "pca"} and data["input_size"] == 64
    assert data["methods"]["pixels"] == {"gen": 1, "kind": "flat", "dim": 3072, "count": 12}
    assert "pixels" in run("info", "--index", built).stdout


@pytest.mark.parametrize("args, line", [
    (["query", "{missing}", "--index", "{index}"], "error: query image not found: {missing}"),
    (["query", "{text}", "--index", "{index}"],
     "error: cannot read query image {text}: not a recognised image format"),
    (["query", "{query}", "--index", "{tmp}/nope"],
     "error: no index at {tmp}/nope; build one with `imgsearch index PHOTOS_DIR`"),
    (["query", "{query}", "--index", "{index}", "--method", "vae"],
     "error: method 'vae' is not built in index {index} (built: pixels, pca)"),
    (["query", "{query}", "--index", "{index}", "--method", "foo"],
     "error: unknown method 'foo'; choose one of pixels, pca, ae, vae"),
    (["query", "{query}", "--index", "{index}", "-k", "0"], "error: -k must be at least 1, got 0"),
    (["index", "{tmp}/none", "--index", "{index}"], "error: folder not found: {tmp}/none"),
    (["index", "{query}", "--index", "{index}"], "error: not a folder: {query}"),
    (["index", "{tmp}", "--index", "{index}", "--methods", "pixels,nope"],
     "error: unknown method 'nope'; choose one of pixels, pca, ae, vae"),
    (["info", "--index", "{tmp}/nope"],
     "error: no index at {tmp}/nope; build one with `imgsearch index PHOTOS_DIR`"),
])
def test_errors_are_one_line_and_exit_1(built, photo_dir, tmp_path, args, line):
    (tmp_path / "notes.jpg").write_text("text, not an image")
    names = {"index": built, "tmp": tmp_path, "missing": tmp_path / "missing.jpg",
             "text": tmp_path / "notes.jpg", "query": find(photo_dir, "img00.jpg")}
    result = run(*[a.format(**names) for a in args])
    assert result.exit_code == 1
    assert result.stderr == line.format(**names) + "\n"
    assert "Traceback" not in result.output


def test_input_size_is_fixed_at_creation(photo_dir, tmp_path):
    assert run("index", photo_dir, "--index", tmp_path / "i", "--input-size", 32).exit_code == 0
    assert run("index", photo_dir, "--index", tmp_path / "i").exit_code == 0  # stored size used
    result = run("index", photo_dir, "--index", tmp_path / "i", "--input-size", 48)
    assert result.exit_code == 1 and "was built with" in result.stderr


def test_end_to_end_every_image_comes_back_first(built, photo_dir):
    for method in ("pixels", "pca"):
        for query in sorted(photo_dir.rglob("img*")):
            result = run("query", query, "--index", built, "--method", method, "--json", "-k", 1)
            assert json.loads(result.stdout)["results"][0]["path"] == str(query)
