"""The evaluation scripts run end to end in quick mode (generated data when the real is absent)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # each test runs a script end to end


def test_evaluate_fashion_mnist_quick(tmp_path):
    out = tmp_path / "res"
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate_fashion_mnist.py"), "--quick",
           "--data", str(tmp_path / "no-data-here"), "--methods", "pixels,pca,ae,vae",
           "--minutes", "0.05", "--epochs", "1", "--widths", "4", "8", "--dim", "8",
           "--tsne", "60", "--work", str(tmp_path / "work"), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.with_suffix(".json").read_text())
    assert [r["method"] for r in data["rows"]] == ["pixels", "pca", "ae", "vae"]
    assert data["meta"]["database"] == 600 and data["meta"]["queries"] == 100
    for row in data["rows"]:
        for metric in ("P@1", "P@10", "P@100", "mAP@100", "mAP", "10-NN accuracy"):
            assert 0.0 <= row[metric] <= 1.0
        assert len(row["precision_curve"]) == 100
    pixels = data["rows"][0]
    assert pixels["P@10"] > 0.5  # the generated classes are easy for raw pixels
    assert "| pixels | 784 |" in out.with_suffix(".md").read_text()
    assert (tmp_path / "res-precision.png").stat().st_size > 1000
    assert (tmp_path / "res-tsne.png").stat().st_size > 1000  # the 2-D maps, side by side


def test_evaluate_copy_detection_quick(tmp_path):
    out = tmp_path / "cd"
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate_copy_detection.py"), "--quick",
           "--photos", str(tmp_path / "no-photos-here"), "--methods", "pixels,pca,ae,vae,phash",
           "--steps", "5", "--widths", "4", "8", "--dim", "8", "--size", "32",
           "--work", str(tmp_path / "work"), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.with_suffix(".json").read_text())
    assert [r["method"] for r in data["rows"]] == ["pixels", "pca", "ae", "vae", "phash"]
    meta = data["meta"]
    assert meta["source"] == "generated stand-ins"
    assert meta["queries"] == meta["photos"] * len(meta["edits"]) == 24 * 12
    for row in data["rows"]:
        assert set(row["per_edit"]) == set(meta["edits"])
        for scores in [row["overall"], *row["per_edit"].values()]:
            assert 0.0 <= scores["recall@1"] <= scores["recall@10"] <= 1.0
            assert scores["recall@1"] <= scores["mAP"] <= 1.0
    pixels = data["rows"][0]
    # the pixel-preserving edits are trivial for raw pixels on distinct pictures
    for edit in ("downscale 50%", "JPEG q30", "brightness +30%"):
        assert pixels["per_edit"][edit]["recall@1"] == 1.0, edit
    assert pixels["per_edit"]["flip"]["recall@1"] < 0.5  # and a mirror image is not
    assert "| phash | 64 |" in out.with_suffix(".md").read_text()
    for picture in ("cd-recall.png", "cd-edits.png"):
        assert (tmp_path / picture).stat().st_size > 1000
    table = out.with_suffix(".md").read_text()
    assert all(f"{m} per edit" in table for m in ("recall@1", "recall@10", "mAP"))

    # --render redraws the tables from the JSON alone
    out.with_suffix(".md").unlink()
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate_copy_detection.py"), "--render",
           str(out.with_suffix(".json")), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert out.with_suffix(".md").read_text() == table
