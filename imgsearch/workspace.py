"""The on-disk layout of one named index, and how a name or path finds it.

    indexes/NAME/
      config.json          IndexConfig (input size, code size, thresholds)
      catalog.db           SQLite catalog (catalog.py)
      pixels.u8            resized pixels of every image, by catalog id (pixelcache.py)
      methods/METHOD/      one folder per method:
        index.faiss        the FAISS index of codes under catalog ids
        state.json         the ingest generation the index is synced to, its kind and dim
        ...                what the embedder saves (pca.npz, model.pt)
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

from .catalog import Catalog
from .config import ALL_METHODS, IndexConfig
from .errors import ConfigMismatch, IndexFileError, IndexNotFound, UnknownMethod
from .files import write_json
from .pixelcache import PixelCache

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

    def method_state(self, method: str) -> dict | None:
        """What state.json says of a built method, or None if it is not built."""
        path = self.method_dir(method) / "state.json"
        if not path.is_file() or not self.index_path(method).is_file():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError as e:
            raise IndexFileError(
                f"{path} is unreadable; re-run `imgsearch index --rebuild`"
            ) from e

    def save_method_state(self, method: str, state: dict) -> None:
        write_json(self.method_dir(method) / "state.json", state)

    def built_methods(self) -> list[str]:
        return [m for m in ALL_METHODS if self.method_state(m) is not None]

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
