"""Train a model on cached pixels, with validation, a time budget and resumable, atomic
checkpoints (their format: models/checkpoint.py). Never imported by a query."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .augment import Augment, Corruption, preset_for
from .config import TrainConfig
from .errors import ConfigMismatch, TrainingDiverged
from .models.checkpoint import (
    ARCHITECTURES,
    arch_of,
    config_from_checkpoint,
    load_checkpoint,
    new_model,
    pick_device,
    to_batch,
    write_checkpoint,
)
from .models.invariance import byol_views_loss, ema_momentum, ema_update, koleo, views_loss

LOG = logging.getLogger(__name__)


class ImageSource(Protocol):
    """Anything that hands out (B, S, S, C) uint8 images by position."""

    def __len__(self) -> int: ...

    def get(self, positions: np.ndarray) -> np.ndarray: ...


class ArraySource:
    """Images held in a (N, S, S, C) uint8 array (or memory map)."""

    def __init__(self, images: np.ndarray):
        self.images = images if images.ndim == 4 else images[..., None]

    def __len__(self) -> int:
        return len(self.images)

    def get(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.images[np.sort(positions)])


class DeviceSource:
    """Every training image held on the training device as one (N, S, S, C) uint8 tensor: a
    batch is an index into it, with no copy from the host per step (what keeps a GPU busy)."""

    def __init__(self, data: ImageSource, device: torch.device, chunk: int = 4096):
        parts = [torch.from_numpy(np.ascontiguousarray(data.get(np.arange(s, min(s + chunk,
                                                                              len(data))))))
                 .to(device) for s in range(0, len(data), chunk)]
        self.images = torch.cat(parts)  # (N, S, S, C) uint8 on the device
        self.device = device

    def __len__(self) -> int:
        return len(self.images)

    def get(self, positions: np.ndarray) -> torch.Tensor:
        return self.images[torch.as_tensor(np.sort(positions), device=self.device)]


def on_device(data: ImageSource, device: torch.device, cfg: TrainConfig) -> ImageSource:
    """``data`` moved onto ``device`` when ``cfg.data_on_device`` says so: "auto" does on a
    GPU when the images take at most half its free memory, "always" and "never" say."""
    if cfg.data_on_device == "never" or len(data) == 0:
        return data
    if cfg.data_on_device == "auto":
        if device.type != "cuda":
            return data
        sample = np.asarray(data.get(np.arange(1)))
        need = sample.nbytes * len(data)
        free, _ = torch.cuda.mem_get_info(device)
        if need > free // 2:
            LOG.info("training images (%d MB) stay on the host", need // 2**20)
            return data
    LOG.info("holding the %d training images on %s", len(data), device)
    return DeviceSource(data, device)


@dataclass
class Epoch:
    epoch: int
    train_loss: float
    val_loss: float
    images_per_s: float
    seconds: float
    selfcheck: float | None = None  # recall@1 of edited held-out copies (selfcheck.py)
    lr: float | None = None  # learning rate at the end of the epoch


TrainProgressFn = Callable[[int, int, float, float], None]  # step, steps, loss, images/s
#: A self-check: given a function encoding (B, S, S, C) uint8 images to (B, D) codes, a score
#: (higher is better) of how well the codes find edited copies (selfcheck.SelfCheck).
Scorer = Callable[[Callable[[np.ndarray], np.ndarray]], float]  # an encoder -> its score
PROGRESS_SECONDS = 0.2  # at most this often a progress report (and a GPU sync)
WARMUP_STEPS = 100  # linear learning-rate warm-up before the cosine decay


def split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) positions; validation gets at least one image if n > 1."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1 if n > 1 else 0, round(n * val_fraction)))
    return order[n_val:], order[:n_val]


def learning_rate(cfg: TrainConfig, step: int, planned: int) -> float:
    """``cfg.lr`` (constant), or warmed up linearly for WARMUP_STEPS then decayed along a
    half cosine to 1% of it at step ``planned`` (Loshchilov & Hutter, SGDR, ICLR 2017)."""
    if cfg.schedule == "constant":
        return cfg.lr
    warm = min(WARMUP_STEPS, max(1, planned // 10))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, planned - warm))
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


# -- checkpoints --------------------------------------------------------------------------
def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save_checkpoint(path: Path, method: str, model: torch.nn.Module, optimizers: list, config,
                    train_cfg: TrainConfig, epoch: int, history: list[Epoch],
                    best: dict | None = None, step: int = 0, work: int = 0,
                    capped: bool = False, target: torch.nn.Module | None = None) -> None:
    """The resumable checkpoint: the latest weights and optimizer state (and the
    discriminator's optimizer, for an adversarial architecture), the weights that scored
    best on the self-check (``best``: model, epoch, selfcheck), which inference uses, the
    steps taken (``step``) of the work planned (``work``), and whether the time cap ended the
    run before its work (``capped``)."""
    extra = {"optimizer_d": optimizers[1].state_dict()} if len(optimizers) > 1 else {}
    if target is not None:  # byol's moving average, so that a resumed run goes on from it
        extra["target"] = _cpu_state(target)
    write_checkpoint(path, {"method": method, "arch": arch_of(config), "model": _cpu_state(model),
                            "optimizer": optimizers[0].state_dict(), **extra,
                            "config": asdict(config), "train_config": asdict(train_cfg),
                            "epoch": epoch, "step": step, "work": work, "capped": capped,
                            "history": [asdict(h) for h in history],
                            **({"best": best} if best else {})})


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX on x86 Linux): there bf16
    autocast roughly halves a CPU training step of the default recipe (docs/BENCHMARKS.md);
    elsewhere it would be emulated, and slower than float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# -- one step -----------------------------------------------------------------------------
def step_loss(model: torch.nn.Module, net: torch.nn.Module, objective, x: torch.Tensor,
              corrupt: Corruption, views: Augment | None, local: Augment | None = None,
              target: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss of one clean batch ``x``.

    Without invariance: the objective of reconstructing ``x`` from its corruption (the image
    itself unless denoising). With it: two random views of every image are encoded in one
    batch, each reconstructs the clean image, and the invariance term pulls the projected
    codes of the two views together (models/invariance.py); ``local`` draws the
    ``local_views`` small crops, which are encoded only and pulled towards both views
    (multi-crop, invariance.views_loss); with byol the pull is towards
    ``target``'s projections (the moving average of the model). Returns the loss and the
    codes."""
    cfg = model.cfg
    if views is None:
        losses, code = objective(net, corrupt(x), x)
        return losses.total, code
    both = torch.cat([views(x), views(x)]).to(x.dtype)  # (2B, C, S, S)
    if cfg.view_reconstruction:
        losses, code = objective(net, both, torch.cat([x, x]))
        rec = losses.total
    else:  # the views encoded only; the clean term below is the reconstruction
        code, rec = model.encode(both)[0], x.new_zeros((), dtype=torch.float32)
    projected = model.projector(code)  # (2B, P)
    smalls = ([model.projector(model.encode(local(x).to(x.dtype))[0])
               for _ in range(cfg.local_views)] if local is not None else [])  # (B, P) each
    if cfg.invariance == "byol":
        with torch.no_grad():
            t1, t2 = target.projector(target.encode(both)[0]).chunk(2)  # (B, P) each
        q1, q2 = model.projector.predict(projected).chunk(2)
        term = byol_views_loss(q1, q2, [model.projector.predict(s) for s in smalls], t1, t2)
    else:
        z1, z2 = projected.float().chunk(2)  # (B, P) each
        term = views_loss(cfg.invariance, z1, z2, [s.float() for s in smalls],
                          cfg.temperature)
    total = rec + cfg.invariance_weight * term
    if cfg.koleo_weight:
        c1, c2 = code.float().chunk(2)
        total = total + cfg.koleo_weight * (koleo(c1) + koleo(c2)) / 2
    if cfg.clean_weight:  # the clean image from itself: keeps the decoder sharp
        clean, _ = objective(net, x, x)
        total = total + cfg.clean_weight * (clean.recon if cfg.view_reconstruction
                                            else clean.total)
    return total, code


def local_augment(aug, config, seed: int) -> Augment | None:
    """The small crops' edits: the views' own, with the crop's area from a third of the
    views' smallest up to it (None without local views)."""
    if config.invariance == "none" or not config.local_views:
        return None
    low = aug.crop_scale[0]
    return Augment(replace(aug, crop_scale=(low / 3, low)), config.input_size, config.channels,
                   seed + 104_729)


#: The parts of a model the target network never runs (it only encodes and projects): the
#: decoding layers of every architecture, the adversarial autoencoder's discriminator, byol's
#: predictor. Left out of the target, they are neither copied nor moved on each step.
_NOT_IN_TARGET = ("decoder", "from_code", "from_code_bias", "from_z", "shortcut",
                  "discriminator")


def target_of(model: torch.nn.Module, state: dict | None = None) -> torch.nn.Module | None:
    """byol's target network: a frozen copy of the model's encoder, code layer and projector
    (or of their saved ``state``), moved by ``ema_update`` after every step; None for every
    other invariance term."""
    if model.cfg.invariance != "byol":
        return None
    target = copy.deepcopy(model)
    for name in _NOT_IN_TARGET:
        if hasattr(target, name):
            setattr(target, name, None)
    target.projector.predictor = None
    if state is not None:  # a checkpoint from before the target was lean holds all the model
        own = target.state_dict()
        target.load_state_dict({k: v for k, v in state.items() if k in own})
    for p in target.parameters():
        p.requires_grad_(False)
    return target


# -- evaluation ---------------------------------------------------------------------------
@torch.no_grad()
def validation_loss(arch: str, model, data: ImageSource, positions: np.ndarray, cfg: TrainConfig,
             device: torch.device) -> float:
    """Mean validation loss on clean inputs."""
    if len(positions) == 0:
        return float("nan")
    model.eval()
    total, n = 0.0, 0
    objective = ARCHITECTURES[arch].objective
    for start in range(0, len(positions), cfg.batch_size):
        pos = positions[start : start + cfg.batch_size]
        x = to_batch(data.get(pos), device, cfg.channels_last and device.type == "cuda")
        with torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            loss = objective(model, x, x, train=False)[0].total
        total += float(loss) * len(pos)
        n += len(pos)
    model.train()
    return total / n


def encoder(model: torch.nn.Module, device: torch.device, batch: int = 512):
    """A function (B, S, S, C) uint8 -> (B, D) float32 codes with the model as it is now."""

    @torch.no_grad()
    def encode(images: np.ndarray) -> np.ndarray:
        was = model.training
        model.eval()
        out = [model.encode(to_batch(np.ascontiguousarray(images[i : i + batch]), device))[0]
               .float().cpu().numpy() for i in range(0, len(images), batch)]
        model.train(was)
        return np.concatenate(out) if out else np.empty((0, model.cfg.code_dim), np.float32)

    return encode


# -- the loop -----------------------------------------------------------------------------
def train(method: str, config, data: ImageSource, cfg: TrainConfig, checkpoint: Path,
          on_progress: TrainProgressFn | None = None, check: Scorer | None = None
          ) -> list[Epoch]:
    """Train (or resume training of) ``method``'s model, of architecture and settings
    ``config``, on ``data``; returns the history of every epoch.

    If ``checkpoint`` exists for the same method and model config, training resumes after its
    last completed epoch, with its optimizer state. A checkpoint is written after every epoch
    and when the time budget or step limit stops the run.

    With ``check``, the model is scored at the end of every epoch that comes at least
    ``cfg.check_every`` steps after the last score (so every epoch on a collection of any size,
    and every few epochs on a tiny one), and at the end of the run; the best-scoring weights
    are kept in the checkpoint for inference, and training stops early after ``cfg.patience``
    scores without improvement.
    """
    if len(data) < 2:
        raise ConfigMismatch(f"need at least 2 images to train, have {len(data)}")
    arch = arch_of(config)
    adversary = ARCHITECTURES[arch].adversary
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = new_model(config).to(device)
    fused = device.type == "cuda"  # one kernel for the whole update instead of several
    disc = set(map(id, model.discriminator.parameters())) if adversary else set()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if id(p) not in disc],
                                  lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    optimizers = [optimizer]
    if adversary:  # the discriminator has its own optimizer and step (Makhzani et al. 2016)
        optimizers.append(torch.optim.AdamW(model.discriminator.parameters(),
                                            lr=config.disc_lr, betas=(0.5, 0.999), fused=fused))
    start_epoch, history, best, step = 0, [], None, 0
    target_state = None
    if Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint)
        if (ckpt["method"], ckpt["arch"]) != (method, arch) or (
                config_from_checkpoint(ckpt) != config):
            raise ConfigMismatch(f"checkpoint {checkpoint} is for another model "
                                 f"({ckpt['method']}: {ckpt['config']}); "
                                 "`imgsearch train --fresh` starts anew")
        model.load_state_dict(ckpt["model"])
        if ckpt["optimizer"]:
            optimizer.load_state_dict(ckpt["optimizer"])
        if adversary and ckpt.get("optimizer_d"):
            optimizers[1].load_state_dict(ckpt["optimizer_d"])
        start_epoch, step, best = ckpt["epoch"], ckpt.get("step", 0), ckpt.get("best")
        target_state = ckpt.get("target")
        history = [Epoch(**h) for h in ckpt["history"]]
        LOG.info("resuming %s from epoch %d", checkpoint, start_epoch)
    cl = cfg.channels_last  # NHWC: faster convolutions on the GPU and, by oneDNN, the CPU
    if cl:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if cfg.compile else model  # attribute access reaches `model`
    amp = cfg.amp and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()))
    aug = preset_for(cfg.augment, config.input_size, config.channels)
    corrupt = Corruption(config.denoise, config.noise, config.input_size, config.channels,
                         cfg.augment, cfg.seed)
    views = (Augment(aug, config.input_size, config.channels, cfg.seed + start_epoch)
             if config.invariance != "none" else None)
    local = local_augment(aug, config, cfg.seed + start_epoch)
    target = target_of(model, target_state)
    objective = ARCHITECTURES[arch].objective
    data = on_device(data, device, cfg)
    train_pos, val_pos = split(len(data), cfg.val_fraction, cfg.seed)
    model.dataset_size = len(train_pos)  # for estimators that need it (beta-TCVAE)
    # an incomplete last batch is dropped when there are full ones: batch statistics (batch
    # norm, the invariance terms) are meaningless on a handful of images
    full_batches = len(train_pos) // cfg.batch_size
    steps_per_epoch = max(1, full_batches)
    epoch_len = full_batches * cfg.batch_size if full_batches else len(train_pos)
    if cfg.steps:
        planned = cfg.steps
    else:
        planned = steps_per_epoch * max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))
    epochs = math.ceil(planned / steps_per_epoch)
    if cfg.max_steps:
        planned = min(planned, step + cfg.max_steps)
    work = planned  # the schedule's length, unless the time cap shortens it
    capped = False  # whether the time cap ended this run before its work
    total_steps = planned - step
    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
    rng = np.random.default_rng(cfg.seed + start_epoch)
    run_steps, stop, t_run = 0, False, time.perf_counter()
    last_check = step
    best_score = best["selfcheck"] if best else -math.inf
    stale, saved_at = 0, time.monotonic()
    model.train()
    for epoch in range(start_epoch, epochs):
        try:
            t0, seen = time.perf_counter(), 0
            loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
            reported = -math.inf
            order = rng.permutation(train_pos)[:epoch_len]
            for start in range(0, len(order), cfg.batch_size):
                lr = learning_rate(cfg, step, planned)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x = to_batch(data.get(order[start : start + cfg.batch_size]), device, cl)
                with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                    loss, code = step_loss(model, net, objective, x, corrupt, views, local,
                                           target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if target is not None:
                    ema_update(target, model, ema_momentum(config.ema, step, planned))
                if adversary:  # then the discriminator, on this step's codes
                    with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                        d_loss = adversary(model, code)
                    optimizers[1].zero_grad(set_to_none=True)
                    d_loss.backward()
                    optimizers[1].step()
                step += 1
                run_steps += 1
                seen += len(x)
                loss_sum += loss.detach().float() * len(x)
                now = time.perf_counter()
                if run_steps == 20 and deadline < math.inf:  # fit the schedule to the cap
                    rate = run_steps / (now - t_run)
                    fits = step + int(rate * (deadline - time.monotonic()))
                    if fits < planned:
                        LOG.warning("%s: %d steps do not fit the %g-minute cap at %.1f steps/s;"
                                    " the schedule ends at step %d", method, planned,
                                    cfg.max_minutes, rate, fits)
                        planned, capped = fits, True
                    total_steps = run_steps + planned - step
                if on_progress and now - reported >= PROGRESS_SECONDS:
                    reported = now  # .item() waits for the GPU, so only a few times a second
                    on_progress(run_steps, total_steps, loss.item(), seen / (now - t0))
                if time.monotonic() > deadline or step >= planned:
                    capped = capped or step < planned
                    stop = True  # the budget ends this epoch early; it counts as done
                    break
            train_loss = loss_sum.item() / max(seen, 1)  # waits for the epoch's last step
            if not math.isfinite(train_loss):
                raise TrainingDiverged(f"training {method} diverged (loss {train_loss}) in epoch "
                                       f"{epoch + 1}; the last good checkpoint is kept. Try a "
                                       "lower --lr, or --fresh")
            seconds = time.perf_counter() - t0
            last = stop or epoch == epochs - 1
            score, improved = None, False
            if check is not None and (step - last_check >= cfg.check_every or last):
                score, last_check = float(check(encoder(model, device))), step
                if score > best_score:
                    best_score, stale, improved = score, 0, True
                    best = {"model": _cpu_state(model), "epoch": epoch + 1, "selfcheck": score}
                else:
                    stale += 1
            history.append(Epoch(epoch + 1, train_loss,
                                 validation_loss(arch, model, data, val_pos, cfg, device),
                                 seen / seconds, seconds, score, lr))
            LOG.info("%s", history[-1])
            if cfg.patience and stale >= cfg.patience:
                LOG.info("self-check has not improved for %d checks: stopping early", stale)
                stop = True
            # a tiny collection's epoch is a step or two: checkpoints every few seconds at most
            if (stop or epoch == epochs - 1 or improved
                    or time.monotonic() - saved_at >= cfg.checkpoint_seconds):
                save_checkpoint(checkpoint, method, model, optimizers, config, cfg, epoch + 1,
                                history, best, step, work, capped, target)
                saved_at = time.monotonic()
        except KeyboardInterrupt:  # keep the weights; a resumed run redoes this epoch
            save_checkpoint(checkpoint, method, model, optimizers, config, cfg, epoch,
                            [h for h in history if h.epoch <= epoch], best, step, work, capped,
                            target)
            raise
        if stop:
            break
    return history
