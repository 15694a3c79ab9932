"""Forecast covariates shared by trainer and gateway (numpy only)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from edge.features import (
    COVARIATE_NAMES,
    N_COVARIATES,
    CovariateError,
    forecast_covariates,
    forecast_covariates_batch,
)


def _named(v: np.ndarray) -> dict[str, float]:
    return dict(zip(COVARIATE_NAMES, v.tolist(), strict=True))


def test_calendar_and_temperature_features():
    temps = np.full(48, 5.0)
    temps[18:24] = 25.0  # 09:00-12:00
    v = forecast_covariates("2024-12-25", temps, is_holiday=True)
    assert v.dtype == np.float32 and v.shape == (N_COVARIATES,)
    f = _named(v)
    assert f["weekday_wed"] == 1 and sum(f[f"weekday_{d}"] for d in ("mon", "tue", "thu")) == 0
    assert f["is_holiday"] == 1 and f["is_weekend"] == 0
    assert f["temp_09h_12h_c_div10"] == pytest.approx(2.5)
    assert f["temp_max_c_div10"] == pytest.approx(2.5) and f["temp_min_c_div10"] == pytest.approx(0.5)
    assert f["heating_degree_c_div10"] > 0 and f["cooling_degree_c_div10"] > 0
    assert f["day_of_year_sin"] ** 2 + f["day_of_year_cos"] ** 2 == pytest.approx(1.0)


def test_date_types_agree():
    t = np.linspace(0, 10, 48)
    ref = forecast_covariates(dt.date(2024, 6, 1), t, False)
    for d in ("2024-06-01", np.datetime64("2024-06-01T13:00"), dt.datetime(2024, 6, 1, 23)):
        np.testing.assert_array_equal(forecast_covariates(d, t, False), ref)
    assert _named(ref)["is_weekend"] == 1


def test_gaps_and_bad_input():
    t = np.linspace(0, 10, 48)
    t[5] = np.nan
    assert np.isfinite(forecast_covariates("2024-01-01", t, False)).all()
    with pytest.raises(CovariateError, match="48"):
        forecast_covariates("2024-01-01", np.zeros(24), False)
    with pytest.raises(CovariateError, match="finite"):
        forecast_covariates("2024-01-01", np.full(48, np.nan), False)
    with pytest.raises(CovariateError, match="date"):
        forecast_covariates("not a date", np.zeros(48), False)


def test_batch_matches_single():
    dates = ["2024-01-01", "2024-07-01"]
    temps = np.stack([np.zeros(48), np.full(48, 30.0)])
    out = forecast_covariates_batch(dates, temps, [True, False])
    np.testing.assert_array_equal(out[1], forecast_covariates(dates[1], temps[1], False))
    assert out.shape == (2, N_COVARIATES)
