"""Training a model on an in-memory array, as the evaluation scripts do."""

import numpy as np

from imgsearch.config import TrainConfig
from imgsearch.experiment import train_on_array
from imgsearch.models.autoencoder import AEConfig
from imgsearch.models.checkpoint import load_checkpoint

CFG = AEConfig(input_size=16, channels=1, widths=(4, 8), code_dim=6)


def test_train_on_array_returns_the_embedder_and_a_summary(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (40, 16, 16, 1), np.uint8)
    tcfg = TrainConfig(epochs=2, min_steps=0, max_minutes=0, batch_size=16)
    ckpt = tmp_path / "ae.pt"
    embedder, summary = train_on_array("ae", CFG, images, tcfg, ckpt)
    assert embedder.encode(images).shape == (40, 6)
    assert summary["epochs"] == 2 and summary["model"]["code_dim"] == 6
    assert summary["train_config"]["batch_size"] == 16 and summary["val_loss"] > 0

    # resume=True continues the run on file; otherwise a call starts afresh (after 3 epochs
    # on file, a resumed 2-epoch run would train nothing and report the 3 epochs it found)
    longer = TrainConfig(epochs=3, min_steps=0, max_minutes=0, batch_size=16)
    _, summary = train_on_array("ae", CFG, images, longer, ckpt, resume=True)
    assert summary["epochs"] == 3 and load_checkpoint(ckpt)["epoch"] == 3
    _, summary = train_on_array("ae", CFG, images, tcfg, ckpt)
    assert summary["epochs"] == 2 and load_checkpoint(ckpt)["epoch"] == 2

    # saved=True: the checkpoint as it is, however many epochs are asked for; none on file:
    # trained afresh
    weights = ckpt.read_bytes()
    again, summary = train_on_array("ae", CFG, images, longer, ckpt, saved=True)
    assert summary["epochs"] == 2 and ckpt.read_bytes() == weights  # nothing trained
    assert again.encode(images).shape == (40, 6)
    fresh = tmp_path / "none.pt"
    _, summary = train_on_array("ae", CFG, images, tcfg, fresh, saved=True)
    assert summary["epochs"] == 2 and fresh.exists()
