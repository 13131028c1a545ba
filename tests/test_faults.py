"""Faults of the machine, not of the photos: a full disk, an index folder that may not be
written, files that may not be read. Each gives one clear line naming the path and the fix, the
index stays as it was, and the next run completes. The OS errors are injected at the write
calls (the tests may run as root, whom permissions do not stop)."""

import errno
import os
import sqlite3

import pytest
import sqlite_utils
from typer.testing import CliRunner

import imgsearch.imagecache as imagecache_mod
import imgsearch.index as index_mod
import imgsearch.store as store_mod
from imgsearch.catalog import FAILED, INDEXED
from imgsearch.cli import app
from imgsearch.integrity import check
from imgsearch.workspace import Workspace

from .conftest import find

runner = CliRunner()


def index(photos, idx, *extra):
    return runner.invoke(app, ["index", str(photos), "--index", str(idx), "--methods",
                               "pixels,pca", "--input-size", "32", "--workers", "1", *extra])


def one_line(result) -> str:
    """The one error line (progress bars drawn before it aside)."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def finishes(photos, idx, images=12):
    """The next run completes, and the index agrees with itself."""
    result = index(photos, idx)
    assert result.exit_code == 0, result.output
    ws = Workspace.open(idx)
    try:
        assert check(ws).ok and ws.catalog.counts()[INDEXED] == images
        assert ws.built_methods() == ["pixels", "pca"]
    finally:
        ws.close()


def test_disk_full_while_caching_pixels(photo_dir, tmp_path, monkeypatch):
    real, writes = os.pwrite, []

    def pwrite(fd, data, offset):
        writes.append(offset)
        if len(writes) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(imagecache_mod.os, "pwrite", pwrite)
    line = one_line(index(photo_dir, tmp_path / "idx"))
    assert line.startswith(f"error: no space left on the disk of {tmp_path / 'idx'}/pixels.u8 "
                           "while caching the pixels of new photos; this step needs about ")
    assert "Free some space" in line and "run the same command again" in line
    monkeypatch.undo()
    ws = Workspace.open(tmp_path / "idx")
    assert check(ws).ok and ws.catalog.counts()[INDEXED] <= 5  # what fitted, and nothing else
    ws.close()
    finishes(photo_dir, tmp_path / "idx")


def test_disk_full_while_writing_a_vector_index(photo_dir, tmp_path, monkeypatch):
    assert index(photo_dir, tmp_path / "idx", "--methods", "pixels").exit_code == 0

    def write_index(index, path):
        raise RuntimeError(f"Error in faiss::FileIOWriter: fwrite to {path}: No space left on "
                           "device")

    monkeypatch.setattr(index_mod.faiss, "write_index", write_index)
    line = one_line(index(photo_dir, tmp_path / "idx", "--rebuild"))
    assert "no space left on the disk of" in line and "index.faiss while writing index.faiss" \
        in line and "needs about" in line
    assert not list((tmp_path / "idx").rglob(".*.tmp")) and not list(
        (tmp_path / "idx" / "methods").glob(".*staging"))  # nothing half-written left
    monkeypatch.undo()
    finishes(photo_dir, tmp_path / "idx")


def test_disk_full_in_the_catalog(photo_dir, tmp_path, monkeypatch):
    assert index(photo_dir, tmp_path / "idx").exit_code == 0
    (photo_dir / "new.png").write_bytes(find(photo_dir, "img01.png").read_bytes() + b"x")

    def upsert_all(self, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(sqlite_utils.db.Table, "upsert_all", upsert_all)
    line = one_line(index(photo_dir, tmp_path / "idx"))  # at the run's first catalog write
    assert line.startswith(f"error: no space left on the disk of {tmp_path / 'idx'}/catalog.db "
                           "while starting an ingest run in the catalog. Free some space")
    monkeypatch.undo()
    finishes(photo_dir, tmp_path / "idx", images=13)


def test_an_index_folder_that_may_not_be_written(photo_dir, tmp_path, monkeypatch):
    real = os.open

    def denied(path, *args, **kwargs):
        if str(path).endswith("/lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(store_mod.os, "open", denied)
    line = one_line(index(photo_dir, tmp_path / "idx"))
    assert line == (f"error: cannot write {tmp_path / 'idx'} while taking the index's write "
                    "lock (Permission denied); make it writable by this user (chmod u+w), or "
                    "use another --index")
    monkeypatch.undo()
    finishes(photo_dir, tmp_path / "idx")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only folder")
def test_a_read_only_index_folder_for_real(photo_dir, tmp_path):
    assert index(photo_dir, tmp_path / "idx").exit_code == 0
    (tmp_path / "idx").chmod(0o555)
    try:
        line = one_line(index(photo_dir, tmp_path / "idx", "--rebuild"))
        assert "cannot write" in line and "chmod u+w" in line
    finally:
        (tmp_path / "idx").chmod(0o755)


def test_photos_that_may_not_be_read_are_recorded_not_fatal(photo_dir, tmp_path, monkeypatch):
    import imgsearch.reading as reading

    secret = find(photo_dir, "img03.bmp")
    real = open

    def guarded(path, *args, **kwargs):
        if str(path) == str(secret):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(reading, "open", guarded, raising=False)  # where files are read
    result = index(photo_dir, tmp_path / "idx")
    assert result.exit_code == 0 and "1 failed" in result.stderr
    ws = Workspace.open(tmp_path / "idx")
    row = ws.catalog.by_path(str(secret))
    assert row.state == FAILED and row.reason == "PermissionError: Permission denied"
    ws.close()


def test_a_catalog_that_may_not_be_read(photo_dir, tmp_path, monkeypatch):
    assert index(photo_dir, tmp_path / "idx").exit_code == 0
    catalog = tmp_path / "idx" / "catalog.db"
    real = os.access
    monkeypatch.setattr("imgsearch.catalog.os.access",
                        lambda p, mode: False if str(p) == str(catalog) else real(p, mode))
    line = one_line(runner.invoke(app, ["info", "--index", str(tmp_path / "idx")]))
    assert line == f"error: cannot read {catalog} (permission denied); make it readable by " \
                   "this user (chmod u+r)"


def test_disk_full_at_the_last_commit_of_an_ingest_run(photo_dir, tmp_path, monkeypatch):
    real = sqlite_utils.db.Table.upsert_all

    def upsert_all(self, records, *args, **kwargs):
        records = list(records)
        if self.name == "images" and records:  # the photos' rows, all in the run's last commit
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, records, *args, **kwargs)

    monkeypatch.setattr(sqlite_utils.db.Table, "upsert_all", upsert_all)
    line = one_line(index(photo_dir, tmp_path / "idx"))  # not a run that says it is done
    assert line.startswith(f"error: no space left on the disk of {tmp_path / 'idx'}/catalog.db")
    monkeypatch.undo()
    finishes(photo_dir, tmp_path / "idx")
