"""Answer "what looks like this image?" from a catalog, an embedder and an index handed in."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .catalog import INDEXED, Catalog
from .errors import ImageLoadError, ImgSearchError
from .images import load_image, load_regions
from .index import VectorIndex
from .methods import Embedder

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    rank: int
    id: int
    path: str
    distance: float
    verified: bool | None = None  # a copy of the query, proven by geometry (None: not checked)
    shared: float | None = None  # the share of this picture the query explains
    inliers: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


VERIFY_TOP = 10  # the candidates a query verifies by geometry


def region_margin(calibrated: float | None, regions: bool | None = None) -> float | None:
    """The margin a query's regions must beat the whole query by (search_regions), or None
    to search the whole query alone. ``regions``: None (the default: regions where the
    method has a calibrated margin), False (never), True (always; at no margin where none was
    calibrated, so a region counts as the whole query)."""
    if regions is False:
        return None
    if calibrated is None and regions:
        return 0.0
    return calibrated


def verify_hits(query, hits: list[Hit], k: int, matched: dict | None = None,
                features_of=None, stored=None) -> list[Hit]:
    """``hits`` re-ranked by verification against ``query`` (matching.Features): the proven
    copies first, most of their picture shared first, then the others in their order; the
    first ``k``. A candidate whose file cannot be read stays unverified (None). ``matched``
    (catalog id -> matching.Match or None) keeps the matches for another method's hits of
    the same query; a candidate's features are those ``stored`` (copies.evidence.Stored:
    computed at index time) holds, else ``features_of(hit)``'s, else read from its file."""
    from concurrent.futures import ThreadPoolExecutor

    from .copies import matching
    from .copies.evidence import file_features

    matched = {} if matched is None else matched
    features_of = features_of or (lambda h: file_features(h.path))
    todo = {h.id for h in hits} - set(matched)
    known = {} if stored is None else stored.get(todo)
    if stored is not None and len(known) < len(todo):
        LOG.info("%d candidate(s) indexed without stored features: decoding their files",
                 len(todo) - len(known))

    def one(h: Hit) -> Hit:
        if h.id not in matched:
            f = known[h.id] if h.id in known else features_of(h)
            matched[h.id] = None if f is None else matching.match(query, f)
        m = matched[h.id]
        if m is None:
            return h
        return replace(h, verified=m.same, shared=round(m.shared_b, 4), inliers=m.inliers)

    with ThreadPoolExecutor(2) as pool:  # decoding and OpenCV release the GIL
        checked = list(pool.map(one, hits))
    ranked = sorted(checked, key=lambda h: (not h.verified, -(h.shared or 0) if h.verified
                                            else 0, h.rank))
    return [replace(h, rank=r) for r, h in enumerate(ranked[:k], 1)]


def features_soon(source):
    """A future of the query's features (copies.matching.load_features of ``source``),
    computed in a thread while the caller loads the method, decodes and searches: OpenCV,
    decoding and onnxruntime release the GIL, so on two cores verification's own work (its
    import of OpenCV, the query's decode at 512 pixels, ORB twice) hides behind the search."""
    from concurrent.futures import ThreadPoolExecutor

    def load():
        from .copies.matching import load_features

        return load_features(source)

    pool = ThreadPoolExecutor(1, thread_name_prefix="imgsearch-features")
    try:
        return pool.submit(load)
    finally:
        pool.shutdown(wait=False)


class Searcher:
    """Nearest neighbours of query images under one method."""

    def __init__(self, catalog: Catalog | None, embedder: Embedder, index: VectorIndex,
                 input_size: int):
        self.catalog = catalog
        self.embedder = embedder
        self.index = index
        self.input_size = input_size

    @staticmethod
    def _check(path: Path) -> None:
        if not path.exists():
            raise ImgSearchError(f"query image not found: {path}")
        if not path.is_file():
            raise ImgSearchError(f"query is not a file: {path}")

    def load_query(self, path: Path | str, regions: bool = False) -> np.ndarray:
        """The query image as the index sees it, (1, S, S, 3) uint8; with ``regions``,
        followed by its regions (query_images)."""
        path = Path(path)
        self._check(path)
        try:
            return query_images(path, self.input_size, regions)
        except ImageLoadError as e:
            raise ImageLoadError(f"cannot read query image {path}: {e}") from e

    def search_query(self, images: np.ndarray, k: int, margin: float | None = None,
                     catalog: Catalog | None = None, turns: bool = False) -> list[Hit]:
        """Neighbours of a decoded query (query_images), best first: by the whole image, the
        first; with ``margin``, by its regions too; with ``turns``, by its quarter turns too,
        at no margin (candidates for verification: a photo turned on its side). One search
        of them all (search_regions)."""
        whole = images[:1]
        extra = [margin] * (len(images) - 1) if margin is not None else []
        if turns:
            whole = np.concatenate([whole, *(np.rot90(images[:1], r, axes=(1, 2))
                                             for r in (1, 2, 3))])
        parts = np.concatenate([whole, images[1:]]) if extra else whole
        if len(parts) == 1:
            return self.search_image(images[0], k, catalog)
        return self.search_regions(parts, k, [0.0] * len(whole) + extra, catalog)

    def search_image(self, image: np.ndarray, k: int, catalog: Catalog | None = None
                     ) -> list[Hit]:
        """Neighbours of one (S, S, 3) uint8 image, best first (``catalog``: another
        connection to the same catalog, for a caller in another thread)."""
        return self.search_code(self.embedder.encode(image[None])[0], k, catalog)

    def search_code(self, code: np.ndarray, k: int, catalog: Catalog | None = None
                    ) -> list[Hit]:
        """Neighbours of one code (an indexed image's own, say), best first."""
        _check_k(k)
        dist, ids = self.index.search(code[None], k)
        pairs = [(int(i), float(d)) for i, d in zip(ids[0], dist[0]) if i >= 0]
        return self._hits(pairs, k, catalog)

    def search_regions(self, regions: np.ndarray, k: int, margin: float | list[float],
                       catalog: Catalog | None = None) -> list[Hit]:
        """Neighbours of a query given as (1 + R, S, S, 3) regions (images.load_regions: the
        whole query first): each database image's distance is the smallest of its distance
        to the whole query and, plus ``margin``, to each region (or plus ``margin[r]`` to
        region r). A region must beat the whole query by the margin to count, so a copy
        pasted into a larger picture is found by the crop that holds it while ordinary
        queries keep their whole-image ranking."""
        _check_k(k)
        margins = ([0.0] + [margin] * (len(regions) - 1) if np.isscalar(margin)
                   else list(margin))
        codes = self.embedder.encode(regions)
        dist, ids = self.index.search(codes, 3 * k)
        best: dict[int, float] = {}
        for extra, d_row, i_row in zip(margins, dist, ids):
            for i, d in zip(i_row.tolist(), d_row.tolist()):
                if i >= 0 and d + extra < best.get(i, np.inf):
                    best[i] = d + extra
        return self._hits(sorted(best.items(), key=lambda kv: kv[1]), k, catalog)

    def _hits(self, ranked: list[tuple[int, float]], k: int, catalog: Catalog | None
              ) -> list[Hit]:
        """The first ``k`` of (id, distance) pairs, best first, whose images are still
        indexed, as hits."""
        rows = (catalog or self.catalog).get_many(i for i, _ in ranked)
        live = [(i, d) for i, d in ranked if i in rows and rows[i].state == INDEXED][:k]
        return [Hit(rank, i, rows[i].path, d) for rank, (i, d) in enumerate(live, 1)]

    def query(self, path: Path | str, k: int = 10, margin: float | None = None) -> list[Hit]:
        """Neighbours of the image file at ``path``, best first; with ``margin``, also by the
        query's regions (search_regions)."""
        return self.search_query(self.load_query(path, margin is not None), k, margin)


def query_images(source, size: int, regions: bool) -> np.ndarray:
    """A query image (a path or a file object) decoded as the index decodes its images:
    (1, S, S, 3) uint8, or with ``regions`` the whole image followed by its regions
    (images.load_regions), from one decode."""
    if regions:
        return load_regions(source, size)[0]
    return load_image(source, size)[0][None]


def _check_k(k: int) -> None:
    if k <= 0:
        raise ImgSearchError(f"k must be at least 1, got {k}")
