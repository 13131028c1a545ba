import pytest

from imgsearch.build import open_embedder
from imgsearch.catalog import REMOVED
from imgsearch.errors import ImageLoadError, ImgSearchError
from imgsearch.index import VectorIndex
from imgsearch.ingest import ingest
from imgsearch.pipeline import update_methods
from imgsearch.search import Searcher

from .conftest import find


@pytest.fixture
def searcher(photo_dir, ws):
    ingest(photo_dir, ws.catalog, ws.cache, workers=1)
    update_methods(ws, ["pixels"])
    index = VectorIndex.load(ws.index_path("pixels"))
    return Searcher(ws.catalog, open_embedder(ws, "pixels"), index, ws.config.input_size)


def test_each_image_finds_itself_first(photo_dir, searcher):
    for path in sorted(photo_dir.rglob("img*")):
        hits = searcher.query(path, k=3)
        assert hits[0].path == str(path) and hits[0].distance < 1e-3
        assert [h.rank for h in hits] == [1, 2, 3]
        assert hits[0].distance <= hits[1].distance <= hits[2].distance


def test_k_larger_than_collection(photo_dir, searcher):
    assert len(searcher.query(find(photo_dir, "img00.jpg"), k=100)) == 12


def test_rows_no_longer_indexed_are_never_returned(photo_dir, searcher, ws):
    target = ws.catalog.by_path(str(find(photo_dir, "img00.jpg")))
    ws.catalog.mark([target.id], REMOVED, gen=99)  # catalog ahead of the index
    hits = searcher.query(find(photo_dir, "img00.jpg"), k=12)
    assert target.id not in {h.id for h in hits} and len(hits) == 11


def test_query_errors(tmp_path, searcher, photo_dir):
    with pytest.raises(ImgSearchError, match="query image not found"):
        searcher.query(tmp_path / "none.jpg")
    with pytest.raises(ImgSearchError, match="query is not a file"):
        searcher.query(tmp_path)
    (tmp_path / "bad.jpg").write_text("no")
    with pytest.raises(ImageLoadError, match="cannot read query image"):
        searcher.query(tmp_path / "bad.jpg")
    with pytest.raises(ImgSearchError, match="k must be at least 1"):
        searcher.query(find(photo_dir, "img00.jpg"), k=0)


def test_a_photo_pasted_into_a_larger_picture_is_found_by_a_region(searcher, photo_dir,
                                                                   tmp_path):
    from PIL import Image

    from imgsearch.images import REGION_GRID, load_regions

    original = find(photo_dir, "img06.jpg")
    im = Image.open(original).convert("RGB")
    canvas = Image.new("RGB", (im.width * 2, im.height * 2), (20, 160, 40))
    canvas.paste(im, (0, 0))  # a quarter of the picture: the top-left region holds it
    pasted = tmp_path / "pasted.png"
    canvas.save(pasted)
    regions = load_regions(pasted, 32)[0]
    assert len(regions) == 1 + sum(steps * steps for _, steps in REGION_GRID)
    whole = searcher.search_image(regions[0], 3)
    found = searcher.search_regions(regions, 3, margin=0.0)
    assert found[0].path == str(original) and whole[0].path != str(original)
    # with an impossible margin the regions never win: the whole-image ranking
    never = searcher.search_regions(regions, 3, margin=1e9)
    assert [h.id for h in never] == [h.id for h in whole]
    # and a query that is itself the original keeps it first
    assert searcher.query(original, 1, margin=0.0)[0].path == str(original)


def test_region_margin_is_one_policy():
    from imgsearch.search import region_margin

    assert region_margin(0.3) == 0.3 and region_margin(None) is None  # where calibrated
    assert region_margin(0.3, False) is None and region_margin(None, False) is None
    assert region_margin(None, True) == 0.0 and region_margin(0.3, True) == 0.3
