"""The embedder interface: images in, float32 codes out, compared by L2 distance.

An embedder is fitted on the collection's cached pixels (or trained, for learned methods),
encodes batches of (B, S, S, 3) uint8 images to (B, dim) float32 codes, and saves itself into
its method's folder. What some embedders can do besides is a protocol of its own:
``Reconstructs`` (draw an image back from its code) and ``Decodes`` (draw an image from any
code, so from samples of a prior too).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

#: A learned method's trained model (weights and config), in its method folder.
MODEL_FILE = "model.pt"
#: A re-iterable source of (B, S, S, 3) uint8 batches: called once per pass over the data.
BatchSource = Callable[[], Iterator[np.ndarray]]


class Embedder(ABC):
    """Images in, float32 codes out."""

    name: str
    dim: int
    #: images its fit needs: a seeded sample of at most this many (build.sample_ids) is all
    #: it is given; 0: it fits on the whole collection, or on nothing
    fit_sample: int = 0

    def fit(self, batches: BatchSource, count: int) -> None:  # noqa: B027 - optional
        """Learn from the collection (``count`` images in ``batches``); a no-op by default."""

    @abstractmethod
    def encode(self, images: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 -> (B, dim) float32."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write whatever the method's loader needs into ``folder``."""


@runtime_checkable
class Reconstructs(Protocol):
    """An embedder that can draw an image back from its own code."""

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 -> (B, s, s, 3) float32 in [0, 1], as the code keeps them."""


@runtime_checkable
class Decodes(Protocol):
    """An embedder that can draw an image from any code (a sample, an interpolation)."""

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(B, dim) float32 -> (B, s, s, 3) float32 in [0, 1]."""
