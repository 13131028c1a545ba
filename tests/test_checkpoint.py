"""The checkpoint format that inference reads: legacy files, configs, devices."""

from dataclasses import asdict

import numpy as np
import pytest
import torch

from imgsearch.errors import ConfigMismatch, IndexFileError
from imgsearch.methods.learned import LearnedEmbedder
from imgsearch.models.autoencoder import AEConfig
from imgsearch.models.checkpoint import (
    arch_of,
    config_from_checkpoint,
    load_checkpoint,
    new_config,
    new_model,
    to_batch,
)

TINY = AEConfig(input_size=16, channels=3, widths=(4, 8), code_dim=6)


def test_a_checkpoint_written_before_version_0_2_still_loads(tmp_path):
    model = new_model(TINY)
    legacy = {"kind": "ae", "model": model.state_dict(), "optimizer": {},
              "config": asdict(TINY), "epoch": 1, "history": []}
    torch.save(legacy, tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt")
    assert (ckpt["arch"], ckpt["method"]) == ("ae", "ae") and "kind" not in ckpt
    emb = LearnedEmbedder(ckpt, device="cpu")
    x = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    with torch.no_grad():
        want = model.eval().encode(to_batch(x, torch.device("cpu")))[0].numpy()
    np.testing.assert_allclose(emb.encode(x), want, atol=1e-6)


def test_configs_are_checked_and_unknown_saved_settings_ignored():
    assert arch_of(TINY) == "ae" and arch_of(new_config("vae", beta=0.5)) == "vae"
    with pytest.raises(ConfigMismatch, match="ae has no setting colour"):
        new_config("ae", colour="red")
    with pytest.raises(ConfigMismatch, match="unknown architecture 'gan'"):
        new_config("gan")
    saved = {"arch": "ae", "method": "ae", "config": {**asdict(TINY), "from_the_future": 1}}
    assert config_from_checkpoint(saved) == TINY
    with pytest.raises(IndexFileError, match="architecture 'gan'"):
        config_from_checkpoint({**saved, "arch": "gan"})


def test_a_file_missing_its_keys_is_unreadable(tmp_path):
    torch.save({"model": {}}, tmp_path / "bad.pt")
    with pytest.raises(IndexFileError, match="unreadable"):
        load_checkpoint(tmp_path / "bad.pt")
