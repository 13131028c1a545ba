"""The on-disk layout of one named index, and how a name or path finds it.

    indexes/NAME/
      config.json          IndexConfig (input size, code size, thresholds)
      catalog.db           SQLite catalog (catalog.py)
      pixels.u8            the image cache: resized pixels of every image, by catalog id
                           (imagecache.py)
      methods/METHOD/      one folder per method:
        index.faiss        the vector index (FAISS) of codes under catalog ids
        state.json         MethodState: the ingest generation it is synced to, index type, dim
        ...                what the embedder saves (pca.npz, model.pt)
      training/METHOD.pt   the resumable training checkpoint of a learned method
      training/METHOD.progress.json   how far its training is, while it has not finished
      lock                 the writer's lock (store.WriteLock)

Every new version of a method folder (a first build, --rebuild, a new model, or an update with
new codes) is written in ``methods/.METHOD.staging/`` and swapped in under the commit lock
(store.py), so a reader or a killed run only ever sees the old folder or the new one: never a
new model beside an old index, nor an index ahead of its state.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cached_property
from pathlib import Path

from . import methods, store
from .catalog import Catalog
from .config import IndexConfig
from .errors import ConfigMismatch, IndexFileError, IndexNotFound, MethodNotBuilt
from .imagecache import ImageCache
from .store import MethodState

LOG = logging.getLogger(__name__)

DEFAULT_NAME = "default"


def indexes_home() -> Path:
    """Where named indexes live: $IMGSEARCH_HOME, else ./indexes."""
    return Path(os.environ.get("IMGSEARCH_HOME", "indexes"))


def resolve(name_or_path: str | os.PathLike | None) -> Path:
    """A bare name means ``indexes_home()/NAME``; anything with a slash is a path."""
    value = os.fspath(name_or_path) if name_or_path is not None else DEFAULT_NAME
    if os.sep in value or "/" in value or value in (".", ".."):
        return Path(value)
    return indexes_home() / value


class Workspace:
    """One index folder (what the CLI calls an index): its config, catalog, image cache and
    per-method folders. Durability (locks, staged swaps, recovery) is store.py's."""

    CONFIG, CATALOG, CACHE, METHODS = "config.json", "catalog.db", "pixels.u8", "methods"
    INDEX_FILE = "index.faiss"  # a method's vector index, in its folder

    def __init__(self, root: Path, config: IndexConfig):
        self.root = Path(root)
        self.config = config

    @classmethod
    def open(cls, name_or_path: str | os.PathLike | None) -> Workspace:
        """An existing index; IndexNotFound if there is none."""
        root = resolve(name_or_path)
        cfg_path = root / cls.CONFIG
        if not cfg_path.is_file():
            raise IndexNotFound(f"no index at {root}; build one with `imgsearch index PHOTOS_DIR`")
        try:
            return cls(root, IndexConfig.load(cfg_path))
        except (ValueError, TypeError) as e:
            raise IndexFileError(f"config {cfg_path} is unreadable ({e})") from e

    @classmethod
    def create(cls, name_or_path: str | os.PathLike | None,
               config: IndexConfig | None = None) -> Workspace:
        """Open the index, creating it with ``config`` if it does not exist yet.

        Asking for a config other than the stored one is refused: the cached pixels and every
        code depend on it.
        """
        root = resolve(name_or_path)
        if (root / cls.CONFIG).is_file():
            ws = cls.open(root)
            if config is not None and config != ws.config:
                raise ConfigMismatch(
                    f"index {root} was built with {ws.config}; use another --index or --rebuild"
                )
            return ws
        if root.exists() and not root.is_dir():
            raise IndexFileError(f"{root} exists and is not a folder")
        with store.faults(root, "creating the index folder"):
            root.mkdir(parents=True, exist_ok=True)
        config = config or IndexConfig()
        config.save(root / cls.CONFIG)
        return cls(root, config)

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.root / self.CATALOG)

    @cached_property
    def cache(self) -> ImageCache:
        return ImageCache(self.root / self.CACHE, self.config.input_size)

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.close()
        if "cache" in self.__dict__:
            self.cache.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def writing(self, command: str, wait: float | None = None) -> Iterator[list[str]]:
        """Hold the index's write lock (store.WriteLock: ``command`` names the holder to a
        writer that waits; ``wait`` seconds at most, None: as long as it takes) with what a
        killed writer left finished or undone first; yields what recovery did."""
        with store.WriteLock(self.root, command, wait):
            yield self.recover()

    # -- methods ----------------------------------------------------------------------------
    def method_dir(self, method: str) -> Path:
        """The live folder of ``method``: its vector index, state and embedder files."""
        return self.root / self.METHODS / methods.get(method).name

    def index_path(self, method: str) -> Path:
        return self.method_dir(method) / self.INDEX_FILE

    @property
    def commit_lock(self) -> store.CommitLock:
        return store.CommitLock(self.root / self.METHODS / ".commit")

    def reading(self) -> AbstractContextManager[None]:
        """Hold while loading a method's state, embedder and vector index: they match."""
        return self.commit_lock.shared()

    def reader_dir(self, method: str) -> Path:
        """The folder a reader loads ``method`` from (store.reader_dir); hold ``reading()``."""
        return store.reader_dir(self.method_dir(method))

    def method_state(self, method: str, folder: Path | None = None) -> MethodState | None:
        """The state of a built method, or None if it is not built."""
        folder = folder or self.reader_dir(method)
        if not (folder / self.INDEX_FILE).is_file():
            return None
        return MethodState.load(folder)

    def has_model(self, method: str) -> bool:
        """Whether a learned method has its trained model in place."""
        return (self.method_dir(method) / methods.MODEL_FILE).is_file()

    def reset_catalog(self) -> Path:
        """Move an unreadable catalog aside (with its WAL files); return where it went."""
        self.__dict__.pop("catalog", None)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.root / f"{self.CATALOG}.corrupt-{stamp}"
        for suffix in ("", "-wal", "-shm"):
            src = self.root / (self.CATALOG + suffix)
            if src.exists():
                os.rename(src, Path(str(target) + suffix))
        for state in (self.root / self.METHODS).glob(f"*/{MethodState.FILE}"):
            state.unlink()  # codes are keyed by the old catalog's ids: every method rebuilds
        return target

    def training_checkpoint(self, method: str) -> Path:
        """The resumable checkpoint (with optimizer state) of a learned method's training."""
        return self.root / "training" / f"{methods.get(method).name}.pt"

    def training_progress_file(self, method: str) -> Path:
        """Where a training run says how far it is, for ``info``, queries and the page."""
        return self.root / "training" / f"{methods.get(method).name}.progress.json"

    def training(self) -> dict[str, dict]:
        """The learned methods whose training has not finished: each one's step, planned steps
        and best self-check so far, as its run last wrote them, and its ``state``: "training"
        while that run goes on, else "interrupted" (stopped by Ctrl-C or an error, or its
        process is gone: ``imgsearch index`` or ``imgsearch train`` resumes it from its
        checkpoint)."""
        import json

        out = {}
        for path in sorted((self.root / "training").glob("*.progress.json")):
            try:
                t = json.loads(path.read_text())
                method = str(t["method"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being replaced, or damaged: the next write mends it
            state = self.method_dir(method) / MethodState.FILE
            if state.is_file() and state.stat().st_mtime > float(t.get("updated") or 0):
                continue  # built since, another way (an imported model): not training
            alive = t.get("state") != "interrupted" and _alive(t.get("pid"))  # or killed
            out[method] = {**t, "state": "training" if alive else "interrupted"}
        return out

    # -- swapping a method folder in whole --------------------------------------------------
    def staging_dir(self, method: str, keep_embedder: bool = False) -> Path:
        """A folder to build the next version of ``method`` in: empty, or holding hard links
        to the live embedder files when only the vector index and its state change."""
        live = self.method_dir(method)
        keep = ()
        if keep_embedder and live.is_dir():
            keep = tuple(f.name for f in live.iterdir() if f.is_file()
                         and f.name not in (self.INDEX_FILE, MethodState.FILE))
        return store.stage(live, keep)

    def commit_method(self, method: str, staged: Path) -> None:
        """Swap a fully built staging folder in as ``method``'s folder."""
        store.commit(self.method_dir(method), staged, self.commit_lock)

    def recover(self) -> list[str]:
        """Finish or undo what a killed writer left (store.recover); hold the write lock."""
        return store.recover(self.root, [self.method_dir(m) for m in methods.names()],
                             self.commit_lock)

    def built_methods(self) -> list[str]:
        return [m for m in methods.names() if self.method_state(m) is not None]

    def preferred_method(self) -> str:
        """The method a query uses when none is named (``preference`` says why)."""
        return self.preference()[0]

    def preference(self) -> methods.Choice:
        """The default query method, why, and a learned method's lead over the best baseline:
        the built method that scored best on the self-check of this collection
        (selfcheck.py), a learned one only by a lead beyond the self-check's noise. The score
        is the mean, over the held-out images, of each one's hit rates on its edited copies
        and on other shots of its scene (selfcheck.Shots), where every scored method has both;
        else the copies' alone (an index built before the shots were measured)."""
        from .holdout import MIN_IMAGES

        states = {m: self.method_state(m) for m in self.built_methods()}
        if not states:
            raise MethodNotBuilt(f"index {self.root} has no method built; "
                                 "run `imgsearch index PHOTOS_DIR`")
        images = self.catalog.counts()["indexed"]
        scored = [s for s in states.values() if s.selfcheck is not None]
        if scored and all(s.shots and s.selfcheck_outcome for s in scored):
            # both measures, copies and other shots, for every scored method: they decide
            return methods.choose_measured(
                {m: [s.selfcheck_outcome, s.shots] if s.selfcheck is not None else None
                 for m, s in states.items()}, images, MIN_IMAGES)
        return methods.choose({m: s.selfcheck for m, s in states.items()}, images, MIN_IMAGES,
                              {m: s.selfcheck_se for m, s in states.items()},
                              {m: s.selfcheck_outcome for m, s in states.items()})

    def summary(self) -> dict:
        """What ``imgsearch info`` and the page's ``/api/info`` both show: the catalog's
        counts, the input size, each built method's state (self-check ± its standard error,
        thresholds ...) and the default query method with the reason."""
        built = {m: self.method_state(m).as_dict() for m in self.built_methods()}
        preferred, because, lead = self.preference() if built else (None, None, None)
        return {"counts": self.catalog.counts(), "input_size": self.config.input_size,
                "methods": built, "preferred": preferred, "preferred_because": because,
                "preferred_lead": lead,
                "training": self.training()}

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())


def _alive(pid) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True

