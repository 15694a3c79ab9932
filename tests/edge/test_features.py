"""Forecast covariates shared by trainer and gateway (numpy only)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from edge.features import (
    COVARIATE_NAMES,
    N_COVARIATES,
    WEATHER_NAMES,
    CovariateError,
    CovariateSpec,
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
    with pytest.raises(CovariateError, match="multiple of 8"):
        forecast_covariates("2024-01-01", np.zeros(20), False)
    with pytest.raises(CovariateError, match="date"):
        forecast_covariates("not a date", np.zeros(48), False)


def test_missing_temperature_is_a_mask_not_an_error():
    no_feed = _named(forecast_covariates("2024-01-01", None, False))
    all_gap = _named(forecast_covariates("2024-01-01", np.full(48, np.nan), False))
    assert no_feed == all_gap
    assert no_feed["temp_available"] == 0 and all(no_feed[n] == 0 for n in WEATHER_NAMES)
    given = _named(forecast_covariates("2024-01-01", np.full(48, 20.0), False))
    assert given["temp_available"] == 1 and given["temp_mean_c_div10"] == pytest.approx(2.0)
    # same calendar part either way, same length: one model serves meters with and without weather
    assert [no_feed[n] for n in COVARIATE_NAMES[:11]] == [given[n] for n in COVARIATE_NAMES[:11]]


@pytest.mark.parametrize("per_day", [24, 48, 96])
def test_any_resolution_gives_the_same_blocks(per_day):
    t = np.repeat(np.arange(8, dtype=float), per_day // 8)  # 3-hour block i holds i degC
    f = _named(forecast_covariates("2024-01-01", t, False))
    assert [f[f"temp_{3 * i:02d}h_{3 * i + 3:02d}h_c_div10"] for i in range(8)] == pytest.approx(np.arange(8) / 10)


def test_spec_holidays_from_the_holidays_package_by_country():
    england = CovariateSpec(tz="Europe/London", country="GB", subdiv="ENG")
    victoria = CovariateSpec(tz="Australia/Melbourne", country="AU", subdiv="VIC")
    assert england.is_holiday("2000-08-28") and not victoria.is_holiday("2000-08-28")  # Late Summer Bank Holiday
    assert victoria.is_holiday("2014-11-04") and not england.is_holiday("2014-11-04")  # Melbourne Cup
    assert not CovariateSpec().is_holiday("2024-12-25")  # no country: no holiday calendar
    v = _named(england.vector("2000-08-28"))
    assert v["is_holiday"] == 1 and v["weekday_mon"] == 1 and v["temp_available"] == 0
    with pytest.raises(CovariateError, match="no country 'XX'"):
        CovariateSpec(country="XX")


def test_spec_round_trips_and_refuses_other_versions():
    spec = CovariateSpec(tz="Europe/Dublin", country="IE", weather="temperature_c")
    assert CovariateSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(CovariateError, match="version 1"):
        CovariateSpec.from_dict({**spec.to_dict(), "version": 1})
    out = spec.batch(["2024-03-17", "2024-03-18"], np.stack([np.full(24, 5.0), np.full(24, np.nan)]))
    assert out.shape == (2, N_COVARIATES) and out[0, COVARIATE_NAMES.index("is_holiday")] == 1
    assert out[:, COVARIATE_NAMES.index("temp_available")].tolist() == [1, 0]


def test_batch_matches_single():
    dates = ["2024-01-01", "2024-07-01"]
    temps = np.stack([np.zeros(48), np.full(48, 30.0)])
    out = forecast_covariates_batch(dates, temps, [True, False])
    np.testing.assert_array_equal(out[1], forecast_covariates(dates[1], temps[1], False))
    assert out.shape == (2, N_COVARIATES)
