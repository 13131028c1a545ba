"""Method folders are swapped in whole, and recover() repairs what a killed swap left."""

import os

import pytest

from imgsearch.build import sync_method
from imgsearch.ingest import ingest
from imgsearch.verify import check


@pytest.fixture
def synced(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.pixels, workers=1)
    sync_method(ws, "pca")
    return ws


def methods(ws):
    return sorted(p.name for p in (ws.root / "methods").iterdir() if p.name != ".commit")


def test_update_swaps_a_new_folder_and_links_the_model(synced, photo_dir):
    live = synced.method_dir("pca")
    pca_inode = (live / "pca.npz").stat().st_ino
    next(photo_dir.rglob("img01.png")).unlink()
    ingest(photo_dir, synced.catalog, synced.pixels, workers=1)
    sync_method(synced, "pca")
    assert (live / "pca.npz").stat().st_ino == pca_inode  # hard-linked, not rewritten
    assert synced.method_state("pca")["count"] == 11
    assert methods(synced) == ["pca"]  # no staging or old folder left behind


def test_recover_finishes_a_swap_cut_between_the_renames(synced):
    live = synced.method_dir("pca")
    staged = synced.staging_dir("pca", keep_embedder=True)
    for name in ("index.faiss", "state.json"):
        os.link(live / name, staged / name)
    os.rename(live, live.with_name(".pca.old"))  # killed after the first rename
    assert synced.method_state("pca") is None
    done = synced.recover()
    assert "pca: finished swapping in the new build" in done
    assert methods(synced) == ["pca"] and check(synced).ok


def test_recover_restores_the_old_folder_when_staging_is_unfinished(synced):
    live = synced.method_dir("pca")
    staged = synced.staging_dir("pca", keep_embedder=True)  # no index or state yet
    os.rename(live, live.with_name(".pca.old"))
    synced.recover()
    assert methods(synced) == ["pca"] and synced.method_state("pca")["count"] == 12
    assert not staged.exists()


def test_recover_removes_leftover_temporary_files(synced):
    tmp = synced.method_dir("pca") / ".index.faiss.12345.tmp"
    tmp.write_bytes(b"half a file")
    assert "removed temporary file .index.faiss.12345.tmp" in synced.recover()
    assert not tmp.exists()
