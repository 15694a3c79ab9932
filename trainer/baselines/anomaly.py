"""Anomaly detection baselines: the household z-score and a small 1-D CNN classifier."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.baselines.batches import AnomalyBatch, AnomalyPrediction, BaselineError
from trainer.baselines.training import TrainConfig, instance_stats, predict_batched, train_regressor


def best_f1_threshold(score: np.ndarray, label: np.ndarray) -> float:
    """The threshold (flag = score > t) with the highest F1 on the given (validation) scores."""
    score, label = np.asarray(score, float).ravel(), np.asarray(label).ravel().astype(bool)
    order = np.argsort(-score)
    s, lab = score[order], label[order]
    tp = np.cumsum(lab)
    fp = np.cumsum(~lab)
    f1 = 2 * tp / np.maximum(tp + fp + lab.sum(), 1)
    distinct = np.r_[s[1:] < s[:-1], True]  # only cut between different scores
    f1 = np.where(distinct, f1, -1.0)
    i = int(np.argmax(f1))
    return float((s[i] + s[i + 1]) / 2) if i + 1 < len(s) else float(s[i] - 1e-9)


@dataclass
class ZScoreConfig:
    smooth_steps: int = 8  # moving mean of the signed z over this many steps (4 h at 30 min)
    scale_floor_w: float = 20.0  # at least this scale (W), so flat nights do not explode z


class ZScoreDetector:
    """Each point against the same time of day in the household's own history, robustly: z =
    (x - median) / (1.4826 MAD) over the history days, so appliance spikes in the history do not
    inflate the scale. Scaling and ramping attacks shift a run of points the same way while
    spikes are short, so the signed z is averaged over ``smooth_steps`` before taking |.|; the
    window score is its maximum. Thresholds are the best-F1 ones on the validation households."""

    name = "zscore"

    def __init__(self, cfg: ZScoreConfig | None = None) -> None:
        self.cfg = cfg or ZScoreConfig()
        self.window_threshold: float | None = None
        self.point_threshold: float | None = None

    def _scores(self, b: AnomalyBatch) -> tuple[np.ndarray, np.ndarray]:
        steps = b.window_w.shape[1]
        hist = b.history_w.reshape(len(b), -1, steps)
        median = np.median(hist, axis=1)
        mad = np.median(np.abs(hist - median[:, None, :]), axis=1)
        z = (b.window_w - median) / np.maximum(1.4826 * mad, self.cfg.scale_floor_w)
        kernel = np.ones(self.cfg.smooth_steps) / self.cfg.smooth_steps
        smooth = np.abs(np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, z))
        return smooth.max(axis=1), smooth

    def fit(self, train: AnomalyBatch, val: AnomalyBatch) -> ZScoreDetector:
        window, point = self._scores(val)
        self.window_threshold = best_f1_threshold(window, val.window_label)
        self.point_threshold = best_f1_threshold(point, val.point_label)
        return self

    def predict(self, batch: AnomalyBatch) -> AnomalyPrediction:
        if self.window_threshold is None:
            raise BaselineError("ZScoreDetector.predict before fit")
        window, point = self._scores(batch)
        return AnomalyPrediction(window, point, window > self.window_threshold, point > self.point_threshold)


class _CNNDetectorNet(nn.Module):
    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv1d(1, channels, kernel, padding=pad), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=pad, dilation=1), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=2 * pad, dilation=2), nn.ReLU(),
        )
        self.point = nn.Conv1d(channels, 1, 1)
        self.window = nn.Linear(2 * channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x.unsqueeze(1))
        pooled = torch.cat([h.mean(-1), h.amax(-1)], dim=-1)
        return self.window(pooled).squeeze(-1), self.point(h).squeeze(1)


@dataclass
class CNNDetectorConfig:
    channels: int = 32
    kernel: int = 5
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, epochs=30))


class CNNDetector:
    """A small 1-D CNN on the instance-normalised window alone (the unified model's input), with a
    window logit and per-point logits; decision thresholds are the best-F1 ones on validation."""

    name = "cnn"

    def __init__(self, cfg: CNNDetectorConfig | None = None) -> None:
        self.cfg = cfg or CNNDetectorConfig()
        self.net: _CNNDetectorNet | None = None

    @staticmethod
    def _x(b: AnomalyBatch) -> np.ndarray:
        mean, std = instance_stats(b.window_w)
        return (b.window_w - mean) / std

    @staticmethod
    def _loss(model: nn.Module, x, yw, yp) -> torch.Tensor:
        window, point = model(x)
        return F.binary_cross_entropy_with_logits(window, yw) + F.binary_cross_entropy_with_logits(point, yp)

    def fit(self, train: AnomalyBatch, val: AnomalyBatch) -> CNNDetector:
        torch.manual_seed(self.cfg.train.seed)
        self.net = _CNNDetectorNet(self.cfg.channels, self.cfg.kernel)
        arrays = [(self._x(b), b.window_label.astype(np.float32), b.point_label.astype(np.float32))
                  for b in (train, val)]
        self.log = train_regressor(self.net, arrays[0], arrays[1], self._loss, self.cfg.train, "cnn-anomaly")
        window, point = predict_batched(self.net, (self._x(val),))
        self.window_threshold = best_f1_threshold(window, val.window_label)
        self.point_threshold = best_f1_threshold(point, val.point_label)
        return self

    def predict(self, batch: AnomalyBatch) -> AnomalyPrediction:
        if self.net is None:
            raise BaselineError("CNNDetector.predict before fit")
        window, point = predict_batched(self.net, (self._x(batch),))
        return AnomalyPrediction(window, point, window > self.window_threshold, point > self.point_threshold)
