"""Forecasting baselines: seasonal naive, LSTM, DLinear (real torch training on tiny data)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainer.baselines.conftest import L, fast, mae
from trainer import baselines as b


def test_moving_average_is_a_centered_mean_with_repeated_edges():
    import torch

    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    out = b.moving_average(x, 3)
    np.testing.assert_allclose(out.numpy(), [[4 / 3, 2, 3, 4, 14 / 3]], rtol=1e-6)


def test_predict_before_fit_is_a_clear_error(forecast_splits):
    _, _, test = forecast_splits
    for method in (b.SeasonalNaive(), b.LSTMForecaster(), b.DLinearForecaster()):
        with pytest.raises(b.BaselineError):
            method.predict(test)


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
