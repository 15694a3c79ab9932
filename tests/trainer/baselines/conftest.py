"""Helpers of the baseline tests: easy synthetic signals every learned baseline must learn."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import baselines as b

L = b.STEPS_PER_DAY


def periodic_days(n_days: int, n_series: int, seed: int = 0, noise_w: float = 10.0) -> np.ndarray:
    """[n_series, n_days * 48] clean daily-periodic loads with a weekend bump and per-series level."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_days * L)
    day = 400 + 250 * np.sin(2 * np.pi * (t % L) / L) + 300 * (np.abs(t % L - 38) < 3)
    weekend = 150 * (((t // L) % 7) >= 5)
    level = rng.uniform(0.7, 1.5, (n_series, 1))
    return level * (day + weekend) + rng.normal(0, noise_w, (n_series, t.size))


def forecast_batch(series: np.ndarray, stride: int = 12, hist_days: int = 7) -> b.ForecastBatch:
    hist = hist_days * L
    tod = np.arange(series.shape[1]) % L * 2 * np.pi / L
    rows = [(i, o) for i in range(len(series)) for o in range(hist, series.shape[1] - L + 1, stride)]
    h = np.array([r[0] for r in rows])
    o = np.array([r[1] for r in rows])
    history = np.stack([series[i, oo - hist : oo] for i, oo in rows])
    target = np.stack([series[i, oo : oo + L] for i, oo in rows])
    cov = np.stack([np.sin(tod[o]), np.cos(tod[o]), ((o // L) % 7 >= 5).astype(float)], 1).astype(np.float32)
    step = np.stack([np.stack([np.sin(tod[oo - hist : oo]), np.cos(tod[oo - hist : oo])], -1) for oo in o])
    return b.ForecastBatch(history, cov, step.astype(np.float32), target, h)


@pytest.fixture(scope="module")
def forecast_splits():
    return forecast_batch(periodic_days(21, 6, seed=1)), forecast_batch(periodic_days(21, 2, seed=2)), \
        forecast_batch(periodic_days(21, 2, seed=3))


def fast(lr: float = 3e-3, epochs: int = 8, batch: int = 32) -> b.TrainConfig:
    return b.TrainConfig(epochs=epochs, lr=lr, batch_size=batch, progress=False, early_stop_patience=8)


def mae(a, c) -> float:
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(c))))
