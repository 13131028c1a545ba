"""The SQLite catalog: one row per file ever seen, whose integer primary key is its FAISS id.

Open a catalog with ``sqlite-utils tables catalog.db`` or datasette: the ``images`` table is
plain columns, and ``meta`` holds the schema version and the ingest generation counter.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import CatalogError, NotReadable
from .store import faults, machine_fault


def _import_sqlite_utils():
    """sqlite-utils, imported without pandas where nothing has loaded pandas yet. sqlite-utils
    imports pandas (when installed: Ray's extra brings it) at import time only to map
    ``pandas.Timestamp`` columns, which the catalog never stores; that import is 0.23 s, a
    fifth of a cold `imgsearch query` (docs/BENCHMARKS.md)."""
    import sys

    if "pandas" in sys.modules:
        import sqlite_utils
        return sqlite_utils
    sys.modules["pandas"] = None  # an ImportError for this import only, which it expects
    try:
        import sqlite_utils
    finally:
        del sys.modules["pandas"]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()

LOG = logging.getLogger(__name__)

INDEXED, FAILED, REMOVED = "indexed", "failed", "removed"
STATES = (INDEXED, FAILED, REMOVED)


def to_db_path(path: str) -> str | bytes:
    """A path as stored: text when it is valid UTF-8, else its raw bytes (a BLOB), so that file
    names in any encoding round-trip exactly."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:  # undecodable bytes, carried by os.fsdecode as surrogates
        return os.fsencode(path)


def from_db_path(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Row:
    """One catalog row, as read back."""

    id: int
    path: str
    size: int
    mtime: float
    hash: str | None
    width: int | None
    height: int | None
    format: str | None
    state: str
    reason: str | None
    gen: int
    decoding: int = 1  # the images.DECODE_VERSION of the row's cached pixels


def _v1(db: sqlite_utils.Database) -> None:
    db["images"].create(
        {
            "id": int,
            "path": str,
            "size": int,
            "mtime": float,
            "hash": str,
            "width": int,
            "height": int,
            "format": str,
            "state": str,
            "reason": str,
        },
        pk="id",
        not_null={"path", "size", "mtime", "state"},
    )
    db["images"].create_index(["path"], unique=True)


def _v2(db: sqlite_utils.Database) -> None:
    # gen: the ingest run that last changed the row; a method index synced to gen G is
    # up to date for every row with gen <= G. updated_at: wall-clock time of that change.
    db["images"].add_column("gen", int, not_null_default=0)
    db["images"].add_column("updated_at", float, not_null_default=0.0)
    db["images"].create_index(["hash"])
    db["images"].create_index(["state"])
    db["images"].create_index(["gen"])


def _v3(db: sqlite_utils.Database) -> None:
    # decoding: the images.DECODE_VERSION the row's cached pixels were decoded under; rows
    # cached before it was recorded were decoded under version 1 (transparency on white)
    db["images"].add_column("decoding", int, not_null_default=1)


def _v4(db: sqlite_utils.Database) -> None:
    # features: each image's same-picture evidence (copies/evidence.py), an opaque blob of a
    # format version, written in the same transaction as the image's row; blob NULL: the
    # image could not be decoded for features. A row with no features row (an index made
    # before this table) gets them on the next ingest (Catalog.lacking_features).
    db["features"].create({"id": int, "version": int, "blob": bytes}, pk="id",
                          not_null={"version"})


def _v5(db: sqlite_utils.Database) -> None:
    # pairs: the verdict of verification on a pair of images (a < b), an opaque blob of a
    # rules version (copies/evidence.py), proven or refused; dropped when either image's
    # features are written again (a changed file)
    db["pairs"].create({"a": int, "b": int, "version": int, "same": int, "blob": bytes},
                       pk=("a", "b"), not_null={"version", "same", "blob"})
    db["pairs"].create_index(["b"])


#: Stepwise migrations: MIGRATIONS[i] takes the schema from version i to i + 1.
MIGRATIONS = (_v1, _v2, _v3, _v4, _v5)
VERSION = len(MIGRATIONS)


class Catalog:
    """Owns the schema of one index's ``catalog.db`` and every read and write to it."""

    def __init__(self, path: Path | str, read_only: bool = False):
        """Open (and migrate) the catalog; ``read_only``: a reader in a worker process, which
        neither writes nor migrates."""
        self.path = Path(path)
        if self.path.exists() and not os.access(self.path, os.R_OK):
            raise NotReadable(self.path, "permission denied")
        try:
            if read_only:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0)
                self.db = sqlite_utils.Database(conn)
                return
            conn = sqlite3.connect(self.path, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self.db = sqlite_utils.Database(conn)
            self._migrate()
        except sqlite3.DatabaseError as e:
            fault = machine_fault(e, self.path, "opening the catalog")
            if fault is not None:
                raise fault from e
            raise CatalogError(
                f"catalog {self.path} is unreadable ({e}); re-run `imgsearch index PHOTOS_DIR "
                "--rebuild` to move it aside and ingest the folder anew"
            ) from e

    # -- schema -------------------------------------------------------------------------
    @property
    def version(self) -> int:
        if "meta" not in self.db.table_names():
            return 0
        rows = list(self.db.query("select value from meta where key = 'schema_version'"))
        return int(rows[0]["value"]) if rows else 0

    def _migrate(self) -> None:
        current = self.version
        if current > VERSION:
            raise CatalogError(
                f"catalog {self.path} has schema version {current}, newer than this imgsearch "
                f"({VERSION}); upgrade imgsearch"
            )
        if "meta" not in self.db.table_names():
            self.db["meta"].create({"key": str, "value": str}, pk="key")
        for step in range(current, VERSION):
            with self.db.conn:
                MIGRATIONS[step](self.db)
                self._set_meta("schema_version", step + 1)
            LOG.info("catalog %s migrated to schema version %d", self.path, step + 1)

    def _set_meta(self, key: str, value: object) -> None:
        self.db["meta"].upsert({"key": key, "value": str(value)}, pk="key")

    def _get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return rows[0]["value"] if rows else default

    def close(self) -> None:
        self.db.conn.close()

    # -- generations ----------------------------------------------------------------------
    @property
    def gen(self) -> int:
        """The latest ingest generation (0 for a new catalog)."""
        return int(self._get_meta("gen", "0"))

    @property
    def root(self) -> str | None:
        """The folder the last ingest run read, or None before the first."""
        return self._get_meta("root")

    def set_root(self, root: str) -> None:
        with faults(self.path, "recording the folder in the catalog"), self.db.conn:
            self._set_meta("root", root)

    def next_gen(self) -> int:
        """Start a new ingest generation and return its number."""
        with faults(self.path, "starting an ingest run in the catalog"), self.db.conn:
            g = self.gen + 1
            self._set_meta("gen", g)
        return g

    # -- reads ----------------------------------------------------------------------------
    def _rows(self, sql: str, params: Iterable = ()) -> Iterator[Row]:
        cols = ("id, path, size, mtime, hash, width, height, format, state, reason, gen, "
                "decoding")
        for r in self.db.execute(f"select {cols} from images {sql}", list(params)).fetchall():
            yield Row(r[0], from_db_path(r[1]), *r[2:])

    def get(self, id_: int) -> Row | None:
        return next(self._rows("where id = ?", [id_]), None)

    def by_path(self, path: str) -> Row | None:
        return next(self._rows("where path = ?", [to_db_path(path)]), None)

    def rows(self, state: str | None = None) -> list[Row]:
        if state is None:
            return list(self._rows("order by id"))
        return list(self._rows("where state = ? order by id", [state]))

    def get_many(self, ids: Iterable[int]) -> dict[int, Row]:
        """id -> Row for the ``ids`` that exist, in one query."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        return {r.id: r for r in self._rows(f"where id in ({','.join('?' * len(ids))})", ids)}

    def indexed_ids(self) -> list[int]:
        sql = "select id from images where state = ? order by id"
        return [r[0] for r in self.db.execute(sql, [INDEXED]).fetchall()]

    def changed_since(self, gen: int) -> list[tuple[int, str]]:
        """(id, state) of every row changed by an ingest generation after ``gen``."""
        sql = "select id, state from images where gen > ? order by id"
        return [tuple(r) for r in self.db.execute(sql, [gen]).fetchall()]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for state, n in self.db.execute("select state, count(*) from images group by state"):
            out[state] = n
        return out

    def hashes_by_size(self) -> dict[int, dict[str, int]]:
        """size -> {hash: id} of indexed rows: candidates for reuse by content hash."""
        out: dict[int, dict[str, int]] = {}
        sql = "select size, hash, id from images where state = ? and hash is not null"
        for size, h, id_ in self.db.execute(sql, [INDEXED]):
            out.setdefault(size, {})[h] = id_
        return out

    def changed_gen(self) -> int:
        """The latest ingest generation that changed any row (0 for none): runs that found
        nothing new leave it."""
        return self.db.execute("select coalesce(max(gen), 0) from images").fetchone()[0]

    def max_id(self) -> int:
        return self.db.execute("select coalesce(max(id), 0) from images").fetchone()[0]

    def _where_in(self, sql: str, params: list, values: list) -> Iterator[tuple]:
        """The rows of ``sql`` (ending in "in") for ``values``, 500 at a time (SQLite's
        limit on parameters), after ``params``."""
        for start in range(0, len(values), 500):
            part = values[start : start + 500]
            yield from self.db.execute(f"{sql} ({','.join('?' * len(part))})",
                                       [*params, *part])

    def features(self, ids: Iterable[int], version: int) -> dict[int, bytes | None]:
        """id -> stored features blob (None: stored as having none) for the ``ids`` that have
        features of ``version``; ids without them are left out."""
        return dict(self._where_in("select id, blob from features where version = ? and id in",
                                   [version], [int(i) for i in ids]))

    def pairs(self, pairs: Iterable[tuple[int, int]], version: int
              ) -> dict[tuple[int, int], bytes]:
        """(a, b) -> stored verdict blob of ``version`` for the ``pairs`` (a < b) that have
        one."""
        want = {(int(a), int(b)) for a, b in pairs}
        rows = self._where_in("select a, b, blob from pairs where version = ? and a in",
                              [version], sorted({a for a, _ in want}))
        return {(a, b): blob for a, b, blob in rows if (a, b) in want}

    def set_pairs(self, verdicts: dict[tuple[int, int], tuple[bool, bytes]], version: int
                  ) -> None:
        """Store verdicts ((a, b), a < b -> (same, blob)) of ``version``, in one transaction."""
        if not verdicts:
            return
        with faults(self.path, "recording verified pairs in the catalog"), self.db.conn:
            self.db.conn.executemany(
                "insert or replace into pairs (a, b, version, same, blob) values (?, ?, ?, ?, ?)",
                [(int(a), int(b), version, int(s), blob) for (a, b), (s, blob) in
                 verdicts.items()])

    def lacking_features(self, version: int) -> list[int]:
        """The indexed rows with no features of ``version`` (indexed before features were
        stored, or under another format), by id."""
        sql = ("select i.id from images i left join features f on f.id = i.id and "
               "f.version = ? where i.state = ? and f.id is null order by i.id")
        return [r[0] for r in self.db.execute(sql, [version, INDEXED]).fetchall()]

    # -- writes ---------------------------------------------------------------------------
    def upsert_many(self, rows: list[dict], features: dict[int, bytes | None] | None = None,
                    version: int = 0) -> None:
        """Insert or replace rows (each a full dict with an ``id``) and the ``features`` blobs
        (of format ``version``) of some of them, in one transaction."""
        if not rows and not features:
            return
        now = time.time()
        rows = [{**r, "path": to_db_path(r["path"])} for r in rows]
        for r in rows:
            r.setdefault("updated_at", now)
        with faults(self.path, "recording photos in the catalog"), self.db.conn:
            if rows:
                self.db["images"].upsert_all(rows, pk="id")
            if features:
                self.db.conn.executemany(
                    "insert or replace into features (id, version, blob) values (?, ?, ?)",
                    [(int(i), version, b) for i, b in features.items()])
                ids = [(int(i), int(i)) for i in features]  # their verdicts are of old features
                self.db.conn.executemany("delete from pairs where a = ? or b = ?", ids)

    def set_features(self, features: dict[int, bytes | None], version: int) -> None:
        """Store the features of rows that have them not yet, in one transaction."""
        self.upsert_many([], features, version)

    def mark(self, ids: Iterable[int], state: str, gen: int, reason: str | None = None) -> int:
        """Set the state of rows ``ids`` in one transaction; returns how many changed."""
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        sql = "update images set state = ?, reason = ?, gen = ?, updated_at = ? where id = ?"
        now = time.time()
        with faults(self.path, "recording removed or failed photos in the catalog"), \
                self.db.conn:
            self.db.conn.executemany(sql, [(state, reason, gen, now, i) for i in ids])
        return len(ids)

    def set_decoding(self, ids: Iterable[int], version: int) -> None:
        """Record that rows ``ids`` have cached pixels of decoding ``version`` (their pixels
        were decoded again and came out the same, so their generation stays)."""
        with faults(self.path, "recording decoding versions in the catalog"), self.db.conn:
            self.db.conn.executemany("update images set decoding = ? where id = ?",
                                     [(version, int(i)) for i in ids])

    def touch(self, ids_mtimes: list[tuple[int, float]]) -> None:
        """Record a new mtime for files whose content hash did not change."""
        with faults(self.path, "recording modification times in the catalog"), self.db.conn:
            self.db.conn.executemany(
                "update images set mtime = ? where id = ?", [(m, i) for i, m in ids_mtimes]
            )
