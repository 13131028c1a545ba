"""The consistency check finds each kind of disagreement between catalog and index."""

from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from imgsearch.catalog import REMOVED
from imgsearch.cli import app
from imgsearch.index import VectorIndex
from imgsearch.ingest import ingest
from imgsearch.integrity import check
from imgsearch.pipeline import update_methods


@pytest.fixture
def synced(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    update_methods(ws, ["pixels"])
    return ws


def tamper(ws, fn):
    index = VectorIndex.load(ws.index_path("pixels"))
    fn(index)
    index.save(ws.index_path("pixels"))
    replace(ws.method_state("pixels"), count=index.ntotal).save(ws.method_dir("pixels"))


def test_a_synced_index_is_consistent(synced):
    result = check(synced)
    assert result.ok, result.all_problems()
    assert [m.method for m in result.methods] == ["pixels"]
    assert result.methods[0].codes == 12 and result.methods[0].pending == 0


def test_missing_code_is_found(synced):
    tamper(synced, lambda ix: ix.remove([3]))
    problems = check(synced).all_problems()
    assert problems == ["pixels: 1 indexed images have no code (first: [3])"]


def test_unknown_id_is_found(synced):
    tamper(synced, lambda ix: ix.add(np.zeros((1, ix.dim), np.float32), [999]))
    assert check(synced).all_problems() == ["pixels: 1 ids not in the catalog (first: [999])"]


def test_code_of_removed_image_is_found(synced):
    synced.catalog.mark([5], REMOVED, gen=synced.catalog.gen)  # as if synced, not removed
    assert check(synced).all_problems() == [
        "pixels: 1 failed or removed images still have codes (first: [5])"]


def test_pending_changes_are_not_problems(synced):
    synced.catalog.mark([5], REMOVED, gen=synced.catalog.next_gen())
    result = check(synced)
    assert result.ok and result.methods[0].pending == 1


def test_state_count_mismatch_is_found(synced):
    replace(synced.method_state("pixels"), count=11).save(synced.method_dir("pixels"))
    assert check(synced).all_problems() == ["pixels: state.json says 11 codes, index holds 12"]


def test_check_command_exit_codes(synced):
    runner = CliRunner()
    ok = runner.invoke(app, ["check", "--index", str(synced.root)])
    assert ok.exit_code == 0 and ok.stdout.strip().endswith("ok")
    tamper(synced, lambda ix: ix.remove([3]))
    bad = runner.invoke(app, ["check", "--index", str(synced.root), "--json"])
    assert bad.exit_code == 1
    assert '"ok": false' in bad.stdout
