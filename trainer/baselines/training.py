"""What the learned baselines share: seed 004's optimisation schedule on ``trainer.loop``, the
validation loss, batched prediction and instance statistics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from trainer.loop import LoopConfig, TrainLoop


@dataclass
class TrainConfig:
    """Optimisation schedule of seed 004 (§2.4): Adam, MSE, batch 32, 40 epochs, lr 1e-4 halved on a
    validation plateau of 3 epochs, early stopping after 10, best-validation weights kept.
    ``max_train_windows`` caps the windows per epoch (random subset each epoch) for CPU budgets."""

    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-4
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    early_stop_patience: int = 10
    max_train_windows: int | None = None
    seed: int = 0
    progress: bool = True
    checkpoint: str | None = None  # resume file: training continues from it after an interruption


def _to_tensors(arrays: tuple[np.ndarray, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32) for a in arrays)


def train_regressor(
    model: nn.Module,
    train_xy: tuple[np.ndarray, ...],
    val_xy: tuple[np.ndarray, ...],
    loss_fn: Callable[..., torch.Tensor],
    cfg: TrainConfig,
    desc: str,
) -> list[dict[str, float]]:
    """Fit ``model`` with seed 004's schedule on ``trainer.loop``. ``train_xy``/``val_xy`` are
    tuples of arrays whose first axis is the sample; ``loss_fn(model, *tensors)`` returns the mean
    loss. Each epoch takes a fresh random subset of ``max_train_windows``. Returns the log."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_t, val_t = _to_tensors(train_xy), _to_tensors(val_xy)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    n = len(train_t[0])
    per_epoch = -(-min(cfg.max_train_windows or n, n) // cfg.batch_size)

    def epoch_batches(epoch: int, skip: int):
        order = rng.permutation(n)[: cfg.max_train_windows or n]
        for start in range(skip * cfg.batch_size, len(order), cfg.batch_size):
            idx = torch.as_tensor(order[start : start + cfg.batch_size])
            yield tuple(t[idx] for t in train_t)

    loop = TrainLoop(model, opt, LoopConfig(epochs=cfg.epochs, patience=cfg.early_stop_patience,
                                            min_delta=1e-7, progress=cfg.progress, desc=desc),
                     scheduler=sched, checkpoint=cfg.checkpoint,
                     fingerprint={"desc": desc, **asdict(cfg), "checkpoint": None},
                     extra_state=lambda: {"rng": rng.bit_generator.state},
                     load_extra_state=lambda extra: setattr(rng.bit_generator, "state", extra["rng"]))
    state = loop.fit(epoch_batches, per_epoch, lambda batch, _st: loss_fn(model, *batch),
                     lambda: evaluate_loss(model, val_t, loss_fn))
    model.eval()
    return state.history


@torch.no_grad()
def evaluate_loss(model: nn.Module, tensors: tuple[torch.Tensor, ...], loss_fn, batch: int = 1024) -> float:
    model.eval()
    n, total = len(tensors[0]), 0.0
    for start in range(0, n, batch):
        total += loss_fn(model, *(t[start : start + batch] for t in tensors)).item() * min(batch, n - start)
    return total / max(n, 1)


def instance_stats(x: np.ndarray, axis: int = -1, floor_w: float = 10.0,
                   floor_frac: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each row (NaN ignored), keeping ``axis`` as size 1. The std is floored at
    ``max(floor_w, floor_frac * |mean|)``: a flat stretch (an empty house, a night) has a std of a
    few W, and dividing the next day by it would make single windows dominate an MSE loss."""
    mean = np.nan_to_num(np.nanmean(x, axis=axis, keepdims=True))
    std = np.nan_to_num(np.nanstd(x, axis=axis, keepdims=True))
    return mean, np.maximum(std, np.maximum(floor_w, floor_frac * np.abs(mean)))


@torch.no_grad()
def predict_batched(model: nn.Module, arrays: tuple[np.ndarray, ...], batch: int = 2048) -> list[np.ndarray]:
    """Run ``model(*tensors)`` in batches; returns one array per model output."""
    model.eval()
    tensors, outs = _to_tensors(arrays), []
    for start in range(0, len(tensors[0]), batch):
        out = model(*(t[start : start + batch] for t in tensors))
        outs.append([o.numpy() for o in (out if isinstance(out, tuple) else (out,))])
    return [np.concatenate(parts) for parts in zip(*outs, strict=True)]
