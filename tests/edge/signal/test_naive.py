"""Naive baselines: previous day, same day last week, linear / previous-day fill, z-score."""

from __future__ import annotations

import numpy as np
import pytest

from edge.signal import naive as N


def _weeks(n_days: int = 21, L: int = 24, weekend: float = 0.7) -> np.ndarray:
    t = np.arange(L)
    week = np.array([1.0, 1, 1, 1, 1, weekend, weekend])
    return np.stack([week[d % 7] * (500 + 300 * np.sin(2 * np.pi * t / L)) for d in range(n_days)])


def test_forecasts_copy_the_right_day():
    days = _weeks()
    np.testing.assert_array_equal(N.same_day_last_week_forecast(days)[7:], days[7:])  # weekly pattern
    assert np.isnan(N.same_day_last_week_forecast(days)[:7]).all()
    np.testing.assert_array_equal(N.previous_day_forecast(days)[1:], days[:-1])


def test_fills():
    x = np.arange(10, dtype=float)
    obs = np.ones(10, bool)
    obs[[0, 4, 5, 9]] = False
    np.testing.assert_allclose(N.linear_fill(x, obs), [1, 1, 2, 3, 4, 5, 6, 7, 8, 8])
    days = _weeks(3).ravel()
    obs = np.ones(days.size, bool)
    obs[30:34] = False
    filled = N.previous_day_fill(days, obs, 24)
    np.testing.assert_array_equal(filled[30:34], days[6:10])
    with pytest.raises(N.NaiveError, match="no observed"):
        N.linear_fill(x, np.zeros(10, bool))


def test_zscore_flags_a_scaled_day():
    rng = np.random.default_rng(0)
    days = _weeks(14, weekend=1.0) * rng.normal(1, 0.02, (14, 24))
    scaled = days.copy()
    scaled[10] *= 1.3
    clean_scores, attacked_scores = N.zscore_scores(days), N.zscore_scores(scaled)
    assert np.isnan(clean_scores[:7]).all()
    assert attacked_scores[10] > 3 * np.nanmax(clean_scores)
