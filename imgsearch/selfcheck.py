"""A score of a method on the user's own collection that needs no labels.

Some of the collection's images are held out (never trained on; holdout.py chooses them by
content). Each gets a few edited copies (crops to 60 or 80% of the side, a mirror image,
rotation, colour changes, grayscale, JPEG, blur, a caption: the edits people make to photos,
at the strength they make them), and every copy is searched among the collection: held-out
originals plus other images as distractors. The score is recall@1, the fraction of copies
whose nearest neighbour is their own original. Training scores the model this way every epoch
(keeping the best weights, stopping early), and every built method gets the same score, so an
index can answer with whichever method finds copies best on its own photos.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
import torch

from . import augment as A
from .stats import standard_error

COPIES = 12  # edited copies per held-out image: every edit once (the score's noise is mostly
#               which edits a photo gets; docs/RESULTS.md, "Self-check noise")


def _edit(x: torch.Tensor, name: str, rng: np.random.Generator) -> torch.Tensor:
    """One named edit, with fixed strength and a seeded position where it has one; "A & B" is
    edit A, then B."""
    if " & " in name:
        for part in name.split(" & "):
            x = _edit(x, part, rng)
        return x
    b = len(x)
    t = lambda v: torch.full((b,), float(v))  # noqa: E731
    no = torch.zeros(b, dtype=torch.bool)
    if name.startswith("crop ") and name.endswith("%"):  # keep that share of each side
        side = int(name[5:-1]) / 100
        cx, cy = (torch.from_numpy(rng.uniform(-1, 1, (2, b))).float() * (1 - side))
        return A.affine(x, t(side), t(side), t(0), cx, cy, no)
    if name == "mirror":
        return A.affine(x, t(1), t(1), t(0), t(0), t(0), ~no)
    if name == "rotate 10°":
        return A.affine(x, t(1), t(1), t(math.radians(10)), t(0), t(0), no)
    if name == "brightness +30%":
        return A.jitter(x, t(1.3), t(1), t(1), t(0))
    if name == "contrast -30%":
        return A.jitter(x, t(1), t(0.7), t(1), t(0))
    if name == "saturation +50%":
        return A.jitter(x, t(1), t(1), t(1.5), t(0))
    if name == "grayscale":
        return A.to_grey(x)
    if name == "JPEG q30":
        return A.jpeg(x, t(30))
    if name == "blur":
        return A.blur(x, t(1.0))
    if name == "caption":
        stamps = A.caption_bank(b, x.shape[-1], x.shape[1], int(rng.integers(1 << 30)))
        return A.overlay(x, stamps)
    if name == "crop+JPEG+brightness":
        x = _edit(x, "crop 80%", rng)
        return A.jitter(A.jpeg(x, t(40)), t(1.3), t(1), t(1), t(0))
    raise KeyError(name)


#: The edits people make to photos, at the strength they make them: crops keep 60 or 80% of
#: each side (36 or 64% of the picture).
EDITS = ("crop 60%", "crop 80%", "mirror", "rotate 10°", "brightness +30%", "contrast -30%",
         "saturation +50%", "grayscale", "JPEG q30", "blur", "caption", "crop+JPEG+brightness")
GREY_EDITS = ("crop 60%", "crop 80%", "mirror", "rotate 10°", "brightness +30%",
              "contrast -30%", "JPEG q30", "blur", "crop+JPEG+brightness")
#: Two edits at once, for more copies of each held-out image than there are single edits
#: (a small collection's self-check: SelfCheck.copies_for); the duplicate threshold is
#: calibrated on the single edits alone (SelfCheck.single).
COMBOS = ("crop 80% & grayscale", "mirror & JPEG q30", "rotate 10° & brightness +30%",
          "crop 60% & saturation +50%", "mirror & caption", "blur & contrast -30%",
          "crop 80% & mirror", "JPEG q30 & caption", "grayscale & rotate 10°", "crop 60% & blur",
          "brightness +30% & contrast -30%", "mirror & crop 60%")
GREY_COMBOS = ("crop 80% & mirror", "mirror & JPEG q30", "rotate 10° & brightness +30%",
               "crop 60% & blur", "blur & contrast -30%", "JPEG q30 & rotate 10°",
               "mirror & crop 60%", "brightness +30% & contrast -30%", "crop 80% & JPEG q30")


def edited_copies(images: np.ndarray, copies: int, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``copies`` different edits of each (N, S, S, C) uint8 image: (N * copies, S, S, C) uint8
    copies, for each the position of its original, and whether it is a single edit (beyond
    the single edits, pairs of them: COMBOS)."""
    rng = np.random.default_rng(seed)
    singles = EDITS if images.shape[-1] == 3 else GREY_EDITS
    names = singles + (COMBOS if images.shape[-1] == 3 else GREY_COMBOS)
    chosen = np.stack([rng.choice(len(singles), size=min(copies, len(singles)), replace=False)
                       for _ in images])  # (N, copies)
    if copies > len(singles):  # and pairs of edits
        more, pairs = min(copies, len(names)) - len(singles), np.random.default_rng([seed, 1])
        chosen = np.concatenate([chosen, len(singles) + np.stack([
            pairs.choice(len(names) - len(singles), size=more, replace=False)
            for _ in images])], axis=1)  # drawn apart: the single edits stay as with fewer
    out = np.empty((chosen.size, *images.shape[1:]), np.uint8)
    origin = np.repeat(np.arange(len(images)), chosen.shape[1])
    flat = chosen.reshape(-1)
    for e, name in enumerate(names):  # one batched edit per kind
        rows = np.flatnonzero(flat == e)
        if len(rows) == 0:
            continue
        x = torch.from_numpy(images[origin[rows]]).permute(0, 3, 1, 2).float() / 255
        y = _edit(x, name, rng).clamp(0, 1)
        out[rows] = (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out, origin, flat < len(singles)


class SelfCheck:
    """recall@1 of edited copies of ``held`` images among ``held`` + ``others``."""

    def __init__(self, held: np.ndarray, others: np.ndarray, copies: int = COPIES,
                 seed: int = 0):
        if len(held) == 0:
            raise ValueError("a self-check needs held-out images")
        self.queries, self.truth, self.single = edited_copies(held, copies, seed)
        self.held = len(held)  # the database starts with the held-out originals
        self.database = np.concatenate([held, others]) if len(others) else held
        # which copies among which images: two methods' scores with the same key come from
        # the same queries, so their difference is judged pair by pair (stats.paired_lead)
        digest = hashlib.blake2b(digest_size=8)
        for a in (self.queries, self.database):
            digest.update(repr(a.shape).encode())
            digest.update(np.ascontiguousarray(a).data)
        self.key = digest.hexdigest()
        self.copies = len(self.queries) // self.held  # each held-out image's

    def outcome(self, hits: np.ndarray) -> dict:
        """What is kept of a method's self-check for comparing it with another's later
        (stats.paired): the key of these copies, the copies per image and each image's hits."""
        return {"key": self.key, "copies": self.copies, "per_image": self.per_image(hits)}

    def __call__(self, encode: Callable[[np.ndarray], np.ndarray]) -> float:
        return self.measure(encode)[0]

    def measure(self, encode: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
        """(score, its standard error). The copies of one held-out image succeed or fail
        together more than independent trials would, so the error is the cluster-robust one
        of a ratio (each held-out image a cluster), not the binomial one."""
        return self.measure_codes(*self.codes(encode))

    def codes(self, encode: Callable[[np.ndarray], np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray]:
        """(the database's codes, the copies' codes) as ``encode`` makes them: what the score
        and the duplicate threshold (copies.calibration.calibrate) both rest on, encoded once."""
        return (np.asarray(encode(self.database), np.float32),
                np.asarray(encode(self.queries), np.float32))

    def measure_codes(self, db: np.ndarray, q: np.ndarray) -> tuple[float, float]:
        """``measure`` of codes made already (``codes``)."""
        return self.score(self.hits(db, q))

    def score(self, hits: np.ndarray) -> tuple[float, float]:
        """(recall@1, its standard error) of the copies' ``hits``."""
        return float(hits.mean()), standard_error(hits, self.truth)

    def hits(self, db: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Whether each copy's nearest code (``codes``) is its own original."""
        return nearest_neighbours(db, q) == self.truth

    def per_image(self, hits: np.ndarray) -> list[int]:
        """Hits of each held-out image's copies: what two methods' paired lead is computed
        from (stats.paired_lead)."""
        return np.bincount(self.truth, hits, self.held).astype(int).tolist()


def nearest_neighbours(db: np.ndarray, queries: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Position in ``db`` of each query's nearest code (L2), exactly, a chunk at a time."""
    sq = (db * db).sum(1)
    out = []
    for s in range(0, len(queries), chunk):
        q = queries[s : s + chunk]
        out.append(np.argmin(sq[None] - 2 * q @ db.T, axis=1))  # |q|^2 is the same per row
    return np.concatenate(out) if out else np.empty(0, np.int64)
