"""Method folders are swapped in whole, and recover() repairs what a killed swap left."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgsearch.build import load_method
from imgsearch.cli import app
from imgsearch.ingest import ingest
from imgsearch.integrity import check
from imgsearch.pipeline import update_methods
from imgsearch.search import Searcher


@pytest.fixture
def synced(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    update_methods(ws, ["pca"])
    return ws


def methods(ws):
    return sorted(p.name for p in (ws.root / "methods").iterdir() if p.name != ".commit")


def test_update_swaps_a_new_folder_and_links_the_model(synced, photo_dir):
    live = synced.method_dir("pca")
    pca_inode = (live / "pca.npz").stat().st_ino
    next(photo_dir.rglob("img01.png")).unlink()
    ingest(photo_dir, synced.catalog, synced.cache, workers=1)
    update_methods(synced, ["pca"])
    assert (live / "pca.npz").stat().st_ino == pca_inode  # hard-linked, not rewritten
    assert synced.method_state("pca").count == 11
    assert methods(synced) == ["pca"]  # no staging or old folder left behind


def _cut_between_renames(ws, staged_complete: bool):
    """What a writer killed between the two renames of a swap leaves: no live folder, the
    previous build moved aside, and a staged build (complete or not)."""
    live = ws.method_dir("pca")
    staged = ws.staging_dir("pca", keep_embedder=True)
    if staged_complete:
        for name in ("index.faiss", "state.json"):
            os.link(live / name, staged / name)
    os.rename(live, live.with_name(".pca.old"))
    return staged


def test_recover_finishes_a_swap_cut_between_the_renames(synced):
    staged = _cut_between_renames(synced, staged_complete=True)
    assert not synced.method_dir("pca").exists() and synced.reader_dir("pca") == staged
    done = synced.recover()
    assert "pca: finished swapping in the new build" in done
    assert methods(synced) == ["pca"] and check(synced).ok


def test_recover_restores_the_old_folder_when_staging_is_unfinished(synced):
    staged = _cut_between_renames(synced, staged_complete=False)  # no index or state yet
    assert "pca: restored the previous build" in synced.recover()
    assert methods(synced) == ["pca"] and synced.method_state("pca").count == 12
    assert not staged.exists()


def test_recover_removes_leftover_temporary_files(synced):
    tmp = synced.method_dir("pca") / ".index.faiss.12345.tmp"
    tmp.write_bytes(b"half a file")
    assert "removed temporary file .index.faiss.12345.tmp" in synced.recover()
    assert not tmp.exists()


@pytest.mark.parametrize("staged_complete", [True, False])
def test_readers_use_the_last_complete_build_after_a_cut_swap(synced, photo_dir,
                                                              staged_complete):
    staged = _cut_between_renames(synced, staged_complete)
    old = synced.method_dir("pca").with_name(".pca.old")
    assert synced.reader_dir("pca") == (staged if staged_complete else old)
    loaded = load_method(synced, "pca")
    assert loaded.state.count == loaded.index.ntotal == 12
    searcher = Searcher(synced.catalog, loaded.embedder, loaded.index, 16)
    query = next(photo_dir.rglob("img01.png"))
    assert Path(searcher.query(query, 1)[0].path) == query  # answers, and rightly
    assert synced.built_methods() == ["pca"] and check(synced).ok


def test_a_query_answers_through_the_cli_after_a_cut_swap(synced, photo_dir):
    _cut_between_renames(synced, staged_complete=True)
    query = next(photo_dir.rglob("img01.png"))
    result = CliRunner().invoke(app, ["query", str(query), "--index", str(synced.root),
                                      "--method", "pca", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["path"] == str(query)


def test_a_workspace_closes_as_a_context_and_writes_under_its_lock(tmp_path):
    import sqlite3

    from imgsearch.errors import IndexLocked
    from imgsearch.store import WriteLock
    from imgsearch.workspace import Workspace

    with Workspace.create(tmp_path / "idx") as ws:
        ws.catalog.counts()  # opened, to be closed on leaving
        with ws.writing("first") as recovered:
            assert recovered == []  # nothing left by a killed writer
            with pytest.raises(IndexLocked, match="first"), WriteLock(ws.root, "second", 0):
                pass
    with pytest.raises(sqlite3.ProgrammingError):  # closed on leaving the block
        ws.catalog.db.execute("select 1")
