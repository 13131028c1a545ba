"""Settings, as frozen dataclasses saved next to what they describe."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigMismatch
from .store import from_known, write_json

#: Input corruptions for denoising training (augment.py).
CORRUPTIONS = ("none", "gaussian", "mask", "edits")


@dataclass(frozen=True)
class IndexConfig:
    """Settings fixed when an index is created; stored in ``config.json`` inside it."""

    input_size: int = 64  # images are cached as (input_size, input_size, 3) uint8
    pixel_size: int = 32  # the `pixels` baseline: the image resized to this, flattened
    code_dim: int = 256  # PCA components and learned code size
    # above this many vectors, or above index.EXACT_BYTES of codes, an IVF index replaces
    # IndexFlat
    exact_threshold: int = 100_000

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ConfigMismatch(f"input_size must be at least 8, got {self.input_size}")
        if not 1 <= self.pixel_size <= self.input_size:
            raise ConfigMismatch(f"pixel_size must be in 1..{self.input_size}, "
                                 f"got {self.pixel_size}")
        if self.code_dim < 1:
            raise ConfigMismatch(f"code_dim must be positive, got {self.code_dim}")

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> IndexConfig:
        data = json.loads(Path(path).read_text())
        return from_known(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; saved in its checkpoint beside the model config."""

    # the work, in steps: ``steps`` if given, else ``epochs`` over the collection and at least
    # ``min_steps`` (small collections); the same photos get the same work on any machine
    epochs: int = 20
    min_steps: int = 300
    steps: int = 0
    # a cap, not the budget: where the work would not fit, the schedule is shortened to end by
    # then, and the run is recorded as cut short (0: no cap)
    max_minutes: float = 15.0
    max_steps: int = 0  # stop after this many steps in this run (0: no limit); for tests
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.05
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on CUDA, and on a CPU with native bf16 (AVX512-BF16, AMX)
    channels_last: bool = True  # the model and batches in NHWC (oneDNN and cuDNN convolutions)
    compile: bool = False  # torch.compile the model
    augment: str = "auto"  # random views and edits: auto | photo | small (augment.py)
    schedule: str = "cosine"  # learning rate: cosine (warm-up, then decay) | constant
    check_every: int = 200  # self-check after an epoch at least this many steps after the last
    patience: int = 0  # stop after this many self-checks without improvement (0: never)
    checkpoint_seconds: float = 30.0  # write the resumable checkpoint at most this often
    data_on_device: str = "auto"  # hold the images on the training device: auto|always|never

    def __post_init__(self) -> None:
        if self.data_on_device not in ("auto", "always", "never"):
            raise ConfigMismatch("data_on_device must be auto, always or never, got "
                                 f"{self.data_on_device!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigMismatch(f"schedule must be cosine or constant, got {self.schedule!r}")
        if (self.batch_size < 2 or self.lr <= 0 or self.check_every < 1 or self.patience < 0
                or self.steps < 0):
            raise ConfigMismatch("batch size must be at least 2, learning rate positive, "
                                 "check_every at least 1, patience and steps 0 or more")
