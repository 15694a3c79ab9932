"""Baselines: hand-checked pieces, and each learned baseline beating a trivial predictor on an
easy synthetic signal (real torch training on tiny data, no mocks)."""

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


# ----------------------------------------------------------------------------- hand-checked pieces


def test_interpolate_rows_by_hand():
    values = np.array([[0.0, np.nan, 4.0, np.nan], [np.nan, 2.0, np.nan, np.nan]])
    observed = ~np.isnan(values)
    out = b.interpolate_rows(values, observed)
    np.testing.assert_allclose(out, [[0, 2, 4, 4], [2, 2, 2, 2]])


def test_best_f1_threshold_separates_a_separable_set():
    score = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    label = np.array([0, 0, 0, 1, 1])
    t = b.best_f1_threshold(score, label)
    assert 0.3 < t < 0.8


def test_moving_average_is_a_centered_mean_with_repeated_edges():
    import torch

    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    out = b.moving_average(x, 3)
    np.testing.assert_allclose(out.numpy(), [[4 / 3, 2, 3, 4, 14 / 3]], rtol=1e-6)


def test_training_masks_have_the_drawn_rates():
    obs = b.training_masks(400, L, (0.5,), np.random.default_rng(0))
    assert obs.shape == (400, L)
    assert abs((~obs).mean() - 0.5) < 0.03


def test_predict_before_fit_is_a_clear_error(forecast_splits):
    _, _, test = forecast_splits
    for method in (b.SeasonalNaive(), b.LSTMForecaster(), b.DLinearForecaster()):
        with pytest.raises(b.BaselineError):
            method.predict(test)


# ----------------------------------------------------------------------------- forecasting


def test_seasonal_naive_picks_the_weekly_lag_and_persists(forecast_splits):
    train, val, test = forecast_splits
    m = b.SeasonalNaive().fit(train, val)
    assert m.lag_days == 7  # the weekend bump makes "same day last week" the better lag
    pred = m.predict(test)
    np.testing.assert_array_equal(pred.hour_ahead_w, np.repeat(test.history_w[:, -1:], 2, 1))
    np.testing.assert_array_equal(pred.day_ahead_w, test.history_w[:, :L])


@pytest.mark.parametrize("cls, cfg", [
    (b.LSTMForecaster, lambda: b.LSTMConfig(train=fast())),
    (b.DLinearForecaster, lambda: b.DLinearConfig(train=fast(lr=1e-2, epochs=15))),
])
def test_learned_forecasters_beat_the_mean(forecast_splits, cls, cfg):
    train, val, test = forecast_splits
    pred = cls(cfg()).fit(train, val).predict(test)
    mean_pred = np.broadcast_to(train.target_w.mean(), test.target_w.shape)
    assert mae(pred.day_ahead_w, test.target_w) < 0.6 * mae(mean_pred, test.target_w)
    assert mae(pred.hour_ahead_w, test.target_w[:, :2]) < 0.6 * mae(mean_pred[:, :2], test.target_w[:, :2])


# ----------------------------------------------------------------------------- imputation


def imputation_batch(series: np.ndarray, rate: float, seed: int) -> b.ImputationBatch:
    days = series.reshape(-1, L)
    prev = np.roll(days, 1, axis=0)
    obs = b.training_masks(len(days), L, (rate,), np.random.default_rng(seed))
    ts = 1_700_000_000 + 1800 * np.arange(L)[None, :].repeat(len(days), 0)
    return b.ImputationBatch(days[1:], obs[1:], prev[1:], ts[1:], np.zeros(len(days) - 1, int))


def test_linear_and_signal_filler_agree_and_fill_only_missing():
    from edge.signal import gapfill

    batch = imputation_batch(periodic_days(6, 2), 0.3, seed=0)
    lin = b.LinearInterpolation().predict(batch)
    sig = b.SignalFiller("signal_linear", lambda v, m, t: gapfill.fill("linear", v, m, t)).predict(batch)
    np.testing.assert_allclose(sig, lin, rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(lin[batch.observed], batch.load_w[batch.observed])


def test_seasonal_imputer_is_exact_on_a_repeating_day():
    days = np.tile(np.linspace(100, 500, L), (4, 1))
    obs = np.ones_like(days, bool)
    obs[:, 10:30] = False
    batch = b.ImputationBatch(days, obs, days, np.zeros_like(days, np.int64), np.zeros(4, int))
    np.testing.assert_allclose(b.SeasonalImputer().predict(batch), days)


def test_bilstm_imputer_beats_mean_fill():
    train = imputation_batch(periodic_days(40, 4, seed=1), 0.5, 1)
    val = imputation_batch(periodic_days(10, 2, seed=2), 0.5, 2)
    test = imputation_batch(periodic_days(10, 2, seed=3), 0.5, 3)
    m = b.BiLSTMImputer(b.BiLSTMImputerConfig(hidden=32, missing_rates=(0.5,), train=fast(lr=1e-2, epochs=10)))
    pred = m.fit(train, val).predict(test)
    miss = ~test.observed
    mean_fill = np.where(test.observed, test.load_w, np.nanmean(test.observed_load(), 1, keepdims=True))
    assert mae(pred[miss], test.load_w[miss]) < 0.7 * mae(mean_fill[miss], test.load_w[miss])


# ----------------------------------------------------------------------------- anomaly


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


# ----------------------------------------------------------------------------- NILM


def nilm_batch(n: int, seed: int, length: int = 64) -> b.NILMBatch:
    """Two appliances: a 2 kW kettle (short pulses) and a 150 W fridge (long cycles) + base load."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    kettle = np.zeros((n, length))
    for i in range(n):
        s = rng.integers(0, length - 4)
        if rng.random() < 0.7:
            kettle[i, s : s + 4] = 2000
    phase = rng.integers(0, 32, (n, 1))
    fridge = 150.0 * (((t[None, :] + phase) // 16) % 2 == 0)
    apps = np.stack([kettle, fridge], 1)
    load = apps.sum(1) + 80 + rng.normal(0, 5, (n, length))
    ts = 1_700_000_000 + 60 * t[None, :].repeat(n, 0)
    return b.NILMBatch(load, apps, apps > 10, ts, ["kettle", "fridge"], 60)


def test_cnn_disaggregator_beats_predicting_nothing():
    train, val, test = nilm_batch(300, 1), nilm_batch(60, 2), nilm_batch(100, 3)
    cfg = b.CNNDisaggregatorConfig(channels=16, train=fast(lr=3e-3, epochs=15))
    pred = b.CNNDisaggregator(cfg).fit(train, val).predict(test)
    assert mae(pred.appliance_w, test.appliance_w) < 0.6 * mae(0, test.appliance_w)
    kettle_on = test.on[:, 0]
    assert np.mean(pred.on[:, 0][kettle_on]) > 0.7  # recall of kettle ON points


def test_signal_nilm_adapter_runs_the_fhmm():
    from edge.signal import nilm

    def fit(apps, agg, ts):
        model = nilm.FHMM().fit(apps, agg)
        return lambda x, t: model.predict(x)

    train, val, test = nilm_batch(40, 1), nilm_batch(5, 2), nilm_batch(10, 3)
    pred = b.SignalNILM("signal_fhmm", fit).fit(train, val).predict(test)
    assert pred.appliance_w.shape == test.appliance_w.shape
    # the kettle's 2 kW steps are unmistakable: the FHMM must find most of them
    assert np.mean(pred.on[:, 0][test.on[:, 0]]) > 0.7
