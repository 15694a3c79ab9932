"""Imputation baselines: interpolation, seasonal fill, classical fillers, BiLSTM."""

from __future__ import annotations

import numpy as np

from tests.trainer.baselines.conftest import L, fast, mae, periodic_days
from trainer import baselines as b


def test_interpolate_rows_by_hand():
    values = np.array([[0.0, np.nan, 4.0, np.nan], [np.nan, 2.0, np.nan, np.nan]])
    observed = ~np.isnan(values)
    out = b.interpolate_rows(values, observed)
    np.testing.assert_allclose(out, [[0, 2, 4, 4], [2, 2, 2, 2]])


def test_training_masks_have_the_drawn_rates():
    obs = b.training_masks(400, L, (0.5,), np.random.default_rng(0))
    assert obs.shape == (400, L)
    assert abs((~obs).mean() - 0.5) < 0.03


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
