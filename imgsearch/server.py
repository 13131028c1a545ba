"""The local web page and its JSON API: `imgsearch serve`.

``create_app(index)`` builds the FastAPI app (tests use it without a server). One static page
(imgsearch/web/) calls the API; no data is templated into HTML. Files are served by catalog id
only, never by a path taken from a request: a thumbnail is made from the file a catalog row
names, if that file is still the one indexed (same size and modification time). Methods are
loaded once and loaded again when a re-index beside the server swaps in a new build; until
then the last complete build answers.

The review of duplicates moves files (never deletes them) with copies.moves.plan_moves and
copies.moves.move, the same rules and log as `imgsearch duplicates --move-to`, and does not
re-index: the page tells the user to run `imgsearch index`. Until then a moved photo is left
out of the groups because its file is gone.

    GET  /                      the page
    GET  /api/info              counts, methods (self-check, duplicate threshold), preferred
    GET  /api/images?page=&per= a page of the collection: id, name, size
    GET  /api/similar/{id}      ?method=NAME|all&k=K&verify=: neighbours of an indexed image,
                                its proven copies first (search.verify_hits; verify=false: not)
    POST /api/search            an uploaded image (multipart "file"): ?method=NAME|all&k=K&verify=
    GET  /api/duplicates        ?method=&threshold=&offset=&limit=&order=&keeper=: a page of
                                the groups of near-duplicates (less the groups the user
                                dismissed and the photos moved away) in an order (space freed,
                                size, confidence), with their total; or, while an `imgsearch
                                index` finds them, its progress ("finding")
    POST /api/duplicates/move   {"ids", "to", "method", "threshold"}: move non-keepers of a
                                group into folder "to"; answers the move log, for undo
    POST /api/duplicates/move-all {"groups", "to", "method", "threshold"}: the non-keepers of
                                every group, under one move log
    POST /api/duplicates/undo   {"log"}: put back the files a move log lists
    POST /api/duplicates/dismiss {"ids"}: mark a group's photos as not duplicates (copies/review.py)
    GET  /api/map               ?method=&n=: 2-D positions of up to n images (t-SNE of codes)
    GET  /thumb/{id}            a JPEG thumbnail, made on first request and cached
"""

from __future__ import annotations

import dataclasses
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
from pydantic import BaseModel, Field

from . import methods
from .build import load_method
from .catalog import INDEXED, Catalog
from .copies import review
from .copies.evidence import Stored, file_features
from .copies.groups import ORDERS, freed, ordered
from .copies.matching import load_features
from .errors import ImageLoadError, ImgSearchError
from .images import DECODE_VERSION, is_raw, named, open_upright, raw_size
from .search import VERIFY_TOP, Searcher, query_images, region_margin, verify_hits
from .store import MethodState, replacing
from .workspace import Workspace

LOG = logging.getLogger(__name__)

WEB = Path(__file__).parent / "web"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}  # the only static files
THUMB = 256  # thumbnail side
MAX_UPLOAD = 32 * 2**20  # bytes
MAX_UPLOAD_PIXELS = 80_000_000  # an upload with more pixels is refused (decompression bomb)
MAX_K = 200
PAGE_GROUPS = 50  # groups of duplicates a page shows


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
        self.moving = threading.Lock()  # one move at a time: plans see the last one's files

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
    """The hits as the API gives them: every field of Hit.as_dict (verification included)
    but the path, and the file's name."""
    rows = served.catalog.get_many(h.id for h in hits)
    out = []
    for h in hits:
        d = {k: v for k, v in h.as_dict().items() if k != "path"}
        d["name"] = Path(rows[h.id].path).name if h.id in rows else None
        out.append(d)
    return out


def _visible(groups: list, dismissed: set[tuple[int, int]]) -> list:
    """The groups less the photos whose files are gone (moved away since the index was
    built), and less the groups of which every pair was dismissed (copies/review.py)."""
    out = []
    for g in groups:
        others = tuple(m for m in g.others if os.path.exists(m.path))
        ids = sorted(m.id for m in (g.keeper, *others))
        pairs = {(a, b) for n, a in enumerate(ids) for b in ids[n + 1:]}
        if others and os.path.exists(g.keeper.path) and not pairs <= dismissed:
            out.append(g if others == g.others else dataclasses.replace(g, others=others))
    return out


class MoveRequest(BaseModel):
    ids: list[int]  # non-keepers of one group of the current result
    to: str = ""  # the folder to move them into: a full path outside the indexed folder
    method: str | None = None  # whose groups (default: the preferred method)
    threshold: float | None = Field(None, ge=0)


class MoveAllRequest(BaseModel):
    groups: int  # how many groups the user was shown: moved only if that is still so
    to: str = ""
    method: str | None = None
    threshold: float | None = Field(None, ge=0)


def _destination(to: str) -> Path:
    """The folder a move goes into, as the user typed it; HTTP 400 for one it cannot be."""
    if not to.strip():
        raise HTTPException(400, "choose a folder to move the others into: a full path "
                                 "outside the indexed folder")
    dest = Path(to.strip()).expanduser()
    if not dest.is_absolute():
        raise HTTPException(400, f"give the folder as a full path (like /home/me/"
                                 f"duplicates), not {to.strip()!r}")
    if dest.exists() and not dest.is_dir():
        raise HTTPException(400, f"{dest} is a file; choose a folder")
    return dest


def _moved(moves: list[tuple[str, str]], dest: Path) -> tuple[int, Path]:
    """(files moved, their log): ``moves`` done under a new move log in ``dest``
    (copies.moves); HTTP 500 where moving stopped, naming the log that puts back the rest."""
    from .copies.moves import move, new_log

    log = new_log(dest)
    try:
        return move(moves, log), log
    except OSError as e:
        raise HTTPException(500, f"moving stopped: {e}; the files moved so far go back "
                                 f"with `imgsearch duplicates --undo {log}`") from None


class UndoRequest(BaseModel):
    log: str  # a move log, as a move answered it


class DismissRequest(BaseModel):
    ids: list[int]  # every photo of a group


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
        out = {"index": served.root.name, **served.ws.summary()}
        return {**out, "summaries": {m: methods.get(m).summary for m in out["methods"]}}

    @app.get("/api/images")
    def images(page: int = Query(1, ge=1), per: int = Query(60, ge=1, le=500)):
        ids = served.catalog.indexed_ids()
        chosen = ids[(page - 1) * per : page * per]
        rows = served.catalog.get_many(chosen)
        return {"total": len(ids), "page": page, "per": per,
                "images": [{"id": i, "name": Path(rows[i].path).name, "width": rows[i].width,
                            "height": rows[i].height} for i in chosen]}

    @app.get("/api/similar/{image_id}")
    def similar(image_id: int, method: str | None = None, k: int = 12, verify: bool = True):
        _check_k(k)
        row = served.catalog.get(image_id)
        if row is None or row.state != INDEXED:
            raise HTTPException(404, f"no indexed image with id {image_id}")
        query, stored = None, Stored(served.catalog)  # None: not verified, or the file is gone
        if verify:  # its features as stored at index time, else from its file
            query = stored.get([image_id]).get(image_id) or file_features(row.path)
        out, matched = {}, {}
        for m in served.methods(method):
            searcher, _ = served.searcher(m)
            code = searcher.index.vectors([image_id])[0]  # its own code: nothing to encode
            n = max(k, VERIFY_TOP) if query is not None else k
            hits = [h for h in searcher.search_code(code, n + 1, served.catalog)
                    if h.id != image_id][:n]
            if query is not None:
                hits = verify_hits(query, hits, k, matched, stored=stored)
            out[m] = _hits(served, hits[:k])
        return {"id": image_id, "name": Path(row.path).name, "verified": query is not None,
                "results": out}

    @app.post("/api/search")
    async def search(file: Annotated[UploadFile, File()], method: str | None = None,
                     k: int = 12, verify: bool = True):
        _check_k(k)
        searchers = {m: served.searcher(m) for m in served.methods(method)}
        data = await file.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise HTTPException(413, f"upload over {MAX_UPLOAD // 2**20} MiB")
        name = file.filename or "upload"
        try:
            if is_raw(name):  # its header's size: LibRaw decodes nothing yet
                w, h = raw_size(named(data, name))
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(io.BytesIO(data)) as im:
                        w, h = im.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise HTTPException(413, f"image of {w}x{h} pixels is too large to search "
                                         f"with (at most {MAX_UPLOAD_PIXELS // 10**6} "
                                         "megapixels)")
            images = query_images(named(data, name), served.ws.config.input_size, any(
                region_margin(state.query_margin) is not None for _, state in searchers.values()))
            query = load_features(named(data, name)) if verify else None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise HTTPException(413, "image declares too many pixels (a decompression "
                                     "bomb?)") from None
        except (ImageLoadError, OSError, ValueError):
            raise HTTPException(415, "not an image this server can read") from None
        out, matched = {}, {}
        for m, (searcher, state) in searchers.items():  # regions where calibrated
            hits = searcher.search_query(images, max(k, VERIFY_TOP) if verify else k,
                                         region_margin(state.query_margin), served.catalog,
                                         turns=verify)
            if verify:
                hits = verify_hits(query, hits, k, matched, stored=Stored(served.catalog))
            out[m] = _hits(served, hits)
        return {"name": file.filename, "verified": verify, "results": out}

    def found_duplicates(method: str | None, threshold: float | None):
        """(the result of ``method``, its groups as the user sees them now)."""
        from .copies import kept

        names = served.methods(method)
        if not names:
            raise HTTPException(404, "no method built")
        if len(names) > 1:
            raise HTTPException(400, "duplicates are found by one method: name it, not 'all'")
        m = names[0]
        found = served.derived((m, "dups", threshold),
                               lambda: kept.find(served.ws, m, threshold))
        return found, _visible(found.groups, review.dismissed(served.root))

    @app.get("/api/duplicates")
    def duplicates(method: str | None = None, threshold: float | None = Query(None, ge=0),
                   offset: int = Query(0, ge=0), limit: int = Query(PAGE_GROUPS, ge=1, le=1000),
                   order: str = Query("space", pattern="^(" + "|".join(ORDERS) + ")$"),
                   keeper: int | None = None):
        from .copies import kept

        now = kept.finding(served.ws)
        if now is not None:  # an `imgsearch index` is finding them: say so, find nothing
            return {"finding": now, "groups": [], "total": 0, "offset": offset,
                    "limit": limit, "order": order}
        found, groups = found_duplicates(method, threshold)
        groups = ordered(groups, order)
        numbers = list(range(1, len(groups) + 1))  # each group's place in the order
        if keeper is not None:
            numbers = [n for n, g in zip(numbers, groups) if g.keeper.id == keeper]
        else:
            numbers = numbers[offset : offset + limit]
        data = dataclasses.replace(found, groups=[groups[n - 1] for n in numbers]).as_dict()
        data.update(total=len(groups), offset=offset, limit=limit, order=order,
                    numbers=numbers, others=sum(len(g.others) for g in groups),
                    freed=sum(freed(g) for g in groups))
        for g in data["groups"]:  # names, not paths
            for member in [g["keeper"], *g["others"]]:
                member["name"] = Path(member.pop("path")).name
        return data

    @app.post("/api/duplicates/move")
    def move_duplicates(req: MoveRequest):
        from .copies.moves import plan_moves

        dest = _destination(req.to)
        with served.moving:
            _, groups = found_duplicates(req.method, req.threshold)
            wanted = set(req.ids)
            group = next((g for g in groups if wanted and wanted <= {m.id for m in g.others}),
                         None)
            if group is None:
                raise HTTPException(409, "these photos are not the others of one group of "
                                         "duplicates now; reload the page")
            chosen = dataclasses.replace(
                group, others=tuple(m for m in group.others if m.id in wanted))
            moves = plan_moves([chosen], served.catalog.root or "/", dest)
            moved, log = _moved(moves, dest)
        LOG.info("moved %d file(s) into %s (log %s)", moved, dest, log)
        return {"moved": moved, "to": str(dest), "log": str(log),
                "names": [Path(src).name for src, _ in moves]}

    @app.post("/api/duplicates/move-all")
    def move_all_duplicates(req: MoveAllRequest):
        from .copies.moves import plan_moves

        dest = _destination(req.to)
        with served.moving:
            _, groups = found_duplicates(req.method, req.threshold)
            if len(groups) != req.groups:
                raise HTTPException(409, f"there are {len(groups)} groups of duplicates now, "
                                         f"not {req.groups}; reload the page")
            moves = plan_moves(groups, served.catalog.root or "/", dest)
            moved, log = _moved(moves, dest)
        LOG.info("moved the others of %d groups, %d file(s), into %s (log %s)", len(groups),
                 moved, dest, log)
        return {"moved": moved, "groups": len(groups), "to": str(dest), "log": str(log)}

    @app.post("/api/duplicates/undo")
    def undo_move(req: UndoRequest):
        from .copies.moves import MOVE_LOG, undo

        log = Path(req.log).expanduser()
        if not log.is_absolute() or not MOVE_LOG.fullmatch(log.name):
            raise HTTPException(400, f"{req.log!r} is not a move log (a full path to "
                                     "imgsearch-moves-DATE-TIME.jsonl)")
        if not log.is_file():
            raise HTTPException(404, f"move log not found: {log}")
        with served.moving:
            try:
                back = undo(log)
            except (ValueError, KeyError, TypeError):
                raise HTTPException(400, f"{log} is not a move log this version can "
                                         "read") from None
            except OSError as e:
                raise HTTPException(500, f"putting the files back stopped: {e}; the rest go "
                                         "back when the same log is undone again") from None
        return {"restored": back, "log": str(log)}

    @app.post("/api/duplicates/dismiss")
    def dismiss(req: DismissRequest):
        rows = served.catalog.get_many(req.ids)
        missing = sorted(set(req.ids) - set(rows))
        if missing:
            raise HTTPException(404, f"no image with id {missing[0]}")
        return {"dismissed": review.dismiss(served.root, req.ids)}

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
        # the decoding rules in the name: a thumbnail made under older ones is made again
        name = f"{image_id}-{(row.hash or 'x')[:12]}-d{DECODE_VERSION}.jpg"
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
            for old in served.thumbs.glob(f"{image_id}-*.jpg"):  # of an older file or rules
                if old.name != name:
                    old.unlink(missing_ok=True)
        return FileResponse(cached, media_type="image/jpeg", headers=headers)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    return app

