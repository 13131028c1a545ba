"""Domain errors. Library code raises these; only the CLI turns them into messages and exit
codes."""


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
