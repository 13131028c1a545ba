"""Walk a folder, decode and resize images in worker processes (images.py), and record every
file in the catalog and the image cache. A file that cannot be read is recorded as failed with
its reason; it never stops a run.

Each row records the decoding version (images.DECODE_VERSION) of its cached pixels. A file
whose pixels older decoding rules made, and which the current rules may decode differently
(images.decoding_changed), is decoded again even though it did not change; where its pixels
come out different, its row gets the run's generation, so every method re-encodes it.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .catalog import FAILED, INDEXED, REMOVED, Catalog, Row
from .copies.evidence import FEATURES_VERSION
from .engine import LOCAL, Engine
from .errors import CacheMiss, DiskFull, ImgSearchError, MachineFault
from .imagecache import ImageCache
from .images import DECODE_VERSION, EXTENSIONS, RAW_NEEDS_EXTRA, decoding_changed, raw_readable
from .reading import features_all

LOG = logging.getLogger(__name__)

_BATCH = 256  # catalog rows committed per transaction


# -- scanning ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class ScanRules:
    """Which files under the folder are photos to index."""

    exclude: tuple[str, ...] = ()  # glob patterns, matched against names and relative paths
    include_hidden: bool = False  # names starting with "." (files and folders)
    max_megapixels: float = 0.0  # bigger images are recorded failed, with the reason (0: none)

    def skips(self, name: str, relative: str) -> bool:
        """Whether the file or folder ``name`` at ``relative`` (to the root, with /) is left
        out: hidden (unless asked for), AppleDouble metadata (``._*``, never a photo), or
        matched by an --exclude pattern."""
        if name.startswith("._") or (name.startswith(".") and not self.include_hidden):
            return True
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relative, p)
                   for p in self.exclude)


def scan(root: Path, rules: ScanRules = ScanRules()
         ) -> tuple[list[FileEntry], list[tuple[str, str]]]:
    """Every image file under ``root`` that ``rules`` keep (symlinks to files followed, to
    folders not), and the (path, reason) of entries that could not be examined."""
    found: list[FileEntry] = []
    bad: list[tuple[str, str]] = []

    def on_error(e: OSError) -> None:
        bad.append((os.fsdecode(e.filename or root), f"{type(e).__name__}: {e.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        here = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if here == "." else here + "/"
        dirnames[:] = sorted(d for d in dirnames if not rules.skips(d, prefix + d))
        for name in sorted(filenames):
            if (os.path.splitext(name)[1].lower() not in EXTENSIONS
                    or rules.skips(name, prefix + name)):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)  # follows symlinks
            except OSError as e:
                bad.append((path, f"{type(e).__name__}: {e.strerror}"))
                continue
            if not os.path.isfile(path):
                bad.append((path, "not a regular file"))
                continue
            found.append(FileEntry(path, st.st_size, st.st_mtime))
    return found, bad


# -- ingest --------------------------------------------------------------------------------
@dataclass
class IngestReport:
    """What one ingest run did."""

    root: str
    gen: int
    scanned: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    reused: int = 0
    redecoded: int = 0  # unchanged files decoded again under new decoding rules (images.py)
    removed: int = 0
    features: int = 0  # unchanged files read again for the features they were indexed without
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def decoded(self) -> int:
        return self.added + self.updated - self.reused + self.redecoded


ProgressFn = Callable[[int, int], None]


class Sink(Protocol):
    """What follows the rows as they are committed (build.StreamedBuild: a method's codes
    computed while the photos decode)."""

    def first(self, ids: list[int]) -> list[int]:
        """``ids``: the catalog ids of the files about to be read, in scan order; returns
        those to read first, in that order."""

    def indexed(self, ids: list[int], decoding: bool = True) -> None:
        """Rows ``ids`` are committed as indexed, their pixels in the image cache;
        ``decoding``: while the readers still decode (False: the last rows, readers done)."""

    def failed(self, ids: list[int], decoding: bool = True) -> None:
        """Rows ``ids`` are committed as failed."""


def ingest(
    root: Path | str,
    catalog: Catalog,
    cache: ImageCache,
    workers: int | None = None,
    on_progress: ProgressFn | None = None,
    rules: ScanRules = ScanRules(),
    engine: Engine | None = None,
    sink: Sink | None = None,
    on_features: ProgressFn | None = None,
) -> IngestReport:
    """Bring the catalog and image cache up to date with the files under ``root``.

    New and changed files (size or mtime differ) are read; a file whose content hash matches
    an indexed file of the same size reuses its cached pixels instead of being decoded. An
    unchanged file whose cached pixels older decoding rules made is decoded again (see the
    module's docstring).
    Files gone from ``root`` are marked removed. Every changed row gets this run's generation.
    ``engine`` reads the files (engine.py, with reading.read_one; None: this machine's worker
    pool); this process writes every result. ``sink`` hears of every committed row, and
    the files whose ids it names first are read first.

    Every decoded file's same-picture evidence (copies/evidence.py) is committed with its
    row; a reused file copies its source's. Indexed files that have none of the current
    format (an index made before it was stored) are read for it last (``add_features``,
    progress to ``on_features``).
    """
    t0 = time.perf_counter()
    root = Path(os.path.abspath(root))
    check_folder(root)
    gen = catalog.next_gen()
    catalog.set_root(str(root))
    report = IngestReport(str(root), gen)
    LOG.info("scanning %s (generation %d)", root, gen)
    files, bad = scan(root, rules)
    report.scanned = len(files) + len(bad)

    known = {r.path: r for r in catalog.rows()}
    seen = {f.path for f in files} | {p for p, _ in bad}
    prefix = str(root) + os.sep
    gone = [r.id for p, r in known.items()
            if r.state != REMOVED and p.startswith(prefix) and p not in seen]
    stale = {r.id for r in known.values()  # pixels the current decoding may change
             if r.state == INDEXED and decoding_changed(r.format, r.decoding)}
    by_size = {size: {h: i for h, i in ids.items() if i not in stale}  # before removals: a
               for size, ids in catalog.hashes_by_size().items()}  # renamed file reuses them
    report.removed = catalog.mark(gone, REMOVED, gen)

    todo: list[FileEntry] = []
    redo: set[str] = set()
    raw_now = raw_readable()  # RAW files that failed for want of the extra are read again
    for f in files:
        r = known.get(f.path)
        if r is None or r.state == REMOVED or (r.size, r.mtime) != (f.size, f.mtime) or (
                raw_now and r.state == FAILED and (r.reason or "").startswith(RAW_NEEDS_EXTRA)):
            todo.append(f)
        elif r.id in stale:
            redo.add(f.path)
            todo.append(f)
        else:
            report.unchanged += 1

    writer = _RowWriter(catalog, cache, known, gen, report, redo, sink)
    writer.number(sorted([f.path for f in todo] + [p for p, _ in bad]))  # in scan order,
    #                                                     whatever order results come back in
    if sink is not None:
        ids = {f.path: writer.id_of(f.path) for f in todo}
        rank = {i: r for r, i in enumerate(sink.first(sorted(ids.values())))}
        todo.sort(key=lambda f: rank.get(ids[f.path], len(rank)))  # stable: the rest as found
    for path, reason in bad:
        writer.failed(FileEntry(path, 0, 0.0), reason)
    LOG.info("decoding %d new or changed files of %d", len(todo) - len(redo), len(files))
    if redo:
        LOG.info("decoding %d unchanged files again: their cached pixels are of older "
                 "decoding rules (now version %d)", len(redo), DECODE_VERSION)
    entries = {f.path: f for f in todo}
    # a file decoded again neither reuses pixels nor meets a limit it was indexed without
    tasks = [(f.path, cache.size, {}, 0.0) if f.path in redo else
             (f.path, cache.size, by_size.get(f.size, {}), rules.max_megapixels) for f in todo]
    done, read_all = 0, False
    try:
        results = (engine or LOCAL).read(tasks, workers)
        for done, result in enumerate(results, 1):
            writer.add(entries[result["path"]], result)
            if on_progress:
                on_progress(done, len(tasks))
        read_all = True
    except DiskFull as e:  # what the rest of the run needs: its pixels, and the catalog rows
        raise e.needing((len(tasks) - done + 1) * (cache.record + 512)) from e
    finally:
        try:  # keep what is done: rows whose pixels are on disk are committed
            writer.commit(tell=False)
            cache.flush()
        except MachineFault:
            if read_all:  # else the error already on its way up says more
                raise
        report.seconds = time.perf_counter() - t0  # to the last row: then the sink's work
    if sink is not None:
        writer.tell(decoding=False)
    report.features = add_features(catalog, workers, on_features)
    if report.redecoded:
        LOG.info("decoded %d unchanged files again (decoding version %d): %d with new pixels, "
                 "which every method re-encodes", report.redecoded, DECODE_VERSION,
                 writer.repixelled)
    LOG.info("ingest %s: %s", root, report)
    return report


def add_features(catalog: Catalog, workers: int | None = None,
                 on_progress: ProgressFn | None = None) -> int:
    """Read the indexed files that have no stored features of FEATURES_VERSION for them, in
    this machine's worker pool, committing every _BATCH; returns how many were read. A
    file gone or unreadable since it was indexed is stored as having none."""
    lacking = catalog.lacking_features(FEATURES_VERSION)
    if not lacking:
        return 0
    LOG.info("computing the features of %d indexed files that have none stored", len(lacking))
    rows = catalog.get_many(lacking)
    paths = {rows[i].path: i for i in lacking}
    done, found = 0, {}
    try:
        for done, (path, blob) in enumerate(features_all(list(paths), workers), 1):
            found[paths[path]] = blob
            if len(found) >= _BATCH:
                catalog.set_features(found, FEATURES_VERSION)
                found = {}
            if on_progress:
                on_progress(done, len(paths))
    finally:  # what is computed is kept: an interrupted run goes on from there next time
        catalog.set_features(found, FEATURES_VERSION)
    return len(lacking)


def check_folder(path: Path | str) -> None:
    """Raise ImgSearchError unless ``path`` is an existing folder."""
    if not os.path.exists(path):
        raise ImgSearchError(f"folder not found: {path}")
    if not os.path.isdir(path):
        raise ImgSearchError(f"not a folder: {path}")


class _RowWriter:
    """Turns worker results into pixel-cache writes and batched catalog upserts.

    Pixels are written before the catalog row that points at them is committed, so a row
    that says ``indexed`` always has its pixels in the cache. New pixels of an unchanged file
    decoded again replace its old ones only after its row has this run's generation, so the
    methods re-encode it even if the run stops in between.
    """

    def __init__(self, catalog: Catalog, cache: ImageCache, known: dict, gen: int,
                 report: IngestReport, redo: set[str] = frozenset(), sink: Sink | None = None):
        self.catalog, self.cache, self.known, self.gen, self.report, self.redo = (
            catalog, cache, known, gen, report, redo)
        self.sink = sink
        self.heard: tuple[list[int], list[int]] = ([], [])  # for the sink: indexed, failed
        self.next_id = catalog.max_id() + 1
        self.numbered: dict[str, int] = {}  # new files' ids, given in scan order (number)
        self.pending: list[dict] = []
        self.features: dict[int, bytes | None] = {}  # committed with the pending rows
        self.touched: list[tuple[int, float]] = []
        self.same: list[int] = []  # decoded again: their pixels are as cached
        self.redone: list[tuple[int, bytes]] = []  # decoded again: new pixels, to write
        self.repixelled = 0

    def number(self, paths: list[str]) -> None:
        """Give the new files among ``paths`` their catalog ids now, in this order, so that
        ids follow the scan and not the order the engine's results come back in."""
        for path in paths:
            if path not in self.known and path not in self.numbered:
                self.numbered[path] = self.next_id
                self.next_id += 1

    def id_of(self, path: str) -> int:
        """The catalog id ``path`` has or is given (after ``number``)."""
        r = self.known.get(path)
        return r.id if r is not None else self.numbered[path]

    def _id_for(self, path: str) -> tuple[int, bool]:
        r = self.known.get(path)
        if r is not None:
            return r.id, r.state != REMOVED
        if path in self.numbered:
            return self.numbered[path], False
        self.next_id += 1
        return self.next_id - 1, False

    def _row(self, id_: int, f: FileEntry, **cols) -> None:
        row = {"id": id_, "path": f.path, "size": f.size, "mtime": f.mtime, "hash": None,
               "width": None, "height": None, "format": None, "reason": None, "gen": self.gen,
               "decoding": DECODE_VERSION}
        row.update(cols)
        self.pending.append(row)
        if len(self.pending) >= _BATCH:
            self.commit()

    def failed(self, f: FileEntry, reason: str) -> None:
        id_, _ = self._id_for(f.path)
        self.report.failed.append((f.path, reason))
        self.heard[1].append(id_)
        self._row(id_, f, state=FAILED, reason=reason)

    def add(self, f: FileEntry, res: dict) -> None:
        if "size" in res:  # what was actually read, if the file changed since the scan
            f = FileEntry(f.path, res["size"], res["mtime"])
        if "error" in res:
            self.failed(f, res["error"])
            return
        id_, existed = self._id_for(f.path)
        if f.path in self.redo:
            old = self.known[f.path]
            if (old.size, old.mtime, old.hash) == (f.size, f.mtime, res["hash"]):
                self._redecoded(old, f, res)
                return
        decoding = DECODE_VERSION
        if "reuse" in res:
            src = res["reuse"]
            if src == id_:  # same file, same bytes, new mtime: nothing to re-encode
                self.touched.append((id_, f.mtime))
                self.report.unchanged += 1
                return
            source = self.catalog.get(src)
            self.cache.write(id_, self.cache.read([src])[0])
            self.features.update(
                (id_, b) for b in self.catalog.features([src], FEATURES_VERSION).values())
            self.report.reused += 1
            res = {"hash": res["hash"], "width": source.width, "height": source.height,
                   "format": source.format}
            decoding = source.decoding
        else:
            self.cache.write(id_, res["pixels"])
            self.features[id_] = res.get("features")
        if existed:
            self.report.updated += 1
        else:
            self.report.added += 1
        self.heard[0].append(id_)
        self._row(id_, f, state=INDEXED, hash=res["hash"], width=res["width"],
                  height=res["height"], format=res["format"], decoding=decoding)

    def _redecoded(self, old: Row, f: FileEntry, res: dict) -> None:
        """An unchanged file decoded again under new rules: where its pixels differ from the
        cached ones, its row gets this run's generation (the methods re-encode it) and they
        replace them; either way its row then records the current decoding version."""
        self.report.unchanged += 1
        self.report.redecoded += 1
        id_ = old.id
        if "features" in res:
            self.features[id_] = res["features"]
        try:
            same = self.cache.read([id_])[0].tobytes() == res["pixels"]
        except CacheMiss:
            same = False
        if same:
            self.same.append(id_)
            return
        self.repixelled += 1
        self.redone.append((id_, res["pixels"]))
        self._row(id_, f, state=INDEXED, hash=res["hash"], width=res["width"],
                  height=res["height"], format=res["format"],
                  decoding=old.decoding)  # the current one once the pixels are written

    def commit(self, tell: bool = True) -> None:
        """Commit the pending rows, then (``tell``) tell the sink of them."""
        if self.pending:
            self.cache.flush()  # the pixels reach the disk before the rows that point at them
        self.catalog.upsert_many(self.pending, self.features, FEATURES_VERSION)
        self.pending, self.features = [], {}
        if self.redone:  # after their rows took this run's generation: a run stopped in
            for id_, pixels in self.redone:  # between leaves them for the methods to encode
                self.cache.write(id_, pixels)
            self.cache.flush()
            self.same.extend(id_ for id_, _ in self.redone)
            self.redone = []
        if self.touched:
            self.catalog.touch(self.touched)
            self.touched = []
        if self.same:
            self.catalog.set_decoding(self.same, DECODE_VERSION)
            self.same = []
        if tell:
            self.tell()

    def tell(self, decoding: bool = True) -> None:
        """Tell the sink of the rows committed since it was last told (``decoding``: while
        the readers still decode)."""
        indexed, failed = self.heard
        self.heard = ([], [])
        if self.sink is not None:
            if failed:
                self.sink.failed(failed, decoding)
            if indexed:
                self.sink.indexed(indexed, decoding)
