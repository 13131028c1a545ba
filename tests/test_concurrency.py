"""Concurrent use: one writer at a time (a lock with its pid), readers never see a half-written
index, a lock left by a killed writer is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsearch.cli import app
from imgsearch.errors import IndexLocked
from imgsearch.store import WriteLock

from .conftest import Watched, env, imgsearch, pattern

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_lock_records_its_holder_and_refuses_a_second(tmp_path):
    with WriteLock(tmp_path, "imgsearch index"):
        holder = json.loads((tmp_path / "lock").read_text())
        assert holder["pid"] == os.getpid() and holder["command"] == "imgsearch index"
        with pytest.raises(IndexLocked, match=f"pid {os.getpid()}"):
            WriteLock(tmp_path).acquire()
    assert (tmp_path / "lock").read_text() == ""  # released
    with WriteLock(tmp_path):  # and free again
        pass


def test_second_index_run_is_refused_with_the_holders_pid(photo_dir, tmp_path):
    index = tmp_path / "idx"
    with WriteLock(index, "imgsearch index"):
        result = run("index", photo_dir, "--index", index, "--methods", "pixels")
        train = run("train", "--index", index)
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("error: index") and f"pid {os.getpid()}" in line
    assert "--wait" in line and "\n" not in line
    assert train.exit_code == 1  # no index yet, or locked: never a traceback
    assert "Traceback" not in train.output


def test_wait_queues_behind_the_holder(photo_dir, tmp_path):
    index = tmp_path / "idx"
    lock = WriteLock(index).acquire()
    threading.Timer(1.0, lock.release).start()
    t0 = time.monotonic()
    result = run("index", photo_dir, "--index", index, "--methods", "pixels", "--wait")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - t0 >= 0.9


@pytest.mark.slow
def test_stale_lock_of_a_killed_writer_is_taken_over(photo_dir, tmp_path):
    index = tmp_path / "idx"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from imgsearch.store import WriteLock; "
         f"WriteLock({str(index)!r}).acquire(); print('locked', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env=env())
    assert holder.stdout.readline().strip() == "locked"
    assert json.loads((index / "lock").read_text())["pid"] == holder.pid
    refused = run("index", photo_dir, "--index", index, "--methods", "pixels")
    assert refused.exit_code == 1 and f"pid {holder.pid}" in refused.stderr
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    result = run("-v", "index", photo_dir, "--index", index, "--methods", "pixels")
    assert result.exit_code == 0, result.output
    assert f"took over the lock left by pid {holder.pid}" in " ".join(result.stderr.split())


@pytest.mark.slow
def test_queries_during_a_rebuild_answer_from_a_complete_index(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(400):
        Image.fromarray(pattern(i, 64)).save(photos / f"p{i:03d}.png")
    index = tmp_path / "idx"
    args = ("--index", str(index), "--methods", "pixels,pca", "--input-size", "32")
    assert run("index", photos, *args).exit_code == 0
    query = photos / "p007.png"

    writer = Watched(imgsearch("index", str(photos), *args, "--rebuild"))
    answered = 0
    while writer.proc.poll() is None:
        for method in ("pca", "pixels"):
            result = run("query", query, "--index", index, "--method", method, "-k", "5",
                         "--json")
            assert result.exit_code == 0, result.output
            hits = json.loads(result.stdout)["results"]
            assert len(hits) == 5 and hits[0]["path"] == str(query)
            answered += 1
    assert writer.finish() == 0, writer.output
    assert answered >= 2  # some queries really ran while the rebuild was writing
