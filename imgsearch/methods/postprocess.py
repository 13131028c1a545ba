"""Retrieval-time processing of codes, fitted on the collection and stored with the method, so
that the collection and every query are treated alike.

Steps, any of (in this order): ``flip`` (the code of an image averaged with the code of its
mirror image), ``center`` (subtract the collection's mean code), ``whiten`` (PCA-whitening
fitted on the collection's codes: rotate onto the principal axes and scale each to unit
variance, which gives every direction of variation an equal say; Jegou & Chum, "Negative
evidences and co-occurrences in image retrieval: the benefit of PCA and whitening", ECCV 2012),
its covariance shrunk towards a multiple of the identity by d/n (n codes of d dimensions; the
sample covariance of few codes overstates the spread of the top axes and understates the rest,
Ledoit & Wolf, "A well-conditioned estimator for large-dimensional covariance matrices", J.
Multivariate Anal. 2004), so a collection of fewer images than dimensions is whitened gently
and a large one fully), and ``l2`` (unit length: L2 distance then ranks as cosine similarity does).

``whiten=P`` whitens partly: each principal axis is scaled by its variance to the power -P/2,
so P = 1 is the whitening above (``whiten`` alone) and P = 0 only rotates. Full whitening
gives the directions that separate near neighbours as much say as those that separate
categories, which buys the top of a ranking and mixes the categories further down; a power
between can keep both (docs/RESULTS.md, issue 23, fifth round: for `ae`'s codes on
Fashion-MNIST P = 0.5 keeps full whitening's P@10 and lifts the whole-ranking mAP from 0.32 to
0.49; for codes trained with a strong invariance term it costs the top).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import IndexConfig
from ..errors import ConfigMismatch, IndexFileError
from ..store import replacing
from .base import BatchSource, Embedder

LOG = logging.getLogger(__name__)

STEPS = ("flip", "center", "whiten", "l2")
FILE = "post.npz"
MAX_FIT = 20_000  # codes sampled to fit the mean and the whitening
EPS = 1e-2  # whitening: eigenvalues below this fraction of the mean eigenvalue are floored


def _tokens(spec: str) -> dict[str, str]:
    """"center,whiten=0.5,l2" -> {step: its value or ""}; unknown steps refused."""
    out = {}
    for token in (t.strip() for t in spec.split(",")):
        if token and token != "none":
            name, _, value = token.partition("=")
            out[name.strip()] = value.strip()
    unknown = sorted(set(out) - set(STEPS))
    if unknown:
        raise ConfigMismatch(f"unknown post-processing {', '.join(unknown)}; choose from "
                             f"{', '.join(STEPS)} (whiten=P for a power P in 0..1) or none")
    if any(v for k, v in out.items() if k != "whiten"):
        raise ConfigMismatch(f"post-processing {spec!r}: only whiten takes a value (whiten=P)")
    return out


def parse(spec: str) -> tuple[str, ...]:
    """"center,whiten,l2" -> the steps, in their fixed order; "none" or "" -> none."""
    names = _tokens(spec)
    whiten_power(spec)  # a bad power is refused with the rest
    return tuple(s for s in STEPS if s in names)


def whiten_power(spec: str) -> float:
    """The whitening power of ``spec``: P of "whiten=P", 1.0 for "whiten" alone."""
    value = _tokens(spec).get("whiten") or "1"
    try:
        power = float(value)
    except ValueError:
        power = -1.0
    if not 0.0 <= power <= 1.0:
        raise ConfigMismatch(f"post-processing whiten={value}: the power is a number in 0..1")
    return power


def spec_of(steps: tuple[str, ...], power: float = 1.0) -> str:
    """The spec string of ``steps`` (the inverse of parse and whiten_power)."""
    return ",".join(f"whiten={power:g}" if s == "whiten" and power != 1.0 else s
                    for s in steps) or "none"


def processed(inner: Embedder, spec: str) -> Embedder:
    """``inner`` with the post-processing ``spec``, not yet fitted; ``inner`` if it is none."""
    steps = parse(spec)
    return Processed(inner, steps, power=whiten_power(spec)) if steps else inner


def shrinkage(n: int, d: int) -> float:
    """How much of the mean eigenvalue is added to every eigenvalue of the covariance of ``n``
    codes of ``d`` dimensions before whitening: d / n (0.0128 for 20,000 codes of 256-d;
    2.3 for 111)."""
    return d / max(n, 1)


class Processed(Embedder):
    """An embedder whose codes go through the post-processing ``steps`` (``power``: of the
    whitening, 1 for full)."""

    def __init__(self, inner: Embedder, steps: tuple[str, ...], mean: np.ndarray | None = None,
                 proj: np.ndarray | None = None, power: float = 1.0):
        self.inner, self.steps, self.power = inner, steps, power
        self.name, self.dim = inner.name, inner.dim
        self.mean, self.proj = mean, proj  # (dim,), (dim, dim)

    @property
    def spec(self) -> str:
        return spec_of(self.steps, self.power)

    def raw(self, images: np.ndarray) -> np.ndarray:
        """The inner codes, averaged with the mirror image's when ``flip`` is a step."""
        codes = self.inner.encode(images)
        if "flip" in self.steps:
            codes = (codes + self.inner.encode(np.ascontiguousarray(images[:, :, ::-1]))) / 2
        return codes

    def fit(self, batches: BatchSource, count: int) -> None:
        """Fit the inner embedder (a no-op for a trained model), then the mean and whitening
        on the codes of a uniform sample of at most MAX_FIT images."""
        self.inner.fit(batches, count)
        rng = np.random.default_rng(0)
        parts = []
        for batch in batches():
            if count > MAX_FIT:
                batch = batch[rng.random(len(batch)) < MAX_FIT / count]
            if len(batch):
                parts.append(self.raw(batch))
        codes = np.concatenate(parts).astype(np.float64)
        self.mean = codes.mean(axis=0)
        if "whiten" in self.steps:
            d = codes.shape[1]
            cov = np.cov(codes - self.mean, rowvar=False).reshape(d, d)
            vals, vecs = np.linalg.eigh(cov)
            scale = max(vals.mean(), 1e-12)
            vals = np.maximum(vals, 0) + shrinkage(len(codes), d) * scale
            vals = np.maximum(vals, EPS * scale)
            self.proj = vecs / vals ** (self.power / 2)  # (dim, dim): the scaled axes
        LOG.info("post-processing %s fitted on %d codes", self.spec, len(codes))

    def encode(self, images: np.ndarray) -> np.ndarray:
        codes = self.raw(images)
        if "center" in self.steps or "whiten" in self.steps:
            codes = codes - self.mean
        if "whiten" in self.steps:
            codes = codes @ self.proj
        if "l2" in self.steps:
            codes = codes / np.maximum(np.linalg.norm(codes, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(codes, dtype=np.float32)

    def save(self, folder: Path) -> None:
        self.inner.save(folder)
        with replacing(Path(folder) / FILE) as tmp, open(tmp, "wb") as f:
            np.savez(f, steps=np.array(self.steps, dtype="U8"), power=self.power,
                     mean=self.mean if self.mean is not None else np.zeros(0),
                     proj=self.proj if self.proj is not None else np.zeros((0, 0)))

    @staticmethod
    def load(inner: Embedder, folder: Path, cfg: IndexConfig | None = None) -> Embedder:
        """``inner`` with the post-processing saved in ``folder``, or ``inner`` if none is."""
        path = Path(folder) / FILE
        if not path.is_file():
            return inner
        try:
            with np.load(path, allow_pickle=False) as f:
                steps, mean, proj = tuple(str(s) for s in f["steps"]), f["mean"], f["proj"]
                power = float(f["power"]) if "power" in f.files else 1.0  # before issue 23
        except Exception as e:  # numpy/zipfile raise many types for a bad file
            raise IndexFileError(f"post-processing file {path} is unreadable; re-run "
                                 "`imgsearch index PHOTOS_DIR --rebuild`") from e
        return Processed(inner, steps, mean if mean.size else None, proj if proj.size else None,
                         power)


def unwrap(embedder: Embedder) -> Embedder:
    """The embedder under any post-processing: what reconstructs, decodes and samples."""
    return embedder.inner if isinstance(embedder, Processed) else embedder


DBA_ALPHA = 3.0  # the similarity exponent of alpha-weighted DBA (Radenovic et al. 2018)


def database_side_augmentation(codes: np.ndarray, k: int, alpha: float = DBA_ALPHA
                               ) -> np.ndarray:
    """Each of the (N, d) unit-length ``codes`` replaced by the unit-length sum of its ``k``
    nearest codes (itself first), each weighted by its cosine similarity to it raised to
    ``alpha`` (negative ones count for nothing): alpha-DBA, Radenovic, Tolias and Chum,
    "Fine-tuning CNN image retrieval with no human annotation", TPAMI 2018. Done on the
    stored codes when an index is built, so a query costs the same."""
    import faiss

    x = np.ascontiguousarray(codes, np.float32)
    if k <= 1 or len(x) < 2:
        return x.copy()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sim, nn = index.search(x, min(k, len(x)))  # (N, k), itself first
    w = np.maximum(sim, 0) ** alpha  # (N, k)
    out = np.einsum("nk,nkd->nd", w, x[nn])  # (N, d)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
