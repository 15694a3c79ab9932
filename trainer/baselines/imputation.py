"""Imputation baselines: linear interpolation, the seasonal fill, the classical fillers of
``edge.signal``, seed 004's BiLSTM."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from trainer.baselines.batches import BaselineError, ImputationBatch
from trainer.baselines.training import TrainConfig, instance_stats, predict_batched, train_regressor


def interpolate_rows(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Linear interpolation of each row over its observed points; leading/trailing gaps hold the
    nearest observed value; a row with nothing observed stays NaN (nothing to interpolate from)."""
    out = np.array(values, dtype=np.float64, copy=True)
    steps = np.arange(values.shape[1])
    for i in range(len(values)):
        obs = observed[i].astype(bool)
        if obs.all():
            continue
        if obs.any():
            out[i, ~obs] = np.interp(steps[~obs], steps[obs], values[i, obs])
        else:
            out[i] = np.nan
    return out


class LinearInterpolation:
    name = "linear_interp"

    def fit(self, train: ImputationBatch, val: ImputationBatch) -> LinearInterpolation:
        return self

    def predict(self, batch: ImputationBatch) -> np.ndarray:
        return interpolate_rows(batch.observed_load(), batch.observed)


class SeasonalImputer:
    """Yesterday's value at the same time of day (``lag_days`` = 7: the same day last week, read
    from the batch's ``context_w``; yesterday where that day is missing), shifted so that its mean
    over the points observed today matches today's (a level-matched seasonal naive fill)."""

    name = "seasonal_fill"

    def __init__(self, lag_days: int = 1) -> None:
        if lag_days < 1:
            raise BaselineError(f"lag_days must be >= 1, got {lag_days}")
        self.lag_days = lag_days
        if lag_days == 7:
            self.name = "previous_week_fill"
        elif lag_days != 1:
            self.name = f"seasonal_fill_{lag_days}d"

    def fit(self, train: ImputationBatch, val: ImputationBatch) -> SeasonalImputer:
        return self

    def _reference(self, batch: ImputationBatch) -> np.ndarray:
        if self.lag_days == 1:
            return batch.previous_w
        if batch.context_w is None or batch.context_w.shape[1] < self.lag_days:
            raise BaselineError(f"a {self.lag_days}-day seasonal fill needs {self.lag_days} days of context_w")
        k = batch.context_w.shape[1] - self.lag_days
        there = batch.context_mask[:, k:k + 1] > 0.5
        return np.where(there, batch.context_w[:, k], batch.previous_w)

    def predict(self, batch: ImputationBatch) -> np.ndarray:
        obs = batch.observed
        ref = self._reference(batch)
        diff = np.where(obs, batch.load_w - ref, np.nan)
        offset = np.nan_to_num(np.nanmean(np.where(obs.any(1, keepdims=True), diff, 0.0), 1, keepdims=True))
        filled = np.maximum(ref + offset, 0.0)
        return np.where(obs, batch.load_w, filled)


class SignalFiller:
    """Adapter for a classical gap filler of ``edge.signal`` with ``fill(values, missing, ts_s)``
    (values with NaN or anything at missing points, boolean ``missing``, UTC seconds), applied row
    by row."""

    def __init__(self, name: str, filler: object) -> None:
        self.name = name
        self.filler = filler

    def fit(self, train: ImputationBatch, val: ImputationBatch) -> SignalFiller:
        return self  # the classical fillers have no trained state

    def predict(self, batch: ImputationBatch) -> np.ndarray:
        values = batch.observed_load()
        out = np.empty_like(values, dtype=np.float64)
        for i in range(len(values)):
            filled = np.asarray(self.filler(values[i], ~batch.observed[i], batch.ts_s[i]), dtype=np.float64)
            out[i] = filled
        return np.where(batch.observed, batch.load_w, out)


def training_masks(n: int, length: int, rates: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Observed masks [n, length] for training imputers: each window draws a rate from ``rates``;
    half the windows lose random points, the other half one contiguous block."""
    rate = rng.choice(rates, size=(n, 1))
    observed = rng.random((n, length)) >= rate
    for i in np.flatnonzero(rng.random(n) < 0.5):
        n_miss = int(round(rate[i, 0] * length))
        start = rng.integers(0, length - n_miss + 1)
        observed[i] = True
        observed[i, start : start + n_miss] = False
    return observed


class _BiLSTMImputerNet(nn.Module):
    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(2, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(torch.stack([x * obs, obs], dim=-1))
        return self.head(self.drop(out)).squeeze(-1)


@dataclass
class BiLSTMImputerConfig:
    """Seed 004's BiLSTM (128 units, dropout 0.2) as a learned imputer; training masks follow the
    evaluation's missing rates, drawn afresh for each window."""

    hidden: int = 128
    dropout: float = 0.2
    missing_rates: tuple[float, ...] = (0.1, 0.3, 0.5)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3))


class BiLSTMImputer:
    name = "bilstm"

    def __init__(self, cfg: BiLSTMImputerConfig | None = None) -> None:
        self.cfg = cfg or BiLSTMImputerConfig()
        self.net: _BiLSTMImputerNet | None = None

    @staticmethod
    def _normalise(load_w: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, ...]:
        mean, std = instance_stats(np.where(observed, load_w, np.nan))
        return np.nan_to_num((load_w - mean) / std), mean, std

    def _training_arrays(self, b: ImputationBatch, seed: int) -> tuple[np.ndarray, ...]:
        observed = training_masks(len(b), b.load_w.shape[1], self.cfg.missing_rates,
                                  np.random.default_rng(seed))
        x, _, _ = self._normalise(b.load_w, observed)
        return x, observed.astype(np.float32), x, (~observed).astype(np.float32)

    @staticmethod
    def _loss(model: nn.Module, x, obs, y, miss) -> torch.Tensor:
        err = (model(x, obs) - y) ** 2
        return (err * miss).sum() / miss.sum().clamp_min(1.0)

    def fit(self, train: ImputationBatch, val: ImputationBatch) -> BiLSTMImputer:
        torch.manual_seed(self.cfg.train.seed)
        self.net = _BiLSTMImputerNet(self.cfg.hidden, self.cfg.dropout)
        tr = self._training_arrays(train, self.cfg.train.seed)
        va = self._training_arrays(val, self.cfg.train.seed + 1)
        self.log = train_regressor(self.net, tr, va, self._loss, self.cfg.train, "bilstm-impute")
        return self

    def predict(self, batch: ImputationBatch) -> np.ndarray:
        if self.net is None:
            raise BaselineError("BiLSTMImputer.predict before fit")
        x, mean, std = self._normalise(batch.load_w, batch.observed)
        x = np.where(batch.observed, x, 0.0)
        (out,) = predict_batched(self.net, (x, batch.observed.astype(np.float32)))
        return np.where(batch.observed, batch.load_w, np.maximum(out * std + mean, 0.0))
