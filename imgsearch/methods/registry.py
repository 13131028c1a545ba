"""The one registry of methods. Every list of method names in imgsearch is derived from it.

A method turns an image into a code. A baseline is created and fitted here (``create``); a
learned method names the model architecture it trains (``arch``, models/checkpoint.py) and its
default settings. Adding a method is a model module (for a new architecture) plus one entry
in ``METHODS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from ..config import IndexConfig
from ..errors import UnknownMethod
from .base import Embedder
from .baselines import PCAEmbedder, PixelsEmbedder


def _load_learned(folder: Path, cfg: IndexConfig, exported: bool = False) -> Embedder:
    """The torch model (what building, syncing, decoding and sampling use, on the GPU when
    there is one); with ``exported``, the encoder exported to ONNX, run without torch (what
    queries use), if the method has one and onnxruntime is installed."""
    from .onnx import FILE, OnnxEmbedder

    if exported and (Path(folder) / FILE).is_file():
        try:
            return OnnxEmbedder(Path(folder) / FILE)
        except ImportError:
            pass
    from .learned import LearnedEmbedder  # imports torch

    return LearnedEmbedder.load(folder, cfg)


#: The learned methods' default recipe (the quality issue; measured in docs/RESULTS.md):
#: reconstruction plus VICReg invariance between two edited views of each image...
INVARIANT = MappingProxyType({"invariance": "vicreg", "invariance_weight": 1.0})
#: ...which `ae` (issue 23) changes so that its decoder really reconstructs: the two views are
#: only encoded, for the invariance term at a hundredth of its weight, and the clean image is
#: reconstructed from itself by a decoder with a residual convolution before each
#: deconvolution (measured against the recipe before in docs/RESULTS.md, issue 23, fourth
#: round).
RECONSTRUCTING = MappingProxyType({**INVARIANT, "invariance_weight": 0.01,
                                   "view_reconstruction": False, "clean_weight": 1.0,
                                   "decoder_refine": 1})
#: ...and, at retrieval, codes averaged with the mirror image's, centred, PCA-whitened on the
#: collection and L2-normalised (each step measured on and off in RESULTS)...
POST = "flip,center,whiten,l2"
#: ...which for `ae` whitens halfway (each axis scaled by its variance to the power -1/4): the
#: same top of the ranking, and the whole ranking kept (RESULTS, issue 23, fifth round).
AE_POST = "flip,center,whiten=0.5,l2"


@dataclass(frozen=True)
class Method:
    """How to create, fit or train, save and load one method, and what it can do."""

    name: str
    summary: str  # one line for --help and the README
    load: Callable[[Path, IndexConfig], Embedder]  # the fitted embedder saved in a folder
    create: Callable[[IndexConfig], Embedder] | None = None  # baselines: an unfitted embedder
    arch: str | None = None  # learned methods: the architecture they train
    settings: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    training: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    post: str = ""  # retrieval-time processing of the codes (postprocess.py), e.g. "l2"
    reconstructs: bool = False  # `imgsearch reconstruct` can draw its reconstructions
    samples: bool = False  # `imgsearch sample` can draw from its prior
    preference: int = 100  # rank as the default query method (lower first)
    streams: bool = False  # a first build can run while the photos decode (build.StreamedBuild)

    @property
    def learned(self) -> bool:
        return self.arch is not None


METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in (
    Method("pixels", "the image box-filtered to 32x32 RGB, flattened (3,072-d)",
           load=PixelsEmbedder.load, create=lambda cfg: PixelsEmbedder(cfg.pixel_size),
           preference=4, streams=True),
    Method("pca", "PCA of the raw pixels, fitted on the collection (256-d)",
           load=PCAEmbedder.load, create=lambda cfg: PCAEmbedder(cfg.pixel_size, cfg.code_dim),
           reconstructs=True, preference=3, streams=True),
    Method("ae", "convolutional autoencoder trained on the collection: reconstruction of "
           "each image plus VICReg invariance between two edited views (256-d code)",
           load=_load_learned, arch="ae", settings=RECONSTRUCTING, post=AE_POST,
           reconstructs=True, preference=1),
    Method("vae", "convolutional VAE trained on the collection, VICReg invariance on mu "
           "(256-d mu)", load=_load_learned, arch="vae", settings=INVARIANT, post=POST,
           reconstructs=True, samples=True, preference=2),
    Method("tcvae", "beta-TCVAE: the VAE with its KL split into mutual information, total "
           "correlation and dimension-wise KL (256-d mu)",
           load=_load_learned, arch="vae", settings=MappingProxyType(
               {**INVARIANT, "kl": "tc", "alpha": 0.1, "beta": 0.6, "gamma": 0.1}), post=POST,
           reconstructs=True, samples=True, preference=5),
    Method("aae", "adversarial autoencoder: codes pushed towards N(0, I) by a discriminator "
           "(256-d code)", load=_load_learned, arch="aae", settings=INVARIANT, post=POST,
           reconstructs=True, samples=True,
           preference=6),
)})


def open_embedder(name: str, folder: Path, cfg: IndexConfig, exported: bool = False
                  ) -> Embedder:
    """The fitted embedder of method ``name`` saved in ``folder``, with its post-processing;
    ``exported``: a learned method's encoder exported for queries (no torch import), not its
    torch model."""
    from .postprocess import Processed

    spec = get(name)
    inner = (spec.load(folder, cfg, exported=True) if exported and spec.learned
             else spec.load(folder, cfg))
    return Processed.load(inner, folder, cfg)


class Choice(NamedTuple):
    """The default query method, why, and where a learned method was weighed against the best
    baseline, its lead: {"method", "over", "lead", "se", "paired"}."""

    method: str
    reason: str
    lead: dict | None = None


def choose(scores: Mapping[str, float | None], images: int, min_images: int,
           errors: Mapping[str, float | None] | None = None,
           outcomes: Mapping | None = None, named: str = "self-check recall@1") -> Choice:
    """The default query method among built methods (name -> self-check score, None where
    unscored) of an index of ``images`` images, and why. A learned method replaces the best
    baseline only when it leads it by more than two standard errors of their difference
    (LEAD_ERRORS): a lead within the self-check's noise leaves the baseline (deterministic,
    nothing to go stale) answering. Where both were scored on the same copies (their
    ``outcomes``, MethodState.selfcheck_outcome, or a list of a method's measures' outcomes),
    the error is that of the paired difference (stats.paired); otherwise the two scores'
    ``errors`` are taken as independent. ``named``: what the scores are, in the reason."""
    built = list(scores)
    scored = {m: s for m, s in scores.items() if s is not None}
    errors, outcomes = errors or {}, outcomes or {}

    def shown(m: str) -> str:
        se = errors.get(m)
        return f"{m} {scored[m]:.3f}" + (f" ± {se:.3f}" if se is not None else "")

    if scored:
        best = max(scored, key=lambda m: (scored[m], -get(m).preference))
        base = [m for m in scored if not get(m).learned]
        lead = None
        if get(best).learned and base:
            top = max(base, key=lambda m: (scored[m], -get(m).preference))
            lead = _lead(best, top, scored, errors, outcomes)
            if lead is not None and lead["lead"] <= LEAD_ERRORS * lead["se"]:
                return Choice(top, (
                    f"{shown(best)} leads {shown(top)} by {_shown_lead(lead)}, no more than "
                    "two standard errors of the lead; the baseline answers"), lead)
        others = ", ".join(shown(m) for m in sorted(scored, key=lambda m: -scored[m])
                           if m != best)
        return Choice(best, f"best {named} on this collection: {shown(best)}"
                      + (f" (then {others})" if others else "")
                      + (f"; it leads {lead['over']} by {_shown_lead(lead)}" if lead else ""),
                      lead)
    baselines = [m for m in built if not get(m).learned]
    if images < min_images and baselines:
        return Choice(by_preference(baselines)[0], (
            f"the collection ({images} images) is too small to hold images out and score the "
            f"methods (at least {min_images}); a baseline answers"))
    return Choice(by_preference(built)[0], "no method has a self-check score; fixed preference "
                  "order")


def choose_measured(measures: Mapping[str, Sequence[Mapping] | None], images: int,
                    min_images: int) -> Choice:
    """``choose`` on several label-free measures of each method (name -> its measures'
    outcomes: the self-check's copies and its other shots; None where unscored): each
    method's score is the mean over the held-out images of their hit rates (stats.combined),
    and the lead is paired on the same (stats.paired)."""
    from ..stats import combined

    both = {m: combined(v) if v else (None, None) for m, v in measures.items()}
    return choose({m: v[0] for m, v in both.items()}, images, min_images,
                  {m: v[1] for m, v in both.items()}, measures,
                  named="self-check (copies and other shots)")


LEAD_ERRORS = 2  # a learned method answers when it leads the best baseline by more than this
#                  many standard errors of the lead (about 98% one-sided, were it normal)


def _lead(best: str, top: str, scored: Mapping[str, float], errors: Mapping,
          outcomes: Mapping) -> dict | None:
    """The lead of ``best`` over ``top`` and its standard error: paired where both were scored
    on the same copies, else from the two errors as if independent; None without errors."""
    from ..stats import paired

    both = paired(outcomes, best, top)
    if both is not None:
        lead, se = both
    elif errors.get(best) is not None and errors.get(top) is not None:
        lead, se = scored[best] - scored[top], math.hypot(errors[best], errors[top])
    else:
        return None
    return {"method": best, "over": top, "lead": round(lead, 6), "se": round(se, 6),
            "paired": both is not None}


def _shown_lead(lead: dict) -> str:
    return (f"{lead['lead']:.3f} ± {lead['se']:.3f}"
            f" ({'paired' if lead['paired'] else 'unpaired'} standard error)")


def get(name: str) -> Method:
    """The method called ``name``; UnknownMethod if there is none."""
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethod(f"unknown method {name!r}; choose one of {', '.join(METHODS)}"
                            ) from None


def names(*, learned: bool | None = None) -> tuple[str, ...]:
    """Every method's name in registry order; only learned or only baseline ones if asked."""
    return tuple(m.name for m in METHODS.values() if learned is None or m.learned == learned)


def by_preference(candidates: Iterable[str]) -> list[str]:
    """``candidates`` ordered as default query methods, best first."""
    return sorted(candidates, key=lambda n: (get(n).preference, n))
