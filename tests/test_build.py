import numpy as np

from imgsearch.build import encode_ids, open_embedder, sync_method
from imgsearch.catalog import INDEXED
from imgsearch.index import VectorIndex
from imgsearch.ingest import ingest
from imgsearch.pipeline import update_methods

from .conftest import find


def build(ws, method, rebuild=False):
    """Plan and build one method, as `imgsearch index` does after ingesting."""
    (report,) = update_methods(ws, [method], rebuild=rebuild)
    return report


def index_of(ws, method):
    return VectorIndex.load(ws.index_path(method))


def test_first_sync_fits_and_indexes_everything(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    for method in ("pixels", "pca"):
        report = build(ws, method)
        assert report.action == "fit"
        assert report.total == report.encoded == 12 and report.index_type == "flat"
        np.testing.assert_array_equal(index_of(ws, method).ids(), ws.catalog.indexed_ids())
        assert ws.method_state(method).gen == ws.catalog.gen
    assert ws.built_methods() == ["pixels", "pca"]
    assert ws.method_state("pca").dim == 8


def test_incremental_sync_encodes_only_changed_rows(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    build(ws, "pca")
    pca_before = (ws.method_dir("pca") / "pca.npz").read_bytes()

    find(photo_dir, "img03.bmp").unlink()
    find(photo_dir, "img05.gif").rename(photo_dir / "moved.gif")
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    report = build(ws, "pca")
    assert report.action == "sync" and report.encoded == 1 and report.removed == 2
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
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    build(ws, "pca")
    report = build(ws, "pca", rebuild=True)
    assert report.action == "fit" and report.encoded == 12


def test_sync_is_idempotent_when_state_was_not_written(photo_dir, ws):
    # A run killed after writing index.faiss but before state.json repeats the same upserts.
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    build(ws, "pixels")
    state = ws.method_state("pixels")
    find(photo_dir, "img01.png").unlink()
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    sync_method(ws, "pixels")
    state.save(ws.method_dir("pixels"))  # roll the state back, keep the new index
    sync_method(ws, "pixels")
    assert index_of(ws, "pixels").ntotal == len(ws.catalog.rows(INDEXED)) == 11


def test_exact_sets_decoded_and_reencoded_after_edits(photo_dir, ws, monkeypatch):
    """Add, modify (content and mtime), touch, delete, rename and copy: only new content is
    decoded, only changed rows are encoded, and deleted or renamed-away paths leave the index."""
    import os
    import shutil

    from PIL import Image

    import imgsearch.reading as reading

    from .conftest import pattern

    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    update_methods(ws, ["pixels", "pca"])
    before = {r.path: r.id for r in ws.catalog.rows()}

    modified = find(photo_dir, "img01.png")
    Image.fromarray(pattern(77)).save(modified)
    touched = find(photo_dir, "img02.webp")
    st = touched.stat()
    os.utime(touched, (st.st_atime, st.st_mtime + 10))
    deleted = find(photo_dir, "img00.jpg")
    deleted.unlink()
    renamed_from = find(photo_dir, "img04.tiff")
    shutil.move(renamed_from, photo_dir / "renamed.tiff")
    shutil.copy(find(photo_dir, "img05.gif"), photo_dir / "copy.gif")
    Image.fromarray(pattern(78)).save(photo_dir / "new.png")

    decoded: list[str] = []
    real_load = reading.load_image

    def spy_load(source, size, *limits):
        decoded.append(source)
        return real_load(source, size, *limits)

    monkeypatch.setattr(reading, "load_image", spy_load)  # where workers decode
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)  # in-process: the spy sees every decode
    assert len(decoded) == 2  # the modified and the new file; nothing else was decoded

    read: list[int] = []
    real_read = ws.cache.read
    monkeypatch.setattr(ws.cache, "read", lambda ids: (read.extend(ids), real_read(ids))[1])
    new_ids = {p: ws.catalog.by_path(str(p)).id
               for p in (photo_dir / "renamed.tiff", photo_dir / "copy.gif",
                         photo_dir / "new.png")}
    for method in ("pixels", "pca"):
        read.clear()
        report = sync_method(ws, method)
        assert sorted(read) == sorted([before[str(modified)], *new_ids.values()]), method
        assert report.removed == 2  # the deleted file and the renamed-away path
        held = set(index_of(ws, method).ids().tolist())
        assert before[str(deleted)] not in held and before[str(renamed_from)] not in held
        assert held == set(ws.catalog.indexed_ids())
    # the renamed file's pixels (and so its codes) are those of the original, never re-decoded
    np.testing.assert_array_equal(ws.cache.read([new_ids[photo_dir / "renamed.tiff"]]),
                                  ws.cache.read([before[str(renamed_from)]]))
