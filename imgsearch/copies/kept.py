"""The groups of duplicates, found when the index is built and kept with it.

``imgsearch index`` finds the groups of the method queries use (``find``, with the default
options) as its last step, and keeps them in ``INDEX/duplicates.json`` with the key they were
found under: the catalog's generation, the method's state (its codes and threshold), the
options (threshold, keep, verify) and the pairs the user dismissed. ``imgsearch duplicates``
and the page then read them at once; other options, a new dismissal or a changed collection
find them again, where every pair verified before is read from the index (its verdicts are
stored in the catalog, evidence.py) and only new pairs are matched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict

from ..catalog import INDEXED
from ..errors import ImgSearchError
from ..store import write_json
from .candidates import PROPOSALS
from .groups import Duplicates, Group, Member, in_index
from .review import dismissed

LOG = logging.getLogger(__name__)

FILE = "duplicates.json"
VERSION = 1  # of the file's layout


def key(ws, method: str, threshold: float | None, times: float, verify: bool, keep: str
        ) -> str:
    """What the groups of ``method`` with these options depend on, as one digest: the last
    generation that changed the catalog (a run that found nothing new keeps it), the method's
    state, the options and the dismissed pairs."""
    state = ws.method_state(method)
    state = {k: v for k, v in asdict(state).items() if k != "gen"} if state else None
    parts = {"version": VERSION, "gen": ws.catalog.changed_gen(), "method": method,
             "state": state, "threshold": threshold,
             "times": times, "verify": verify, "keep": keep,
             "dismissed": sorted(dismissed(ws.root)), "proposals": asdict(PROPOSALS)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def load(ws, digest: str) -> Duplicates | None:
    """The kept groups found under ``digest``, or None (none kept, other ones, unreadable)."""
    path = ws.root / FILE
    try:
        data = json.loads(path.read_text())
        if data.get("key") != digest:
            return None
        return from_dict(data["duplicates"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        LOG.warning("kept duplicates %s unreadable (%s): finding them again", path, e)
        return None


def find(ws, method: str, threshold: float | None = None, times: float = 1.0,
         verify: bool = True, keep: str = "original", progress=None) -> Duplicates:
    """The groups of ``method`` (groups.in_index): those kept with the index when they were
    found under the same key, else found now and kept."""
    digest = key(ws, method, threshold, times, verify, keep)
    found = load(ws, digest)
    if found is not None:
        LOG.info("duplicates of %s: %d groups kept with the index", method, len(found.groups))
        return found
    found = in_index(ws, method, threshold, times, verify=verify, keep=keep,
                     progress=progress)
    try:
        write_json(ws.root / FILE, {"key": digest, "duplicates": found.as_dict()})
    except ImgSearchError as e:  # a read-only index still answers, it only cannot keep them
        LOG.warning("the groups of duplicates were found but not kept: %s", e)
    return found


def at_index_time(ws, method: str, progress=None) -> Duplicates | None:
    """``find`` with the default options, as `imgsearch index` runs it last; None for a
    collection of fewer than two images. While it runs, its progress is shared in
    ``INDEX/PROGRESS`` for the page (``finding``)."""
    if ws.catalog.counts()[INDEXED] < 2:
        return None
    shared = _Shared(ws.root / PROGRESS, method)

    def both(phase: str, done: int, total: int) -> None:
        shared(phase, done, total)
        if progress is not None:
            progress(phase, done, total)

    try:
        return find(ws, method, progress=both)
    finally:
        shared.close()


PROGRESS = "duplicates-progress.json"
PROGRESS_EVERY = 0.5  # seconds between two writes of the shared progress
PROGRESS_STALE = 120.0  # a progress not written for this long is of a process that died


class _Shared:
    """Writes the progress of finding the groups to a file, at most every PROGRESS_EVERY
    seconds, and removes it when done."""

    def __init__(self, path, method: str):
        self.path, self.method, self.last = path, method, 0.0
        self("starting", 0, 0)

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.time()
        if now - self.last < PROGRESS_EVERY and 0 < done < total:
            return
        self.last = now
        try:
            write_json(self.path, {"method": self.method, "phase": phase, "done": done,
                                   "total": total, "pid": os.getpid(), "time": now})
        except ImgSearchError as e:  # a read-only index: nobody to tell
            LOG.debug("progress not shared: %s", e)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def finding(ws) -> dict | None:
    """The progress of an `imgsearch index` finding the groups now (method, phase, done,
    total), or None: none running (a progress left by a process that died, or not written
    for PROGRESS_STALE seconds, is none)."""
    try:
        data = json.loads((ws.root / PROGRESS).read_text())
        pid, at = int(data["pid"]), float(data["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if time.time() - at > PROGRESS_STALE or not _alive(pid):
        return None
    return {k: data.get(k) for k in ("method", "phase", "done", "total")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process, alive
        pass
    return True


def from_dict(data: dict) -> Duplicates:
    """The Duplicates that ``Duplicates.as_dict`` wrote."""
    def member(m: dict) -> Member:
        box = m.get("box")
        return Member(**{**m, "box": tuple(tuple(xy) for xy in box) if box else None})

    groups = [Group(member(g["keeper"]), tuple(member(m) for m in g["others"]),
                    g["keeper_reason"]) for g in data["groups"]]
    return Duplicates(data["method"], data["threshold"], data["threshold_from"], groups,
                      data["images"], data["verified"])
