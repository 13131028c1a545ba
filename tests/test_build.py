import numpy as np
from PIL import Image

from imgsearch import pipeline
from imgsearch.build import encode_ids, open_embedder, sync_method
from imgsearch.catalog import INDEXED
from imgsearch.config import IndexConfig
from imgsearch.index import VectorIndex
from imgsearch.ingest import ingest
from imgsearch.methods.baselines import PCAEmbedder
from imgsearch.pipeline import update_methods
from imgsearch.workspace import Workspace

from .conftest import find, pattern


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


# -- a first index built while the photos decode (build.StreamedBuild) --------------------
def many_photos(root, n):
    root.mkdir()
    for i in range(n):
        Image.fromarray(pattern(i, 48)).save(root / f"p{i:03d}.png")
    return root


def test_a_streamed_first_index_equals_one_built_after_decoding(tmp_path, monkeypatch):
    """Fitted on a sample smaller than the folder, into an inverted file: the same PCA, the
    same codes under the same ids, the same structure and the same self-check as the build
    that runs once decoding is done."""
    monkeypatch.setattr(PCAEmbedder, "fit_sample", 25)
    photos = many_photos(tmp_path / "photos", 40)
    cfg = IndexConfig(input_size=16, pixel_size=8, code_dim=8, exact_threshold=30)
    after = Workspace.create(tmp_path / "after", cfg)
    ingest(photos, after.catalog, after.cache, workers=1)
    update_methods(after, ["pixels", "pca"])

    streamed = Workspace.create(tmp_path / "streamed", cfg)
    monkeypatch.setattr(pipeline, "build_method", None)  # the streams alone build them
    report = pipeline.update_index(streamed, photos, ["pixels", "pca"], workers=1)
    assert [(b.method, b.action, b.total) for b in report.built] == [
        ("pixels", "fit", 40), ("pca", "fit", 40)]
    for m in ("pixels", "pca"):
        a, s = index_of(after, m), index_of(streamed, m)
        assert a.index_type == s.index_type == "ivf-flat"
        np.testing.assert_array_equal(np.sort(a.ids()), np.sort(s.ids()))
        ids = after.catalog.indexed_ids()
        np.testing.assert_allclose(s.vectors(ids), a.vectors(ids), atol=1e-5)
        assert streamed.method_state(m).selfcheck == after.method_state(m).selfcheck
        assert streamed.method_state(m).gen == streamed.catalog.gen
    with np.load(after.method_dir("pca") / "pca.npz") as x, \
            np.load(streamed.method_dir("pca") / "pca.npz") as y:
        np.testing.assert_allclose(x["components"], y["components"], atol=1e-5)
    after.close()
    streamed.close()


class Heard:
    """A sink that asks for two files first and records what it hears, in order."""

    def __init__(self):
        self.heard = []

    def first(self, ids):
        self.ids = ids
        return [ids[-1], ids[-3]]

    def indexed(self, ids, decoding=True):
        self.heard += [("indexed", i) for i in ids]

    def failed(self, ids, decoding=True):
        self.heard += [("failed", i) for i in ids]


def test_ingest_reads_what_the_sink_asks_first_and_tells_it_every_row(photo_dir, ws):
    (photo_dir / "broken.jpg").write_bytes(b"not a jpeg")
    sink = Heard()
    ingest(photo_dir, ws.catalog, ws.cache, workers=1, sink=sink)  # one reader: in order
    assert sink.ids == sorted(sink.ids) and len(sink.ids) == 13
    order = [i for k, i in sink.heard if k == "indexed"]
    broken = ws.catalog.by_path(str(photo_dir / "broken.jpg")).id
    assert broken not in (sink.ids[-1], sink.ids[-3])
    # the two asked for first, in the order asked, then the rest; each row heard once
    assert order[:2] == [sink.ids[-1], sink.ids[-3]]
    assert sorted([*order, broken]) == sink.ids
    assert [i for k, i in sink.heard if k == "failed"] == [broken]
    assert sorted(i for k, i in sink.heard if k == "indexed") == ws.catalog.indexed_ids()


def test_a_streamed_index_holds_exactly_what_decoded(tmp_path, monkeypatch):
    """A file that fails inside the fit's sample: the stream fits on the rest and its index
    holds every indexed row, no more."""
    photos = many_photos(tmp_path / "photos", 30)
    (photos / "p007.png").write_bytes(b"broken")
    ws = Workspace.create(tmp_path / "ix", IndexConfig(input_size=16, pixel_size=8,
                                                       code_dim=8))
    monkeypatch.setattr(pipeline, "build_method", None)
    pipeline.update_index(ws, photos, ["pixels", "pca"], workers=1)
    assert ws.catalog.counts()[INDEXED] == 29
    for m in ("pixels", "pca"):
        np.testing.assert_array_equal(np.sort(index_of(ws, m).ids()), ws.catalog.indexed_ids())
    ws.close()


def test_several_streams_read_the_smallest_sample_first():
    class Asks:
        def __init__(self, wanted):
            self.wanted = wanted

        def first(self, ids):
            return self.wanted

    from imgsearch.build import Streams

    streams = Streams({"pixels": Asks([1, 3, 5, 7]), "pca": Asks([7, 2])})
    assert streams.first(list(range(10))) == [7, 2, 1, 3, 5]
