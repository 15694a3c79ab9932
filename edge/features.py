"""Forecast covariates: calendar and weather features, computed identically by the trainer and the Pi.

numpy only (this module is in the torch-free edge layer). The covariates describe the day being
forecast (the day after the input profile): its calendar and its 48 half-hourly temperature
forecasts. The spec is a data table, ``COVARIATE_NAMES``, stored in checkpoints and bundles so the
Pi can check it computes the same vector the model was trained on (``COVARIATE_SPEC_VERSION``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

COVARIATE_SPEC_VERSION = 1
N_HALF_HOURS = 48
HEATING_BASE_C = 15.5  # degree-day base temperatures (UK/Ireland convention)
COOLING_BASE_C = 22.0
TEMP_SCALE_C = 10.0  # temperatures enter as degC / 10 to keep features near unit scale
N_TEMP_BLOCKS = 8  # 3-hour means of the next-day temperature forecast

COVARIATE_NAMES: tuple[str, ...] = (
    *(f"weekday_{d}" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
    "is_weekend",
    "is_holiday",
    "day_of_year_sin",
    "day_of_year_cos",
    "temp_mean_c_div10",
    "temp_min_c_div10",
    "temp_max_c_div10",
    *(f"temp_{3 * i:02d}h_{3 * i + 3:02d}h_c_div10" for i in range(N_TEMP_BLOCKS)),
    "heating_degree_c_div10",
    "cooling_degree_c_div10",
)
N_COVARIATES = len(COVARIATE_NAMES)


class CovariateError(ValueError):
    """Bad input to the covariate functions."""


def _as_date(date: dt.date | dt.datetime | np.datetime64 | str) -> dt.date:
    try:
        if isinstance(date, dt.datetime):
            return date.date()
        if isinstance(date, dt.date):
            return date
        if isinstance(date, np.datetime64):
            return dt.date.fromisoformat(str(date.astype("datetime64[D]")))
        if isinstance(date, str):
            return dt.date.fromisoformat(date[:10])
    except ValueError as e:
        raise CovariateError(f"cannot read a date from {date!r}") from e
    raise CovariateError(f"date must be a date, datetime, numpy datetime64 or ISO string, got {type(date)}")


def forecast_covariates(date: dt.date | dt.datetime | np.datetime64 | str,
                        temperature_c_next_day: Sequence[float] | np.ndarray,
                        is_holiday: bool) -> np.ndarray:
    """float32[N_COVARIATES] for the forecast day ``date`` (UTC calendar day).

    ``temperature_c_next_day`` holds the 48 half-hourly temperature forecasts (degC) of that day.
    NaN entries (a gap in the weather feed) are filled with the mean of the finite ones; if none
    is finite a ``CovariateError`` is raised rather than a silent default.
    """
    day = _as_date(date)
    temp = np.asarray(temperature_c_next_day, dtype=np.float64).reshape(-1)
    if temp.shape[0] != N_HALF_HOURS:
        raise CovariateError(f"temperature_c_next_day needs {N_HALF_HOURS} values, got {temp.shape[0]}")
    finite = np.isfinite(temp)
    if not finite.any():
        raise CovariateError("temperature_c_next_day has no finite value")
    temp = np.where(finite, temp, temp[finite].mean())

    weekday = np.zeros(7)
    weekday[day.weekday()] = 1.0
    year_len = 366.0 if _is_leap(day.year) else 365.0
    angle = 2 * np.pi * (day.timetuple().tm_yday - 1) / year_len
    blocks = temp.reshape(N_TEMP_BLOCKS, -1).mean(axis=1)
    hdd = np.maximum(HEATING_BASE_C - temp, 0.0).mean()
    cdd = np.maximum(temp - COOLING_BASE_C, 0.0).mean()
    out = np.concatenate([
        weekday,
        [float(day.weekday() >= 5), float(bool(is_holiday)), np.sin(angle), np.cos(angle)],
        np.array([temp.mean(), temp.min(), temp.max()]) / TEMP_SCALE_C,
        blocks / TEMP_SCALE_C,
        [hdd / TEMP_SCALE_C, cdd / TEMP_SCALE_C],
    ])
    return out.astype(np.float32)


def forecast_covariates_batch(dates: Sequence, temperature_c: np.ndarray,
                              is_holiday: Sequence[bool]) -> np.ndarray:
    """float32[N, N_COVARIATES] for N forecast days (temperature_c is [N, 48])."""
    temperature_c = np.asarray(temperature_c)
    if temperature_c.ndim != 2 or len(dates) != temperature_c.shape[0] or len(is_holiday) != len(dates):
        raise CovariateError("dates, temperature_c [N, 48] and is_holiday must have the same N")
    return np.stack([forecast_covariates(d, t, h) for d, t, h in
                     zip(dates, temperature_c, is_holiday, strict=True)]) if len(dates) else \
        np.zeros((0, N_COVARIATES), np.float32)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
