"""The on-disk layout of one named index, and how a name or path finds it.

    indexes/NAME/
      config.json          IndexConfig (input size, code size, thresholds)
      catalog.db           SQLite catalog (catalog.py)
      pixels.u8            resized pixels of every image, by catalog id (pixelcache.py)
      methods/METHOD/      one folder per method:
        index.faiss        the FAISS index of codes under catalog ids
        state.json         the ingest generation the index is synced to, its kind and dim
        ...                what the embedder saves (pca.npz, model.pt)
      training/KIND.pt     the resumable training checkpoint of a learned method
      lock                 the writer's lock (lock.py)

Every new version of a method folder (a first build, --rebuild, a new model, or an update with
new codes) is written in ``methods/.METHOD.staging/`` and swapped in under the commit lock, so a
reader or a killed run only ever sees the old folder or the new one: never a new model beside an
old index, nor an index ahead of its state.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cached_property
from pathlib import Path

from .catalog import Catalog
from .config import ALL_METHODS, IndexConfig
from .errors import ConfigMismatch, IndexFileError, IndexNotFound, UnknownMethod
from .files import write_json
from .pixelcache import PixelCache

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


def check_method(method: str) -> str:
    if method not in ALL_METHODS:
        raise UnknownMethod(f"unknown method {method!r}; choose one of {', '.join(ALL_METHODS)}")
    return method


class Workspace:
    """One index folder: its config, catalog, pixel cache and per-method files."""

    CONFIG, CATALOG, PIXELS, METHODS = "config.json", "catalog.db", "pixels.u8", "methods"

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
        root.mkdir(parents=True, exist_ok=True)
        config = config or IndexConfig()
        config.save(root / cls.CONFIG)
        return cls(root, config)

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.root / self.CATALOG)

    @cached_property
    def pixels(self) -> PixelCache:
        return PixelCache(self.root / self.PIXELS, self.config.input_size)

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.close()
        if "pixels" in self.__dict__:
            self.pixels.close()

    # -- methods ----------------------------------------------------------------------------
    def method_dir(self, method: str) -> Path:
        return self.root / self.METHODS / check_method(method)

    def index_path(self, method: str) -> Path:
        return self.method_dir(method) / "index.faiss"

    def reader_dir(self, method: str) -> Path:
        """The folder a reader loads ``method`` from: the live one, or, if a writer was killed
        between the two renames of a swap (no live folder), the complete build that
        ``recover()`` will put in place: the staged one if it is complete, else the old one.
        Call holding ``reading()``."""
        live = self.method_dir(method)
        if live.exists():
            return live
        staged, old = self._swap_dirs(method)
        if (staged / "state.json").is_file():
            return staged
        return old if old.is_dir() else live

    def _swap_dirs(self, method: str) -> tuple[Path, Path]:
        """(staging folder, previous folder moved aside) of a swap of ``method``."""
        live = self.method_dir(method)
        return live.with_name(f".{method}.staging"), live.with_name(f".{method}.old")

    def method_state(self, method: str, folder: Path | None = None) -> dict | None:
        """What state.json says of a built method, or None if it is not built."""
        folder = folder or self.reader_dir(method)
        path = folder / "state.json"
        if not path.is_file() or not (folder / "index.faiss").is_file():
            return None
        try:
            state = json.loads(path.read_text())
            int(state["gen"])
            return state
        except (ValueError, KeyError, TypeError) as e:
            raise IndexFileError(
                f"{path} is unreadable; re-run `imgsearch index PHOTOS_DIR --rebuild`"
            ) from e

    def save_method_state(self, method: str, state: dict, folder: Path | None = None) -> None:
        write_json((folder or self.method_dir(method)) / "state.json", state)

    def has_model(self, method: str) -> bool:
        """Whether a learned method has its trained model in place."""
        return (self.method_dir(method) / "model.pt").is_file()

    def reset_catalog(self) -> Path:
        """Move an unreadable catalog aside (with its WAL files); return where it went."""
        self.__dict__.pop("catalog", None)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.root / f"{self.CATALOG}.corrupt-{stamp}"
        for suffix in ("", "-wal", "-shm"):
            src = self.root / (self.CATALOG + suffix)
            if src.exists():
                os.rename(src, Path(str(target) + suffix))
        for state in (self.root / self.METHODS).glob("*/state.json"):
            state.unlink()  # codes are keyed by the old catalog's ids: every method rebuilds
        return target

    def training_checkpoint(self, kind: str) -> Path:
        return self.root / "training" / f"{check_method(kind)}.pt"

    # -- swapping a method folder in whole ------------------------------------------------------
    def staging_dir(self, method: str, keep_embedder: bool = False) -> Path:
        """A folder to build the next version of ``method`` in: empty, or holding hard links
        to the live embedder files (never modified in place, so linking is safe) when only
        the index and its state change."""
        path = self._swap_dirs(method)[0]
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        if keep_embedder:
            for f in self.method_dir(method).iterdir():
                if f.is_file() and f.name not in ("index.faiss", "state.json"):
                    os.link(f, path / f.name)
        return path

    @contextmanager
    def _commit_lock(self, shared: bool) -> Iterator[None]:
        """Readers (shared) load a method's files while no writer (exclusive) swaps them."""
        path = self.root / self.METHODS / ".commit"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def reading(self) -> AbstractContextManager[None]:
        """Hold while loading a method's state, embedder and index: they match each other."""
        return self._commit_lock(shared=True)

    def writing(self) -> AbstractContextManager[None]:
        """Hold while replacing a method's files in place (index, then state)."""
        return self._commit_lock(shared=False)

    def commit_method(self, method: str, staged: Path) -> None:
        """Swap a fully built staging folder in as ``method``'s folder."""
        live, old = self.method_dir(method), self._swap_dirs(method)[1]
        with self.writing():
            shutil.rmtree(old, ignore_errors=True)
            if live.exists():
                os.rename(live, old)
            os.rename(staged, live)
            _fsync_dir(live.parent)
        shutil.rmtree(old, ignore_errors=True)

    def recover(self) -> list[str]:
        """Finish or undo what a killed writer left; call holding the write lock.

        A staging folder that was complete (has its state.json) when the run died is swapped
        in; an incomplete one is discarded, and the previous folder put back if it was moved
        aside. Temporary files of interrupted atomic writes are removed.
        """
        done = []
        with self.writing():  # a reader may be loading from a staged or old folder
            for m in ALL_METHODS:
                live, (staged, old) = self.method_dir(m), self._swap_dirs(m)
                source = self.reader_dir(m)  # what readers use now becomes the live folder
                if source != live:
                    os.rename(source, live)
                    done.append(f"{m}: finished swapping in the new build" if source == staged
                                else f"{m}: restored the previous build")
                for leftover in (staged, old):
                    if leftover.exists():
                        shutil.rmtree(leftover, ignore_errors=True)
                        done.append(f"{m}: removed unfinished {leftover.name}")
        for tmp in self.root.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            done.append(f"removed temporary file {tmp.name}")
        for line in done:
            LOG.info("recovered %s: %s", self.root, line)
        return done

    def built_methods(self) -> list[str]:
        return [m for m in ALL_METHODS if self.method_state(m) is not None]

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
