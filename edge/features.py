"""Covariates of a forecast day: calendar and optional weather, computed identically by trainer and Pi.

numpy (and the ``holidays`` package) only: this module is in the torch-free edge layer. The
covariates describe the day being forecast: its calendar in the meter's local time zone, whether it
is a public holiday (``holidays`` by country and subdivision code), and, when a weather feed exists,
its temperature. The vector has the same length with or without weather: the weather block starts
with a mask (``temp_available``, 1 when a temperature was given for that day, else 0) and holds zeros
when the mask is 0, so one model trains on meters with and without temperature and the Pi runs it
either way. A missing temperature is never an error.

:class:`CovariateSpec` (a data table of names plus the meter's zone, country and weather source) is
stored in checkpoints (``data_spec.covariates``) and bundle manifests (``input_spec.covariates``) so
the Pi computes exactly the vector the model was trained on (``COVARIATE_SPEC_VERSION``).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from edge.errors import DataError

COVARIATE_SPEC_VERSION = 2
HEATING_BASE_C = 15.5  # degree-day base temperatures (UK/Ireland convention)
COOLING_BASE_C = 22.0
TEMP_SCALE_C = 10.0  # temperatures enter as degC / 10 to keep features near unit scale
N_TEMP_BLOCKS = 8  # 3-hour means of the day's temperature

CALENDAR_NAMES: tuple[str, ...] = (
    *(f"weekday_{d}" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
    "is_weekend",
    "is_holiday",
    "day_of_year_sin",
    "day_of_year_cos",
)
WEATHER_NAMES: tuple[str, ...] = (
    "temp_available",  # the mask: 1 = the temperature features below are real, 0 = all zero
    "temp_mean_c_div10",
    "temp_min_c_div10",
    "temp_max_c_div10",
    *(f"temp_{3 * i:02d}h_{3 * i + 3:02d}h_c_div10" for i in range(N_TEMP_BLOCKS)),
    "heating_degree_c_div10",
    "cooling_degree_c_div10",
)
COVARIATE_NAMES: tuple[str, ...] = CALENDAR_NAMES + WEATHER_NAMES
N_COVARIATES = len(COVARIATE_NAMES)


class CovariateError(DataError):
    """Bad input to the covariate functions (the message names it)."""


@dataclass
class CovariateSpec:
    """What the forecast covariates are and how to compute them for one meter.

    ``tz``: the meter's IANA time zone (calendar days are local days). ``country`` / ``subdiv``:
    ISO codes for the ``holidays`` package (e.g. ``GB``/``ENG``, ``AU``/``VIC``); None = no
    holiday calendar (``is_holiday`` is 0). ``weather``: ``"temperature_c"`` when the training
    data had temperatures, else None (the model then saw the mask at 0 only).
    """

    version: int = COVARIATE_SPEC_VERSION
    names: list[str] = field(default_factory=lambda: list(COVARIATE_NAMES))
    tz: str | None = None
    country: str | None = None
    subdiv: str | None = None
    weather: str | None = None

    def __post_init__(self) -> None:
        if self.version != COVARIATE_SPEC_VERSION or list(self.names) != list(COVARIATE_NAMES):
            raise CovariateError(f"covariate spec version {self.version} with {len(self.names)} names is not "
                                 f"this code's version {COVARIATE_SPEC_VERSION} ({N_COVARIATES} names)")
        if self.country:
            holiday_dates(self.country, self.subdiv, 2000)  # fails early on an unknown code

    @property
    def n(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CovariateSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise CovariateError(f"unknown covariate spec fields {sorted(unknown)}")
        return cls(**data)

    def is_holiday(self, date) -> bool:
        """Whether the local date is a public holiday of the spec's country (False without one)."""
        day = _as_date(date)
        return bool(self.country) and day in holiday_dates(self.country, self.subdiv, day.year)

    def vector(self, date, temperature_c: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """float32[C] for the local day ``date``; ``temperature_c``: that day's temperatures
        (degC, any count divisible by 8, e.g. 24/48/96 per day) or None."""
        return forecast_covariates(date, temperature_c, self.is_holiday(date))

    def batch(self, dates: Sequence, temperature_c: np.ndarray | None = None) -> np.ndarray:
        """float32[N, C] for N local days; ``temperature_c`` [N, S] (NaN rows = unknown) or None."""
        if temperature_c is not None and len(temperature_c) != len(dates):
            raise CovariateError(f"{len(dates)} dates but {len(temperature_c)} temperature rows")
        rows = [self.vector(d, None if temperature_c is None else temperature_c[i]) for i, d in enumerate(dates)]
        return np.stack(rows) if rows else np.zeros((0, self.n), np.float32)


@functools.lru_cache(maxsize=256)
def _holiday_set(country: str, subdiv: str | None, year: int) -> frozenset[dt.date]:
    try:
        import holidays
    except ImportError as e:  # a base dependency; this only happens in a broken install
        raise CovariateError("public holidays need the 'holidays' package (pip install holidays)") from e
    try:
        return frozenset(holidays.country_holidays(country, subdiv=subdiv, years=year))
    except (NotImplementedError, KeyError) as e:
        raise CovariateError(f"the holidays package knows no country {country!r}"
                             f"{f' with subdivision {subdiv!r}' if subdiv else ''}: {e}") from e


def holiday_dates(country: str, subdiv: str | None, year: int) -> frozenset[dt.date]:
    """Public holidays of ``country`` (ISO 3166-1 alpha-2) / ``subdiv`` in ``year`` (cached)."""
    return _holiday_set(country.upper(), subdiv.upper() if subdiv else None, int(year))


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


def calendar_features(date) -> np.ndarray:
    """float64[len(CALENDAR_NAMES)]: weekday one-hot, weekend, holiday (0 here; the caller sets
    it), day-of-year sin/cos."""
    day = _as_date(date)
    weekday = np.zeros(7)
    weekday[day.weekday()] = 1.0
    year_len = 366.0 if _is_leap(day.year) else 365.0
    angle = 2 * np.pi * (day.timetuple().tm_yday - 1) / year_len
    return np.concatenate([weekday, [float(day.weekday() >= 5), 0.0, np.sin(angle), np.cos(angle)]])


def weather_features(temperature_c: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """float64[len(WEATHER_NAMES)]: the mask and the temperature features (zeros when unknown).

    NaN entries (a gap in the weather feed) are filled with the mean of the finite ones; a day
    with no finite temperature counts as unknown (mask 0).
    """
    out = np.zeros(len(WEATHER_NAMES))
    if temperature_c is None:
        return out
    temp = np.asarray(temperature_c, dtype=np.float64).reshape(-1)
    if temp.shape[0] == 0 or temp.shape[0] % N_TEMP_BLOCKS:
        raise CovariateError(f"a day's temperatures need a multiple of {N_TEMP_BLOCKS} values "
                             f"(24, 48, 96 ...), got {temp.shape[0]}")
    finite = np.isfinite(temp)
    if not finite.any():
        return out
    temp = np.where(finite, temp, temp[finite].mean())
    blocks = temp.reshape(N_TEMP_BLOCKS, -1).mean(axis=1)
    hdd = np.maximum(HEATING_BASE_C - temp, 0.0).mean()
    cdd = np.maximum(temp - COOLING_BASE_C, 0.0).mean()
    out[0] = 1.0
    out[1:] = np.concatenate([[temp.mean(), temp.min(), temp.max()], blocks, [hdd, cdd]]) / TEMP_SCALE_C
    return out


def forecast_covariates(date: dt.date | dt.datetime | np.datetime64 | str,
                        temperature_c_next_day: Sequence[float] | np.ndarray | None,
                        is_holiday: bool) -> np.ndarray:
    """float32[N_COVARIATES] for the forecast day ``date`` (a local calendar day).

    ``temperature_c_next_day``: that day's temperatures (degC; 24, 48 or 96 values, NaN for gaps)
    or None when there is no weather feed (then the mask is 0 and the weather block is zero).
    """
    cal = calendar_features(date)
    cal[CALENDAR_NAMES.index("is_holiday")] = float(bool(is_holiday))
    return np.concatenate([cal, weather_features(temperature_c_next_day)]).astype(np.float32)


def forecast_covariates_batch(dates: Sequence, temperature_c: np.ndarray | None,
                              is_holiday: Sequence[bool]) -> np.ndarray:
    """float32[N, N_COVARIATES] for N forecast days (``temperature_c`` [N, S] or None)."""
    if len(is_holiday) != len(dates) or (temperature_c is not None and len(temperature_c) != len(dates)):
        raise CovariateError("dates, temperature_c [N, S] and is_holiday must have the same N")
    rows = [forecast_covariates(d, None if temperature_c is None else temperature_c[i], h)
            for i, (d, h) in enumerate(zip(dates, is_holiday, strict=True))]
    return np.stack(rows) if rows else np.zeros((0, N_COVARIATES), np.float32)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
