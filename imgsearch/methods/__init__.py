"""Methods: how an image becomes a code. The Embedder interface (base.py), the raw-pixel and
PCA baselines (baselines.py), learned codes (learned.py) and the one registry (registry.py)."""

from .base import MODEL_FILE, BatchSource, Decodes, Embedder, Reconstructs
from .registry import (
           METHODS,
           Choice,
           Method,
           by_preference,
           choose,
           choose_measured,
           get,
           names,
           open_embedder,
)

__all__ = ["METHODS", "MODEL_FILE", "BatchSource", "Choice", "Decodes", "Embedder", "Method",
           "Reconstructs", "by_preference", "choose", "choose_measured", "get", "names",
           "open_embedder"]
