import numpy as np

from imgsearch.build import encode_ids, open_embedder, sync_method
from imgsearch.catalog import INDEXED
from imgsearch.index import VectorIndex
from imgsearch.ingest import ingest

from .test_ingest import find


def index_of(ws, method):
    return VectorIndex.load(ws.index_path(method))


def test_first_sync_fits_and_indexes_everything(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.pixels, workers=1)
    for method in ("pixels", "pca"):
        report = sync_method(ws, method)
        assert report.total == report.encoded == 12 and report.kind == "flat"
        np.testing.assert_array_equal(index_of(ws, method).ids(), ws.catalog.indexed_ids())
        assert ws.method_state(method)["gen"] == ws.catalog.gen
    assert ws.built_methods() == ["pixels", "pca"]
    assert ws.method_state("pca")["dim"] == 8


def test_incremental_sync_encodes_only_changed_rows(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.pixels, workers=1)
    sync_method(ws, "pca")
    pca_before = (ws.method_dir("pca") / "pca.npz").read_bytes()

    find(photo_dir, "img03.bmp").unlink()
    find(photo_dir, "img05.gif").rename(photo_dir / "moved.gif")
    ingest(photo_dir, ws.catalog, ws.pixels, workers=1)
    report = sync_method(ws, "pca")
    assert not report.fitted and report.encoded == 1 and report.removed == 2
    assert (ws.method_dir("pca") / "pca.npz").read_bytes() == pca_before  # not refitted
    index = index_of(ws, "pca")
    np.testing.assert_array_equal(index.ids(), ws.catalog.indexed_ids())

    # codes equal a fresh encode of the cached pixels
    ids = ws.catalog.indexed_ids()
    want = encode_ids(ws, open_embedder(ws, "pca"), ids)
    np.testing.assert_allclose(index.vectors(ids), want, atol=1e-5)

    again = sync_method(ws, "pca")  # nothing changed since: nothing to do
    assert again.encoded == 0 and again.removed == 0 and again.total == 11


def test_rebuild_refits(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.pixels, workers=1)
    sync_method(ws, "pca")
    report = sync_method(ws, "pca", rebuild=True)
    assert report.fitted and report.encoded == 12


def test_sync_is_idempotent_when_state_was_not_written(photo_dir, ws):
    # A run killed after writing index.faiss but before state.json repeats the same upserts.
    ingest(photo_dir, ws.catalog, ws.pixels, workers=1)
    sync_method(ws, "pixels")
    state = ws.method_state("pixels")
    find(photo_dir, "img01.png").unlink()
    ingest(photo_dir, ws.catalog, ws.pixels, workers=1)
    sync_method(ws, "pixels")
    ws.save_method_state("pixels", state)  # roll the state back, keep the new index
    sync_method(ws, "pixels")
    assert index_of(ws, "pixels").ntotal == len(ws.catalog.rows(INDEXED)) == 11
