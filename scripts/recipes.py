"""The learned variants the evaluation scripts compare, as overrides of the registry's methods,
and the retrieval-time processing ablation. Imported by the scripts beside it.

A variant is (method, model settings, training settings, post-processing): the settings
override the method's recipe in imgsearch/methods/registry.py, and a post-processing of None
means the method's own. The variants named after a method ("ae", "vae") are exactly what
`imgsearch index` trains.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch import methods
from imgsearch.config import TrainConfig
from imgsearch.models.checkpoint import new_config

#: The default ae recipe before issue 23's fourth round (every ae variant below was measured
#: against it, and keeps its meaning): the thin decoder, each view reconstructing the clean
#: image, the invariance term at weight 1, no clean term.
BEFORE_23 = {"decoder_refine": 0, "clean_weight": 0.0, "invariance_weight": 1.0,
             "view_reconstruction": True}
#: ...and the retrieval-time processing they were measured with (full whitening; `ae`'s is
#: now a partial one, registry.AE_POST).
FULL_WHITENING = "flip,center,whiten,l2"


def before(settings: dict | None = None, training: dict | None = None,
           post: str = FULL_WHITENING) -> tuple[str, dict, dict, str]:
    """An ae variant measured against the recipe before issue 23's fourth round: its
    ``settings`` over BEFORE_23, its ``training`` overrides, its post-processing."""
    return "ae", {**BEFORE_23, **(settings or {})}, dict(training or {}), post


VARIANTS: dict[str, tuple[str, dict, dict, str | None]] = {
    "ae": ("ae", {}, {}, None),  # the default recipe
    "ae-before23": before(),  # the default until issue 23's fourth round
    # the default's weights with full whitening (the default until issue 23's fifth round)
    "ae-full-whitening": ("ae", {}, {}, FULL_WHITENING),
    # the default with a quarter of the code free of the invariance term (issue 23, sixth
    # round): the head reads the first 192 of the 256 dimensions
    "ae-split192": ("ae", {"invariant_dims": 192}, {}, None),
    "vae": ("vae", {}, {}, None),
    # the reference: reconstruction alone, no retrieval-time processing (the old default)
    "ae-plain": before({"invariance": "none"}, {"augment": "auto"}, ""),
    "ae-edits": before({"invariance": "none", "denoise": "edits"}, {}, ""),
    "vae-plain": ("vae", {"invariance": "none"}, {}, ""),
    "ae-vicreg": before({"invariance": "vicreg"}),
    # the default, and the clean image reconstructed from itself beside the views (issue 23)
    "ae-clean": before({"clean_weight": 1.0}),
    "ae-clean10": before({"clean_weight": 10.0}),
    # a deeper decoder: one residual convolution per block before its deconvolution
    "ae-refine": before({"decoder_refine": 1}),
    "ae-refine-plain": before({"invariance": "none", "decoder_refine": 1}, {"augment": "auto"}, ""),
    "ae-refine-clean": before({"decoder_refine": 1, "clean_weight": 1.0}),
    # issue 23, item 2: the reconstruction's share of the loss (the invariance term's weight
    # beside it), with the refined decoder and the clean term
    "ae-rc-w0.1": before({"decoder_refine": 1, "clean_weight": 1.0,
                          "invariance_weight": 0.1}),
    "ae-rc-w0.01": before({"decoder_refine": 1, "clean_weight": 1.0,
                           "invariance_weight": 0.01}),
    # VICReg's expander width (Bardes et al. 2022, table 8: wider is better) and batch size
    "ae-proj2048": before({"projector": (2048, 2048)}),
    "ae-b256": before({}, {"batch_size": 256}),
    # the clean image alone reconstructed, from itself; the views only encoded, for the
    # invariance term (the autoencoder with invariance as its regulariser)
    "ae-own": before({"clean_weight": 1.0, "view_reconstruction": False}),
    "ae-own-refine": before({"clean_weight": 1.0, "view_reconstruction": False,
                             "decoder_refine": 1}),
    "ae-own-refine-w0.1": before({"clean_weight": 1.0, "view_reconstruction": False,
                                  "decoder_refine": 1, "invariance_weight": 0.1}),
    # the candidate (ae-rc-w0.01) with the views only encoded: the decoder's passes a third
    "ae-own-refine-w0.01": before({"clean_weight": 1.0, "view_reconstruction": False,
                                   "decoder_refine": 1, "invariance_weight": 0.01}),
    # the candidate without the clean term: the views reconstruct, through the refined decoder
    "ae-refine-w0.01": before({"decoder_refine": 1, "invariance_weight": 0.01}),
    # a linear shortcut from the code to the output beside the deconvolutions
    "ae-refine-plain-linear": before({"invariance": "none", "decoder_refine": 1,
                                      "decoder_linear": True}, {"augment": "auto"}, ""),
    "ae-rc-w0.01-linear": before({"decoder_refine": 1, "clean_weight": 1.0,
                                  "invariance_weight": 0.01, "decoder_linear": True}),
    # a wider trunk (twice the channels of every block; Zagoruyko & Komodakis 2016) and a
    # deeper, residual one (a residual convolution per encoder block, He et al. 2016)
    "ae-wide": before({"width_scale": 2}),
    "ae-deep": before({"encoder_refine": 1}),
    # multi-crop (Caron et al. 2020): two small crops beside the two views
    "ae-mc2": before({"local_views": 2}),
    # an EMA target network instead of VICReg (Grill et al. 2020), beside reconstruction
    "ae-byol": before({"invariance": "byol"}),
    "ae-infonce": before({"invariance": "infonce"}),
    "ae-infonce-koleo": before({"invariance": "infonce", "koleo_weight": 0.5}),
    "vae-vicreg": ("vae", {"invariance": "vicreg"}, {}, None),
    "vae-infonce": ("vae", {"invariance": "infonce"}, {}, None),
    # the rest of the family (the autoencoder-family issue), invariance on (their default)
    # and off
    "ae-tied": before({"tied": True, "tied_convs": True}),
    "ae-tied-plain": before({"invariance": "none", "tied": True,
                             "tied_convs": True}, {}, ""),
    "tcvae": ("tcvae", {}, {}, None),
    "tcvae-plain": ("tcvae", {"invariance": "none"}, {}, ""),
    "aae": ("aae", {}, {}, None),
    "aae-plain": ("aae", {"invariance": "none"}, {}, ""),
}

#: Retrieval-time processing measured on and off for every learned model (item 3 of the
#: quality issue): the same trained weights, only the processing of the codes changes.
POSTS = {"raw": "", "l2": "center,l2", "whiten": "center,whiten,l2", "flip": "flip,center,l2",
         "flip+whiten": "flip,center,whiten,l2", "flip+whiten0.5": "flip,center,whiten=0.5,l2"}


def post_of(name: str) -> str:
    """The post-processing a variant is reported with."""
    method, _, _, post = VARIANTS[name]
    return methods.get(method).post if post is None else post


def configs(name: str, input_size: int, channels: int, code_dim: int, widths=None,
            **training) -> tuple[str, object, TrainConfig]:
    """(method, model config, train config) of variant ``name`` for these images.

    A variant with its own batch size sees as many images as the others: a ``max_steps``
    given is scaled by the default batch over the variant's (the same CPU budget). A
    ``width_scale`` multiplies the channels of every block of the trunk the images get."""
    method, settings, overrides, _ = VARIANTS[name]
    settings = dict(settings)
    scale = settings.pop("width_scale", 1)
    if "batch_size" in overrides and training.get("max_steps"):
        images = TrainConfig().batch_size / overrides["batch_size"]
        training = {**training, "max_steps": max(1, round(training["max_steps"] * images))}
    spec = methods.get(method)
    trunk = {**spec.settings, **settings, **({"widths": tuple(widths)} if widths else {})}
    if scale != 1:
        base = trunk.get("widths") or new_config(spec.arch, input_size=input_size).widths
        trunk["widths"] = tuple(w * scale for w in base)
    model = new_config(spec.arch, input_size=input_size, channels=channels, code_dim=code_dim,
                       **trunk)
    train = TrainConfig(**{**spec.training, **overrides, **training})
    return method, model, train
