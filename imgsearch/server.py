"""The local web page and its JSON API: `imgsearch serve`.

``create_app(index)`` builds the FastAPI app (tests use it without a server). One static page
(imgsearch/web/) calls the API; no data is templated into HTML. Files are served by catalog id
only, never by a path taken from a request: a thumbnail is made from the file a catalog row
names, if that file is still the one indexed (same size and modification time). Methods are
loaded once and loaded again when a re-index beside the server swaps in a new build; until
then the last complete build answers.

    GET  /                      the page
    GET  /api/info              counts, methods (self-check, duplicate threshold), preferred
    GET  /api/images?page=&per= a page of the collection: id, name, size
    GET  /api/similar/{id}      ?method=NAME|all&k=K: neighbours of an indexed image
    POST /api/search            an uploaded image (multipart "file"): ?method=NAME|all&k=K
    GET  /api/duplicates        ?method=&threshold=: groups of near-duplicates
    GET  /api/map               ?method=&n=: 2-D positions of up to n images (t-SNE of codes)
    GET  /thumb/{id}            a JPEG thumbnail, made on first request and cached
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from PIL import Image

from . import methods
from .build import load_method
from .catalog import INDEXED, Catalog
from .errors import ImageLoadError, ImgSearchError
from .images import open_upright
from .search import Searcher, query_images
from .store import MethodState, replacing
from .workspace import Workspace

LOG = logging.getLogger(__name__)

WEB = Path(__file__).parent / "web"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}  # the only static files
THUMB = 256  # thumbnail side
MAX_UPLOAD = 32 * 2**20  # bytes
MAX_UPLOAD_PIXELS = 80_000_000  # an upload with more pixels is refused (decompression bomb)
MAX_K = 200


class Served:
    """What the app serves from: one index, its methods loaded once and reloaded after a
    re-index, a catalog connection per thread (sqlite connections stay in their thread)."""

    def __init__(self, root: Path):
        self.root = Workspace.open(root).root  # checks it is an index now, not on a request
        self.thumbs = self.root / "thumbs"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[tuple, Searcher, MethodState]] = {}
        self._derived: dict[tuple, object] = {}  # duplicates and maps, by method and build

    @property
    def ws(self) -> Workspace:
        """This thread's workspace: its catalog connection is used in this thread only."""
        if not hasattr(self._local, "ws"):
            self._local.ws = Workspace.open(self.root)
        return self._local.ws

    @property
    def catalog(self) -> Catalog:
        return self.ws.catalog

    def _stamp(self, method: str) -> tuple:
        """Changes whenever a new build of the method is swapped in."""
        path = self.ws.reader_dir(method) / MethodState.FILE
        try:
            st = path.stat()
            return (str(path), st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            return ()

    def searcher(self, method: str) -> tuple[Searcher, MethodState]:
        with self._lock:
            stamp = self._stamp(method)
            hit = self._loaded.get(method)
            if hit is None or hit[0] != stamp:
                loaded = load_method(self.ws, method)
                hit = (stamp, Searcher(None, loaded.embedder, loaded.index,
                                       self.ws.config.input_size), loaded.state)
                self._loaded[method] = hit
                LOG.info("loaded %s (%d codes)", method, loaded.index.ntotal)
            return hit[1], hit[2]

    def derived(self, key: tuple, make):
        """A result computed from a method's build, kept until the build changes."""
        with self._lock:
            stamp = self._stamp(key[0])
        full = (*key, stamp)
        if full not in self._derived:
            self._derived = {k: v for k, v in self._derived.items() if k[:-1] != key}
            self._derived[full] = make()
        return self._derived[full]

    def methods(self, name: str | None) -> list[str]:
        built = self.ws.built_methods()
        if name in (None, ""):
            return [self.ws.preferred_method()] if built else []
        if name == "all":
            return built
        try:
            methods.get(name)
        except ImgSearchError as e:
            raise HTTPException(400, str(e)) from None
        if name not in built:
            raise HTTPException(404, f"method {name!r} is not built in this index")
        return [name]


def _hits(served: Served, hits) -> list[dict]:
    rows = served.catalog.get_many(h.id for h in hits)
    return [{"rank": h.rank, "id": h.id, "distance": h.distance,
             "name": Path(rows[h.id].path).name if h.id in rows else None} for h in hits]


def _check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise HTTPException(400, f"k must be from 1 to {MAX_K}, got {k}")
    return k


def create_app(index: str | Path) -> FastAPI:
    """The app for one index (a name or a folder), its methods loaded on first use."""
    served = Served(Path(index) if isinstance(index, Path) else index)
    app = FastAPI(title="imgsearch", docs_url=None, redoc_url=None)
    app.state.served = served

    @app.exception_handler(ImgSearchError)
    async def domain_error(request, exc: ImgSearchError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str):
        if name not in ASSETS:  # a fixed list: nothing else under, or above, the folder
            raise HTTPException(404, "not found")
        return FileResponse(WEB / name, media_type=ASSETS[name],
                            headers={"Cache-Control": "no-cache"})

    @app.get("/api/info")
    def info():
        built = {m: served.ws.method_state(m).as_dict() for m in served.ws.built_methods()}
        preferred, because = served.ws.preference() if built else (None, None)
        return {"index": served.root.name, "counts": served.catalog.counts(),
                "input_size": served.ws.config.input_size, "methods": built,
                "preferred": preferred, "preferred_because": because,
                "summaries": {m: methods.get(m).summary for m in built}}

    @app.get("/api/images")
    def images(page: int = Query(1, ge=1), per: int = Query(60, ge=1, le=500)):
        ids = served.catalog.indexed_ids()
        chosen = ids[(page - 1) * per : page * per]
        rows = served.catalog.get_many(chosen)
        return {"total": len(ids), "page": page, "per": per,
                "images": [{"id": i, "name": Path(rows[i].path).name, "width": rows[i].width,
                            "height": rows[i].height} for i in chosen]}

    @app.get("/api/similar/{image_id}")
    def similar(image_id: int, method: str | None = None, k: int = 12):
        _check_k(k)
        row = served.catalog.get(image_id)
        if row is None or row.state != INDEXED:
            raise HTTPException(404, f"no indexed image with id {image_id}")
        out = {}
        for m in served.methods(method):
            searcher, _ = served.searcher(m)
            code = searcher.index.vectors([image_id])[0]  # its own code: nothing to encode
            hits = searcher.search_code(code, k + 1, served.catalog)
            out[m] = _hits(served, [h for h in hits if h.id != image_id][:k])
        return {"id": image_id, "name": Path(row.path).name, "results": out}

    @app.post("/api/search")
    async def search(file: Annotated[UploadFile, File()], method: str | None = None,
                     k: int = 12):
        _check_k(k)
        searchers = {m: served.searcher(m) for m in served.methods(method)}
        data = await file.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise HTTPException(413, f"upload over {MAX_UPLOAD // 2**20} MiB")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as im:
                    w, h = im.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise HTTPException(413, f"image of {w}x{h} pixels is too large to search "
                                         f"with (at most {MAX_UPLOAD_PIXELS // 10**6} "
                                         "megapixels)")
            images = query_images(io.BytesIO(data), served.ws.config.input_size, any(
                state.query_margin is not None for _, state in searchers.values()))
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise HTTPException(413, "image declares too many pixels (a decompression "
                                     "bomb?)") from None
        except (ImageLoadError, OSError, ValueError):
            raise HTTPException(415, "not an image this server can read") from None
        out = {}
        for m, (searcher, state) in searchers.items():  # regions where calibrated
            out[m] = _hits(served, searcher.search_query(images, k, state.query_margin,
                                                         served.catalog))
        return {"name": file.filename, "results": out}

    @app.get("/api/duplicates")
    def duplicates(method: str | None = None, threshold: float | None = Query(None, ge=0)):
        from . import duplicates as dup

        (m,) = served.methods(method) or [None]
        if m is None:
            raise HTTPException(404, "no method built")
        found = served.derived((m, "dups", threshold),
                               lambda: dup.in_index(served.ws, m, threshold))
        data = found.as_dict()
        for g in data["groups"]:  # names, not paths
            for member in [g["keeper"], *g["others"]]:
                member["name"] = Path(member.pop("path")).name
        return data

    @app.get("/api/map")
    def map_(method: str | None = None, n: int = Query(600, ge=2, le=5000)):
        from .viz import layout

        (m,) = served.methods(method) or [None]
        if m is None:
            raise HTTPException(404, "no method built")
        ids, xy = served.derived((m, "map", n), lambda: layout(served.ws, m, n))
        return {"method": m, "points": [{"id": int(i), "x": float(p[0]), "y": float(p[1])}
                                        for i, p in zip(ids, xy)]}

    @app.get("/thumb/{image_id}")
    def thumb(image_id: int):
        row = served.catalog.get(image_id)
        if row is None or row.state != INDEXED:
            raise HTTPException(404, f"no indexed image with id {image_id}")
        name = f"{image_id}-{(row.hash or 'x')[:12]}.jpg"
        cached = served.thumbs / name
        headers = {"Cache-Control": "public, max-age=86400", "ETag": f'"{name}"'}
        if not cached.is_file():
            try:
                st = os.stat(row.path)
            except OSError:
                raise HTTPException(404, "the file is gone; re-run `imgsearch index`") from None
            if (st.st_size, st.st_mtime) != (row.size, row.mtime):
                raise HTTPException(404, "the file changed since it was indexed; re-run "
                                         "`imgsearch index`")
            try:
                im = open_upright(row.path, THUMB)
            except Exception:  # noqa: BLE001 - any unreadable file: the pixels the index kept
                im = Image.fromarray(served.ws.cache.read([image_id])[0])
            with replacing(cached) as tmp:
                im.save(tmp, "JPEG", quality=85)
        return FileResponse(cached, media_type="image/jpeg", headers=headers)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    return app

