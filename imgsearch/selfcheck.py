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

import functools
import hashlib
import math
from collections.abc import Callable

import numpy as np
import torch

from . import augment as A
from .stats import standard_error

COPIES = 12  # edited copies per held-out image: every edit once (the score's noise is mostly
#               which edits a photo gets; docs/RESULTS.md, "Self-check noise")
SMALL_HELD = 100  # fewer held-out images than this get twice the copies (copies_for)


def copies_for(held: int) -> int:
    """Edited copies of each of ``held`` held-out images: COPIES, and where few images are
    held out (a small collection), twice as many (the usual edits, then MORE): with 40 held-out
    images that brings two methods' paired standard error from 0.022 to 0.019 (docs/RESULTS.md,
    "The default on the same copies")."""
    return COPIES if held >= SMALL_HELD else 2 * COPIES


def _edit(x: torch.Tensor, name: str, rng: np.random.Generator) -> torch.Tensor:
    """One named edit, with the strength its name says and a seeded position where it has one
    ("crop 60%", "rotate -5°", "brightness +30%", "JPEG q30", "blur 0.6"); "A & B" is edit A,
    then B."""
    if " & " in name:
        for part in name.split(" & "):
            x = _edit(x, part, rng)
        return x
    b = len(x)
    t = lambda v: torch.full((b,), float(v))  # noqa: E731
    no = torch.zeros(b, dtype=torch.bool)
    kind, _, amount = name.partition(" ")
    if kind == "crop" and amount.endswith("%"):  # keep that share of each side
        side = int(amount[:-1]) / 100
        cx, cy = (torch.from_numpy(rng.uniform(-1, 1, (2, b))).float() * (1 - side))
        return A.affine(x, t(side), t(side), t(0), cx, cy, no)
    if name == "mirror":
        return A.affine(x, t(1), t(1), t(0), t(0), t(0), ~no)
    if kind == "rotate" and amount.endswith("°"):
        return A.affine(x, t(1), t(1), t(math.radians(float(amount[:-1]))), t(0), t(0), no)
    if kind in ("brightness", "contrast", "saturation") and amount.endswith("%"):
        f = [1.0, 1.0, 1.0]
        f[("brightness", "contrast", "saturation").index(kind)] = 1 + int(amount[:-1]) / 100
        return A.jitter(x, t(f[0]), t(f[1]), t(f[2]), t(0))
    if name == "grayscale":
        return A.to_grey(x)
    if kind == "JPEG" and amount.startswith("q"):
        return A.jpeg(x, t(int(amount[1:])))
    if kind == "blur":
        return A.blur(x, t(float(amount or 1.0)))
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
#: The same edits at other strengths and positions, for more copies of each held-out image
#: than there are edits above (a small collection's self-check: copies_for). The duplicate
#: threshold is calibrated on the edits above alone (SelfCheck.usual).
MORE = ("crop 50%", "crop 70%", "crop 90%", "mirror & crop 90%", "rotate -5°",
        "brightness -25%", "contrast +30%", "saturation -50%", "JPEG q50", "blur 0.6",
        "caption", "crop 85% & JPEG q40 & brightness -20%")
GREY_MORE = ("crop 50%", "crop 70%", "crop 90%", "mirror & crop 90%", "rotate -5°",
             "brightness -25%", "contrast +30%", "JPEG q50", "blur 0.6")


def edited_copies(images: np.ndarray, copies: int, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``copies`` different edits of each (N, S, S, C) uint8 image: (N * copies, S, S, C) uint8
    copies, for each the position of its original, and whether it is one of EDITS (beyond
    them, the same edits at other strengths: MORE)."""
    rng = np.random.default_rng(seed)
    usual = EDITS if images.shape[-1] == 3 else GREY_EDITS
    names = usual + (MORE if images.shape[-1] == 3 else GREY_MORE)
    chosen = np.stack([rng.choice(len(usual), size=min(copies, len(usual)), replace=False)
                       for _ in images])  # (N, copies)
    if copies > COPIES:  # and the same edits at other strengths (grey images: 9 usual ones)
        more, extra = min(copies, len(names)) - len(usual), np.random.default_rng([seed, 1])
        chosen = np.concatenate([chosen, len(usual) + np.stack([
            extra.choice(len(names) - len(usual), size=more, replace=False)
            for _ in images])], axis=1)  # drawn apart: the usual edits stay as with fewer
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
    return out, origin, flat < len(usual)


class Retrieval:
    """Queries, each searched among a database for its one right answer (``truth``, the
    position of its held-out image: the database starts with the held-out images' own), and
    what is kept of a method's hits: recall@1, its cluster-robust error, each held-out image's
    hits under the key of these queries (``outcome``)."""

    def __init__(self, queries: np.ndarray, truth: np.ndarray, database: np.ndarray,
                 held: int):
        self.queries, self.truth, self.database, self.held = queries, truth, database, held
        # which queries among which images: two methods' scores with the same key come from
        # the same queries, so their difference is judged pair by pair (stats.paired_lead)
        digest = hashlib.blake2b(digest_size=8)
        for a in (self.queries, self.database):
            digest.update(repr(a.shape).encode())
            digest.update(np.ascontiguousarray(a).data)
        self.key = digest.hexdigest()
        self.copies = len(self.queries) // self.held  # each held-out image's queries

    def outcome(self, hits: np.ndarray) -> dict:
        """What is kept of a method's score for comparing it with another's later
        (stats.paired): the key of these queries, the queries per image and each image's hits."""
        return {"key": self.key, "copies": self.copies, "per_image": self.per_image(hits)}

    def __call__(self, encode: Callable[[np.ndarray], np.ndarray]) -> float:
        return self.measure(encode)[0]

    def measure(self, encode: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
        """(score, its standard error). The queries of one held-out image succeed or fail
        together more than independent trials would, so the error is the cluster-robust one
        of a ratio (each held-out image a cluster), not the binomial one."""
        return self.measure_codes(*self.codes(encode))

    def codes(self, encode: Callable[[np.ndarray], np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray]:
        """(the database's codes, the queries' codes) as ``encode`` makes them: what the score
        and the duplicate threshold (copies.calibration.calibrate) both rest on, encoded once."""
        return (np.asarray(encode(self.database), np.float32),
                np.asarray(encode(self.queries), np.float32))

    def measure_codes(self, db: np.ndarray, q: np.ndarray) -> tuple[float, float]:
        """``measure`` of codes made already (``codes``)."""
        return self.score(self.hits(db, q))

    def score(self, hits: np.ndarray) -> tuple[float, float]:
        """(recall@1, its standard error) of the queries' ``hits``."""
        return float(hits.mean()), standard_error(hits, self.truth)

    def hits(self, db: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Whether each query's nearest code (``codes``) is its own right answer."""
        return nearest_neighbours(db, q) == self.truth

    def per_image(self, hits: np.ndarray) -> list[int]:
        """Hits of each held-out image's queries: what two methods' paired lead is computed
        from (stats.paired_lead)."""
        return np.bincount(self.truth, hits, self.held).astype(int).tolist()


class SelfCheck(Retrieval):
    """recall@1 of edited copies of ``held`` images among ``held`` + ``others``."""

    def __init__(self, held: np.ndarray, others: np.ndarray, copies: int | None = None,
                 seed: int = 0):
        if len(held) == 0:
            raise ValueError("a self-check needs held-out images")
        copies = copies_for(len(held)) if copies is None else copies
        queries, truth, self.usual = edited_copies(held, copies, seed)
        super().__init__(queries, truth,
                         np.concatenate([held, others]) if len(others) else held, len(held))
        self.seed = seed

    @functools.cached_property
    def shots(self) -> Shots:
        """The other-shots measure (Shots) of the same held-out images and distractors."""
        return Shots(self.database[: self.held], self.database[self.held :], self.seed)


#: Other shots of one scene, as a camera that moved a little between them takes them: each
#: keeps SHOT_SIDE of each side of the scene, the anchor at its centre, the others shifted
#: towards a side or a corner by up to a fifth of the picture, or zoomed in; each with its own
#: exposure and colour and a turn of up to 3 degrees. Neither of two shots holds the other.
SHOT_SIDE = 0.6
SHOTS = ((-1, 0, SHOT_SIDE), (1, 0, SHOT_SIDE), (0, -1, SHOT_SIDE), (0, 1, SHOT_SIDE),
         (-1, -1, SHOT_SIDE), (1, 1, SHOT_SIDE), (0, 0, 0.42))  # (x, y) offset, side


def shot(images: np.ndarray, dx: float, dy: float, side: float, rng: np.random.Generator
         ) -> np.ndarray:
    """One shot of each (N, S, S, C) uint8 image's scene: the share ``side`` of each side,
    offset by (dx, dy) of what the crop leaves (-1 to 1), with a random exposure, colour and
    small turn."""
    b = len(images)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    f = lambda lo, hi: torch.from_numpy(rng.uniform(lo, hi, b)).float()  # noqa: E731
    t = lambda v: torch.full((b,), float(v))  # noqa: E731
    x = A.affine(x, t(side), t(side), f(-0.05, 0.05), t(dx * (1 - side)), t(dy * (1 - side)),
                 torch.zeros(b, dtype=torch.bool))
    if x.shape[1] == 3:
        x = A.jitter(x, f(0.8, 1.2), f(0.85, 1.15), f(0.8, 1.25), t(0))
    else:
        x = A.jitter(x, f(0.8, 1.2), f(0.85, 1.15), t(1), t(0))
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class Shots(Retrieval):
    """recall@1 of other shots of each held-out image's scene (SHOTS), each searched for the
    anchor shot of its scene among the anchor shots of ``held`` + ``others``: what a person
    asks of "similar", the other photos of one scene, where the copies ask for one picture.
    ``rounds`` of SHOTS, each with its own exposures and turns: by default as many as the
    copies are multiples of COPIES (two for a small collection: copies_for)."""

    def __init__(self, held: np.ndarray, others: np.ndarray, seed: int = 0,
                 rounds: int | None = None):
        if len(held) == 0:
            raise ValueError("the shots measure needs held-out images")
        rounds = copies_for(len(held)) // COPIES if rounds is None else rounds
        rng = np.random.default_rng([seed, 2])
        every = np.concatenate([held, others]) if len(others) else held
        anchors = shot(every, 0, 0, SHOT_SIDE, rng)  # the database: nothing marks the held
        queries = np.stack([shot(held, dx, dy, side, rng) for _ in range(rounds)
                            for dx, dy, side in SHOTS], 1)  # each round its own light
        truth = np.repeat(np.arange(len(held)), rounds * len(SHOTS))
        super().__init__(queries.reshape(-1, *held.shape[1:]), truth, anchors, len(held))



def nearest_neighbours(db: np.ndarray, queries: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Position in ``db`` of each query's nearest code (L2), exactly, a chunk at a time."""
    sq = (db * db).sum(1)
    out = []
    for s in range(0, len(queries), chunk):
        q = queries[s : s + chunk]
        out.append(np.argmin(sq[None] - 2 * q @ db.T, axis=1))  # |q|^2 is the same per row
    return np.concatenate(out) if out else np.empty(0, np.int64)
