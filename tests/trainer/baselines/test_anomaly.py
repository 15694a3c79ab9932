"""Anomaly detection baselines: thresholds, z-score, CNN detector."""

from __future__ import annotations

import numpy as np

from tests.trainer.baselines.conftest import L, fast, periodic_days
from trainer import baselines as b


def test_best_f1_threshold_separates_a_separable_set():
    score = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    label = np.array([0, 0, 0, 1, 1])
    t = b.best_f1_threshold(score, label)
    assert 0.3 < t < 0.8


def anomaly_batch(n: int, seed: int) -> b.AnomalyBatch:
    rng = np.random.default_rng(seed)
    series = periodic_days(8, n, seed=seed)
    window = series[:, 7 * L :].copy()
    history = series[:, : 7 * L]
    label = (rng.random(n) < 0.5).astype(np.int8)
    point = np.zeros_like(window, dtype=np.int8)
    for i in np.flatnonzero(label):
        s = rng.integers(0, L - 16)
        window[i, s : s + 16] *= 1.6
        point[i, s : s + 16] = 1
    return b.AnomalyBatch(window, history, label, point, np.where(label, "scaling", "none"))


def test_zscore_detects_scaling_attacks():
    train, val, test = anomaly_batch(60, 1), anomaly_batch(60, 2), anomaly_batch(100, 3)
    pred = b.ZScoreDetector().fit(train, val).predict(test)
    acc = np.mean(pred.window_flag == test.window_label.astype(bool))
    assert acc > 0.9


def test_cnn_detector_beats_chance():
    train, val, test = anomaly_batch(400, 1), anomaly_batch(100, 2), anomaly_batch(200, 3)
    cfg = b.CNNDetectorConfig(channels=16, train=fast(lr=3e-3, epochs=15, batch=32))
    pred = b.CNNDetector(cfg).fit(train, val).predict(test)
    acc = np.mean(pred.window_flag == test.window_label.astype(bool))
    majority = max(test.window_label.mean(), 1 - test.window_label.mean())
    assert acc > majority + 0.1
