import sqlite3

import pytest
import sqlite_utils

from imgsearch import catalog as catalog_mod
from imgsearch.catalog import FAILED, INDEXED, REMOVED, Catalog
from imgsearch.errors import CatalogError


def row(id_, path, state=INDEXED, gen=1, size=10, h="h"):
    return {"id": id_, "path": path, "size": size, "mtime": 1.5, "hash": h, "width": 4,
            "height": 3, "format": "PNG", "state": state, "reason": None, "gen": gen}


def test_new_catalog_has_current_schema(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    assert cat.version == catalog_mod.VERSION == 5
    assert set(cat.db["features"].columns_dict) == {"id", "version", "blob"}
    assert set(cat.db["pairs"].columns_dict) == {"a", "b", "version", "same", "blob"}
    cols = set(cat.db["images"].columns_dict)
    assert {"id", "path", "size", "mtime", "hash", "width", "height", "format", "state",
            "reason", "gen", "updated_at", "decoding"} <= cols
    assert cat.db["images"].pks == ["id"]


def test_migrates_v1_catalog_stepwise(tmp_path):
    path = tmp_path / "c.db"
    db = sqlite_utils.Database(path)
    db["meta"].create({"key": str, "value": str}, pk="key")
    catalog_mod.MIGRATIONS[0](db)
    db["meta"].insert({"key": "schema_version", "value": "1"})
    db["images"].insert({"id": 7, "path": "/p.jpg", "size": 1, "mtime": 2.0, "state": INDEXED})
    db.conn.close()

    cat = Catalog(path)
    assert cat.version == 5
    assert cat.lacking_features(1) == [7]  # indexed before features were stored
    r = cat.get(7)
    assert r.path == "/p.jpg" and r.gen == 0  # old rows get the new columns' defaults
    assert r.decoding == 1  # pixels cached before the decoding version was recorded


def test_decoding_version_is_recorded_per_row(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    cat.upsert_many([row(1, "/a")])
    cat.upsert_many([{**row(2, "/b"), "decoding": 2}])
    assert (cat.get(1).decoding, cat.get(2).decoding) == (1, 2)  # 1: the column's default
    cat.set_decoding([1], 2)
    assert cat.get(1).decoding == 2 and cat.get(1).gen == 1  # its generation stays


def test_refuses_newer_schema(tmp_path):
    path = tmp_path / "c.db"
    Catalog(path).db["meta"].upsert({"key": "schema_version", "value": "99"}, pk="key")
    with pytest.raises(CatalogError, match="newer than this imgsearch"):
        Catalog(path)


def test_corrupt_catalog_is_a_clear_error(tmp_path):
    path = tmp_path / "c.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError, match=r"unreadable.*--rebuild"):
        Catalog(path)


def test_ids_are_the_rows_given_and_states_change(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    cat.upsert_many([row(1, "/a"), row(2, "/b"), row(5, "/c", FAILED)])
    assert cat.max_id() == 5
    assert cat.indexed_ids() == [1, 2]
    assert {i: r.path for i, r in cat.get_many([2, 5, 9]).items()} == {2: "/b", 5: "/c"}
    assert cat.by_path("/c").state == FAILED
    cat.mark([2], REMOVED, gen=3)
    assert cat.counts() == {INDEXED: 1, FAILED: 1, REMOVED: 1}
    assert cat.changed_since(1) == [(2, REMOVED)]


def test_hashes_by_size_only_lists_indexed_rows(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    cat.upsert_many([row(1, "/a", size=10, h="x"), row(2, "/b", FAILED, size=10, h="y")])
    assert cat.hashes_by_size() == {10: {"x": 1}}


def test_generations_increase(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    assert cat.gen == 0
    assert cat.next_gen() == 1
    assert cat.next_gen() == 2
    assert Catalog(tmp_path / "c.db").gen == 2


def test_path_is_unique(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    cat.upsert_many([row(1, "/a")])
    with pytest.raises(sqlite3.IntegrityError):
        cat.upsert_many([row(2, "/a")])


def test_readable_with_plain_sqlite(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    cat.upsert_many([row(1, "/a")])
    cat.close()
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("select path, state from images").fetchall() == [("/a", INDEXED)]


def test_features_are_written_with_their_rows_and_read_by_version(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    cat.upsert_many([row(1, "/a.jpg"), row(2, "/b.jpg"), row(3, "/c.jpg", state=FAILED)],
                    {1: b"\x01abc", 2: None}, version=1)
    assert cat.features([1, 2, 3], 1) == {1: b"\x01abc", 2: None}  # 2: stored as none
    assert cat.features([1, 2], 2) == {}  # another format version is not read
    assert cat.lacking_features(1) == []  # failed rows need none
    assert cat.lacking_features(2) == [1, 2]
    cat.set_features({1: b"\x02x", 2: b"\x02y"}, 2)
    assert cat.lacking_features(2) == []
    assert cat.features(range(1, 1200), 2) == {1: b"\x02x", 2: b"\x02y"}  # batched reads


def test_verdicts_on_pairs_are_dropped_when_either_image_gets_new_features(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    cat.upsert_many([row(i, f"/{i}.jpg") for i in (1, 2, 3)], {1: b"x", 2: b"y", 3: b"z"}, 1)
    cat.set_pairs({(1, 2): (True, b"m12"), (2, 3): (False, b"m23"), (1, 3): (False, b"m13")},
                  1)
    assert cat.pairs([(1, 2), (2, 3), (1, 3)], 1) == {(1, 2): b"m12", (2, 3): b"m23",
                                                      (1, 3): b"m13"}
    assert cat.pairs([(1, 2)], 2) == {}  # verdicts of other rules are not read
    cat.upsert_many([row(2, "/2.jpg", gen=2)], {2: b"y2"}, 1)  # 2 changed
    assert cat.pairs([(1, 2), (2, 3), (1, 3)], 1) == {(1, 3): b"m13"}
