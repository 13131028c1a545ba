"""Domain errors. Library code raises these; only the CLI turns them into messages and exit
codes."""

from __future__ import annotations


class ImgSearchError(Exception):
    """Base class for every error imgsearch reports to a user in one line."""


class IndexNotFound(ImgSearchError):
    """The named index does not exist."""


class MethodNotBuilt(ImgSearchError):
    """The index has no codes for the requested method."""


class UnknownMethod(ImgSearchError):
    """The method name is not one imgsearch knows."""


class ImageLoadError(ImgSearchError):
    """An image file could not be read, decoded or converted."""


class CatalogError(ImgSearchError):
    """The SQLite catalog is missing, corrupt or of an unknown schema version."""


class IndexFileError(ImgSearchError):
    """A FAISS index or embedder file is missing or corrupt."""


class ConfigMismatch(ImgSearchError):
    """A setting conflicts with the one stored in the index."""


class IndexLocked(ImgSearchError):
    """Another process is writing to the index."""


class FileChanging(ImgSearchError):
    """A file kept changing while it was read (still being written)."""


class CacheMiss(ImgSearchError):
    """The image cache holds no pixels for a catalog row."""


class TrainingDiverged(ImgSearchError):
    """Training produced a loss that is not a finite number."""


class EngineError(ImgSearchError):
    """The compute engine (Ray) is missing, unreachable, or failed after its retries."""


class MachineFault(ImgSearchError):
    """A fault of the machine, not of the photos: a full disk, a folder that may not be written,
    a file that may not be read. Nothing was changed by the step that met it."""


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


class DiskFull(MachineFault):
    """The disk (or the user's quota) is full."""

    def __init__(self, path, doing: str, need: int | None = None):
        self.path, self.doing, self.need = path, doing, need
        about = f"; this step needs about {_size(need)} more" if need else ""
        super().__init__(f"no space left on the disk of {path} while {doing}{about}. Free "
                         "some space (or use an --index on another disk) and run the same "
                         "command again: the index is as it was before this step")

    def needing(self, need: int) -> DiskFull:
        """The same fault, with an estimate of the space the step needs."""
        return DiskFull(self.path, self.doing, need)


class NotWritable(MachineFault):
    """A folder or file imgsearch must write may not be written."""

    def __init__(self, path, doing: str, reason: str):
        super().__init__(f"cannot write {path} while {doing} ({reason}); make it writable by "
                         "this user (chmod u+w), or use another --index")


class NotReadable(MachineFault):
    """A file of the index may not be read."""

    def __init__(self, path, reason: str):
        super().__init__(f"cannot read {path} ({reason}); make it readable by this user "
                         "(chmod u+r)")
