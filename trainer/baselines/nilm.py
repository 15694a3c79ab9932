"""NILM baselines: the classical methods of ``edge.signal.nilm``, a seq2seq CNN and seq2point
(Zhang et al. 2018)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.baselines.anomaly import best_f1_threshold
from trainer.baselines.batches import BaselineError, NILMBatch, NILMPrediction
from trainer.baselines.training import TrainConfig, predict_batched, train_regressor


class SignalNILM:
    """Adapter for a classical NILM method of ``edge.signal.nilm``. ``fit_fn(appliance_power_w,
    aggregate_w, ts_s)`` (training series concatenated, at most ``max_fit_samples``) returns a
    ``predict(aggregate_w, ts_s) -> {appliance: {"power_w", "on"}}`` callable, applied to each
    window; appliances the method does not report are predicted OFF at 0 W."""

    def __init__(self, name: str, fit_fn: Callable, max_fit_samples: int = 50_000) -> None:
        self.name = name
        self.fit_fn = fit_fn
        self.max_fit_samples = max_fit_samples
        self.predictor: Callable | None = None

    def fit(self, train: NILMBatch, val: NILMBatch) -> SignalNILM:
        n_win = max(1, self.max_fit_samples // train.load_w.shape[1])
        apps = {a: train.appliance_w[:n_win, j].reshape(-1) for j, a in enumerate(train.appliances)}
        self.predictor = self.fit_fn(apps, train.load_w[:n_win].reshape(-1), train.ts_s[:n_win].reshape(-1))
        return self

    def predict(self, batch: NILMBatch) -> NILMPrediction:
        if self.predictor is None:
            raise BaselineError(f"{self.name}.predict before fit")
        power = np.zeros(batch.appliance_w.shape)
        on = np.zeros(batch.appliance_w.shape, dtype=bool)
        for i in range(len(batch)):
            out = self.predictor(batch.load_w[i], batch.ts_s[i])
            for j, a in enumerate(batch.appliances):
                if a in out:
                    power[i, j] = np.asarray(out[a]["power_w"], dtype=np.float64)
                    on[i, j] = np.asarray(out[a]["on"], dtype=bool)
        return NILMPrediction(power, on)


class _Seq2SeqCNN(nn.Module):
    def __init__(self, n_app: int, channels: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv1d(1, channels, kernel, padding=pad), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=2 * pad, dilation=2), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=4 * pad, dilation=4), nn.ReLU(),
        )
        self.power = nn.Conv1d(channels, n_app, 1)
        self.on = nn.Conv1d(channels, n_app, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x.unsqueeze(1))
        return self.power(h), self.on(h)


@dataclass
class CNNDisaggregatorConfig:
    channels: int = 32
    kernel: int = 5
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, epochs=30))


def on_thresholds(logit: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Per appliance, the best-F1 ON threshold of [N, A, T] logits on validation windows (rare
    appliances would otherwise never cross a logit of 0); 0 where validation has no ON point."""
    out = np.zeros(logit.shape[1])
    for j in range(logit.shape[1]):
        if on[:, j].any():
            out[j] = best_f1_threshold(logit[:, j], on[:, j])
    return out


class CNNDisaggregator:
    """A dilated 1-D CNN, sequence to sequence: per-appliance power (regressed in units of the
    window's scale) and ON/OFF logits from the aggregate window."""

    name = "cnn_seq2seq"

    def __init__(self, cfg: CNNDisaggregatorConfig | None = None) -> None:
        self.cfg = cfg or CNNDisaggregatorConfig()
        self.net: _Seq2SeqCNN | None = None

    @staticmethod
    def _scale(b: NILMBatch) -> np.ndarray:
        return np.maximum(b.load_w.max(axis=1, keepdims=True), 1.0)

    def _arrays(self, b: NILMBatch) -> tuple[np.ndarray, ...]:
        scale = self._scale(b)
        return b.load_w / scale, b.appliance_w / scale[:, :, None], b.on.astype(np.float32)

    @staticmethod
    def _loss(model: nn.Module, x, y, on) -> torch.Tensor:
        power, logit = model(x)
        return F.mse_loss(power, y) + 0.1 * F.binary_cross_entropy_with_logits(logit, on)

    def fit(self, train: NILMBatch, val: NILMBatch) -> CNNDisaggregator:
        torch.manual_seed(self.cfg.train.seed)
        self.net = _Seq2SeqCNN(len(train.appliances), self.cfg.channels, self.cfg.kernel)
        self.log = train_regressor(self.net, self._arrays(train), self._arrays(val), self._loss,
                                   self.cfg.train, "cnn-nilm")
        _, logit = predict_batched(self.net, (val.load_w / self._scale(val),))
        self.on_thresholds = on_thresholds(logit, val.on)
        return self

    def predict(self, batch: NILMBatch) -> NILMPrediction:
        if self.net is None:
            raise BaselineError("CNNDisaggregator.predict before fit")
        power, logit = predict_batched(self.net, (batch.load_w / self._scale(batch),))
        power = np.maximum(power * self._scale(batch)[:, :, None], 0.0)
        return NILMPrediction(power, logit > self.on_thresholds[None, :, None])


# --- seq2point (Zhang et al. 2018) --------------------------------------------------------------

S2P_KERNELS = (10, 8, 6, 5, 5)  # Zhang et al. 2018, Fig. 1: five convolutions, stride 1, ReLU
S2P_CHANNELS = (30, 30, 40, 50, 50)


class _Seq2PointNet(nn.Module):
    """Seq2point as one fully convolutional pass: the five convolutions of the paper ("valid"), then
    its dense layer over the whole window written as a convolution whose kernel spans the rest of
    the window, then the output layer. Applied to a series of S + W - 1 samples it returns the S
    midpoint predictions of the S windows of W samples inside it, exactly as S separate seq2point
    calls would, at a fraction of the cost. Output [B, 2A, S]: A powers (kW) then A ON logits."""

    def __init__(self, n_app: int, window: int, hidden: int) -> None:
        super().__init__()
        layers, c_in = [], 1
        for c, k in zip(S2P_CHANNELS, S2P_KERNELS, strict=True):
            layers += [nn.Conv1d(c_in, c, k), nn.ReLU()]
            c_in = c
        rest = window - sum(k - 1 for k in S2P_KERNELS)
        if rest < 1:
            raise BaselineError(f"seq2point window {window} is shorter than its convolutions")
        self.body = nn.Sequential(*layers, nn.Conv1d(c_in, hidden, rest), nn.ReLU(), nn.Conv1d(hidden, 2 * n_app, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.unsqueeze(1))


@dataclass
class Seq2PointConfig:
    """``window``: samples per input window (odd; the paper's 599 at 8 s is 80 min; the default 199
    at 10 s is 33 min, a kettle or microwave use with its context, for the CPU budget). ``hidden``:
    the dense layer (the paper's 1024, narrowed for the same reason). The paper trains one network
    per appliance; here one network has an output per appliance (and an ON logit each)."""

    window: int = 199
    hidden: int = 128
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, epochs=8, batch_size=8))


class Seq2Point:
    """Seq2point NILM (Zhang, Zhong, Wang, Goddard, Sutton, AAAI 2018): a window of the aggregate
    (standardised by the training set's mean and std) -> each appliance's power at its midpoint.
    Every sample of a series is predicted from the window centred on it (edges padded with the
    first/last value). ON is the ON logit above its best-F1 threshold on validation."""

    name = "seq2point"

    def __init__(self, cfg: Seq2PointConfig | None = None) -> None:
        self.cfg = cfg or Seq2PointConfig()
        if self.cfg.window % 2 == 0:
            raise BaselineError(f"seq2point window must be odd (a midpoint), got {self.cfg.window}")
        self.net: _Seq2PointNet | None = None

    def _inputs(self, load_w: np.ndarray) -> np.ndarray:
        half = self.cfg.window // 2
        x = (np.asarray(load_w, np.float64) - self.mean_w) / self.std_w
        return np.pad(x, ((0, 0), (half, half)), mode="edge").astype(np.float32)

    @staticmethod
    def _loss(model: nn.Module, x, y_kw, on) -> torch.Tensor:
        out = model(x)
        n_app = y_kw.shape[1]
        return F.mse_loss(out[:, :n_app], y_kw) + F.binary_cross_entropy_with_logits(out[:, n_app:], on)

    def fit(self, train: NILMBatch, val: NILMBatch) -> Seq2Point:
        torch.manual_seed(self.cfg.train.seed)
        self.mean_w, self.std_w = float(np.mean(train.load_w)), float(np.std(train.load_w)) or 1.0
        self.net = _Seq2PointNet(len(train.appliances), self.cfg.window, self.cfg.hidden)

        def arrays(b: NILMBatch) -> tuple[np.ndarray, ...]:
            return self._inputs(b.load_w), b.appliance_w / 1000.0, b.on.astype(np.float32)

        self.log = train_regressor(self.net, arrays(train), arrays(val), self._loss, self.cfg.train, "seq2point")
        _, logit = self._raw(val.load_w, len(val.appliances))
        self.on_thresholds = on_thresholds(logit, val.on)
        return self

    def _raw(self, load_w: np.ndarray, n_app: int) -> tuple[np.ndarray, np.ndarray]:
        (out,) = predict_batched(self.net, (self._inputs(load_w),), batch=8)
        return np.maximum(out[:, :n_app], 0.0) * 1000.0, out[:, n_app:]

    def predict(self, batch: NILMBatch) -> NILMPrediction:
        if self.net is None:
            raise BaselineError("Seq2Point.predict before fit")
        power, logit = self._raw(batch.load_w, len(batch.appliances))
        on = logit > self.on_thresholds[None, :, None]
        return NILMPrediction(np.where(on, power, 0.0), on)
