"""Forecasting baselines: seasonal naive, seed 004's LSTM, DLinear."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.baselines.batches import (
    STEPS_PER_DAY,
    BaselineError,
    ForecastBatch,
    ForecastPrediction,
)
from trainer.baselines.training import TrainConfig, instance_stats, predict_batched, train_regressor


class SeasonalNaive:
    """Day-ahead: the same 48 half-hours one day or one week earlier (the lag with the lower
    validation MAE); hour-ahead: persistence of the last observed value."""

    name = "seasonal_naive"
    LAGS_DAYS = (1, 7)

    def __init__(self) -> None:
        self.lag_days: int | None = None

    def _day_ahead(self, history_w: np.ndarray, lag_days: int) -> np.ndarray:
        need = lag_days * STEPS_PER_DAY
        if history_w.shape[1] < need:
            raise BaselineError(f"seasonal naive with lag {lag_days} d needs {need} history steps")
        start = history_w.shape[1] - need
        return history_w[:, start : start + STEPS_PER_DAY]

    def fit(self, train: ForecastBatch, val: ForecastBatch) -> SeasonalNaive:
        lags = [d for d in self.LAGS_DAYS if val.history_w.shape[1] >= d * STEPS_PER_DAY]
        errors = {d: np.mean(np.abs(self._day_ahead(val.history_w, d) - val.target_w)) for d in lags}
        self.lag_days = min(errors, key=errors.get)
        return self

    def predict(self, batch: ForecastBatch) -> ForecastPrediction:
        if self.lag_days is None:
            raise BaselineError("SeasonalNaive.predict before fit")
        last = batch.history_w[:, -1:]
        return ForecastPrediction(self._day_ahead(batch.history_w, self.lag_days), np.repeat(last, 2, 1))


class WeeklyNaive(SeasonalNaive):
    """Same day last week: day-ahead and hour-ahead are the same half-hours one week earlier
    (seed 004's weekly naive; no choice on validation)."""

    name = "weekly_naive"
    LAGS_DAYS = (7,)

    def predict(self, batch: ForecastBatch) -> ForecastPrediction:
        if self.lag_days is None:
            raise BaselineError("WeeklyNaive.predict before fit")
        day = self._day_ahead(batch.history_w, 7)
        return ForecastPrediction(day, day[:, :2])


class _LSTMNet(nn.Module):
    def __init__(self, n_features: int, n_cov: int, hidden: int, dropout: float, horizon: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden + n_cov, horizon)

    def forward(self, seq: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(seq)
        return self.head(torch.cat([self.drop(out[:, -1]), cov], dim=-1))


@dataclass
class LSTMConfig:
    """Seed 004 Table 1 / §2.4: sequence length 64, LSTM hidden 128, dropout 0.2."""

    lookback: int = 64
    hidden: int = 128
    dropout: float = 0.2
    train: TrainConfig = field(default_factory=TrainConfig)


class LSTMForecaster:
    """Seed 004's LSTM, made direct multi-horizon: the last hidden state plus the horizon
    covariates feed one dense layer with 48 + 2 outputs (day-ahead and hour-ahead heads). Per-step
    inputs are the normalised load and the step covariates (time of day, weekday, temperature),
    as seed 004 feeds load, calendar and weather per step."""

    name = "lstm"

    def __init__(self, cfg: LSTMConfig | None = None) -> None:
        self.cfg = cfg or LSTMConfig()
        self.net: _LSTMNet | None = None

    def _arrays(self, b: ForecastBatch) -> tuple[np.ndarray, ...]:
        hist = b.history_w[:, -self.cfg.lookback :]
        mean, std = instance_stats(hist)
        load = ((hist - mean) / std)[..., None]
        seq = np.concatenate([load, b.step_covariates[:, -self.cfg.lookback :]], axis=-1)
        target = np.concatenate([b.target_w, b.target_w[:, :2]], axis=1)
        return seq, b.covariates, (target - mean) / std, mean, std

    @staticmethod
    def _loss(model: nn.Module, seq, cov, y) -> torch.Tensor:
        return F.mse_loss(model(seq, cov), y)

    def fit(self, train: ForecastBatch, val: ForecastBatch) -> LSTMForecaster:
        torch.manual_seed(self.cfg.train.seed)
        tr, va = self._arrays(train), self._arrays(val)
        n_features, n_cov = tr[0].shape[-1], tr[1].shape[1]
        self.net = _LSTMNet(n_features, n_cov, self.cfg.hidden, self.cfg.dropout, STEPS_PER_DAY + 2)
        self.log = train_regressor(self.net, tr[:3], va[:3], self._loss, self.cfg.train, "lstm")
        return self

    def predict(self, batch: ForecastBatch) -> ForecastPrediction:
        if self.net is None:
            raise BaselineError("LSTMForecaster.predict before fit")
        seq, cov, _, mean, std = self._arrays(batch)
        (out,) = predict_batched(self.net, (seq, cov))
        out = out * std + mean
        return ForecastPrediction(out[:, :STEPS_PER_DAY], out[:, STEPS_PER_DAY:])


def moving_average(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """DLinear's trend: a moving average over the last axis, edges padded by repetition."""
    front = x[..., :1].repeat_interleave((kernel - 1) // 2, dim=-1)
    back = x[..., -1:].repeat_interleave(kernel // 2, dim=-1)
    padded = torch.cat([front, x, back], dim=-1)
    return F.avg_pool1d(padded.unsqueeze(1), kernel, stride=1).squeeze(1)


class _DLinearNet(nn.Module):
    def __init__(self, lookback: int, horizon: int, n_cov: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.trend = nn.Linear(lookback, horizon)
        self.seasonal = nn.Linear(lookback, horizon)
        self.cov = nn.Linear(n_cov, horizon)

    def forward(self, x: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        trend = moving_average(x, self.kernel)
        return self.trend(trend) + self.seasonal(x - trend) + self.cov(cov)


@dataclass
class DLinearConfig:
    """Seed 004 Table 1: kernel 25, one model shared by all series (individual = False). The
    lookback is one week so that the linear maps can learn the daily and weekly lags."""

    lookback: int = 7 * STEPS_PER_DAY
    kernel: int = 25
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, batch_size=64))


class DLinearForecaster:
    """DLinear (Zeng et al.) on the instance-normalised history, with a linear covariate term so
    that it sees the same calendar and weather information as the other methods."""

    name = "dlinear"

    def __init__(self, cfg: DLinearConfig | None = None) -> None:
        self.cfg = cfg or DLinearConfig()
        self.net: _DLinearNet | None = None

    def _arrays(self, b: ForecastBatch) -> tuple[np.ndarray, ...]:
        if b.history_w.shape[1] < self.cfg.lookback:
            raise BaselineError(f"DLinear needs {self.cfg.lookback} history steps, got {b.history_w.shape[1]}")
        hist = b.history_w[:, -self.cfg.lookback :]
        mean, std = instance_stats(hist)
        target = np.concatenate([b.target_w, b.target_w[:, :2]], axis=1)
        return (hist - mean) / std, b.covariates, (target - mean) / std, mean, std

    @staticmethod
    def _loss(model: nn.Module, x, cov, y) -> torch.Tensor:
        return F.mse_loss(model(x, cov), y)

    def fit(self, train: ForecastBatch, val: ForecastBatch) -> DLinearForecaster:
        torch.manual_seed(self.cfg.train.seed)
        tr, va = self._arrays(train), self._arrays(val)
        self.net = _DLinearNet(self.cfg.lookback, STEPS_PER_DAY + 2, tr[1].shape[1], self.cfg.kernel)
        self.log = train_regressor(self.net, tr[:3], va[:3], self._loss, self.cfg.train, "dlinear")
        return self

    def predict(self, batch: ForecastBatch) -> ForecastPrediction:
        if self.net is None:
            raise BaselineError("DLinearForecaster.predict before fit")
        x, cov, _, mean, std = self._arrays(batch)
        (out,) = predict_batched(self.net, (x, cov))
        out = out * std + mean
        return ForecastPrediction(out[:, :STEPS_PER_DAY], out[:, STEPS_PER_DAY:])
