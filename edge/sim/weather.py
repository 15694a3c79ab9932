"""Synthetic weather and calendar, deterministic per day.

Everything random here is drawn from a generator keyed by ``(weather_seed, day_ordinal)``, so the
weather of one day is the same whether one day or a whole year is simulated (the live
:class:`edge.sim.stream.HouseholdPowerSource` depends on this). Households of one fleet share a
``weather_seed``, as neighbours share a sky.

Temperature: seasonal sinusoid (coldest around 20 January) + a daily AR(1)-like anomaly (built as
an exponentially weighted sum of the last ``_AR_LAGS`` daily innovations, so it is local in time) +
a diurnal cycle peaking at 15:00 whose amplitude grows with clear skies.
Sun: standard declination / hour-angle solar elevation; clearness per day from a seasonal Beta
distribution with intra-day cloud fluctuations (5-minute knots, linearly interpolated).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge.sim.specs import FIXED_HOLIDAYS

DAY_S = 86400
_AR_LAGS = 20
_AR_PHI = 0.75
_STREAM_WEATHER = 0x57E4
_STREAM_CLOUD = 0xC10D


@dataclass(frozen=True)
class Climate:
    latitude_deg: float = 52.0
    mean_temp_c: float = 10.5
    seasonal_amp_c: float = 7.5
    diurnal_amp_c: float = 3.5
    anomaly_sd_c: float = 3.0


def day_rng(seed: int, day: int, stream: int) -> np.random.Generator:
    """The generator for one (seed, UTC day ordinal, purpose) triple."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(day) + 1_000_000, int(stream)])


@lru_cache(maxsize=4096)
def _daily_weather(seed: int, day: int, clim: Climate) -> tuple[float, float, np.ndarray]:
    """(mean temperature C, clearness 0..1, cloud knots every 5 min) of one day."""
    eps = [_innovation(seed, day - k) for k in range(_AR_LAGS)]
    weights = _AR_PHI ** np.arange(_AR_LAGS)
    anomaly = float(np.dot(weights, eps) * np.sqrt(1 - _AR_PHI**2)) * clim.anomaly_sd_c
    doy = _doy(day)
    season = -np.cos(2 * np.pi * (doy - 20) / 365.25)
    rng = day_rng(seed, day, _STREAM_CLOUD)
    mean_clear = 0.45 + 0.15 * season  # sunnier summers
    clear = float(rng.beta(4 * mean_clear, 4 * (1 - mean_clear)))
    knots = np.clip(1 - (1 - clear) * (1 + 0.6 * rng.standard_normal(288)), 0.05, 1.0)
    temp = clim.mean_temp_c + clim.seasonal_amp_c * season + anomaly
    temp += 1.5 * (clear - 0.5) * season  # clear summer days warmer, clear winter days colder
    knots.setflags(write=False)  # cached and shared
    return float(temp), clear, knots


@lru_cache(maxsize=8192)
def _innovation(seed: int, day: int) -> float:
    return float(day_rng(seed, day, _STREAM_WEATHER).standard_normal())


def _doy(day: int) -> int:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day))).timetuple().tm_yday


def day_means(seed: int, days: np.ndarray, clim: Climate) -> tuple[np.ndarray, np.ndarray]:
    """Daily mean temperature (C) and clearness for UTC day ordinals."""
    w = [_daily_weather(int(seed), int(d), clim) for d in days]
    return np.array([x[0] for x in w]), np.array([x[1] for x in w])


def temperature_c(seed: int, ts_s: np.ndarray, clim: Climate, utc_offset_h: float) -> np.ndarray:
    """Outdoor temperature (C) at each timestamp (daily means interpolated at local noon)."""
    local_s = ts_s.astype(np.float64) + utc_offset_h * 3600
    d0 = int(np.floor(local_s.min() / DAY_S)) - 1
    d1 = int(np.floor(local_s.max() / DAY_S)) + 2
    days = np.arange(d0, d1)
    means, clear = day_means(seed, days, clim)
    noon = days * DAY_S + DAY_S / 2
    t_mean = np.interp(local_s, noon, means)
    c = np.interp(local_s, noon, clear)
    hour = (local_s % DAY_S) / 3600
    diurnal = clim.diurnal_amp_c * (0.5 + c) * np.cos(2 * np.pi * (hour - 15) / 24)
    # hour-to-hour weather noise: keyed normal knots every hour, linearly interpolated
    h0 = int(np.floor(local_s.min() / 3600))
    knots = hash_normal(seed, np.arange(h0, int(np.floor(local_s.max() / 3600)) + 2), _STREAM_WEATHER)
    wiggle = np.interp(local_s / 3600 - h0, np.arange(len(knots)), knots)
    return (t_mean + diurnal + 0.6 * wiggle).astype(np.float32)


def solar_elevation_sin(ts_s: np.ndarray, latitude_deg: float, utc_offset_h: float) -> np.ndarray:
    """sin(solar elevation) for timestamps; local solar time taken as UTC + utc_offset_h."""
    ts = ts_s.astype(np.float64)
    doy = (ts / DAY_S) % 365.25  # day of year to within a day is enough here
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (284 + doy) / 365.25)
    hour = ((ts / 3600) + utc_offset_h) % 24
    ha = np.deg2rad(15 * (hour - 12))
    lat = np.deg2rad(latitude_deg)
    return np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(ha)


def cloud_factor(seed: int, ts_s: np.ndarray, clim: Climate) -> np.ndarray:
    """Fraction of clear-sky irradiance reaching the ground (intra-day cloud fluctuations)."""
    ts = ts_s.astype(np.float64)
    d0 = int(np.floor(ts.min() / DAY_S))
    d1 = int(np.floor(ts.max() / DAY_S)) + 2
    knots = np.concatenate([_daily_weather(int(seed), d, clim)[2] for d in range(d0, d1)])
    knot_ts = d0 * DAY_S + 300.0 * np.arange(len(knots))
    return np.interp(ts, knot_ts, knots).astype(np.float32)


def easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month = (h + ell - 7 * m + 114) // 31
    day = ((h + ell - 7 * m + 114) % 31) + 1
    return dt.date(year, month, day)


@lru_cache(maxsize=64)
def holidays(year: int) -> frozenset[dt.date]:
    e = easter(year)
    fixed = {dt.date(year, m, d) for m, d in FIXED_HOLIDAYS}
    return frozenset(fixed | {e - dt.timedelta(days=2), e + dt.timedelta(days=1)})


def is_holiday_day(day: int) -> bool:
    """Whether the date with this day ordinal (days since 1970-01-01) is a public holiday."""
    date = dt.date(1970, 1, 1) + dt.timedelta(days=int(day))
    return date in holidays(date.year)


def weekday_of_day(day: int) -> int:
    """Monday=0 .. Sunday=6 of a day ordinal (1970-01-01 was a Thursday)."""
    return (int(day) + 3) % 7


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_KEY_MULT = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03),
             np.uint64(0xABC98388FB8FAC03), np.uint64(0x8CB92BA72F3D8DD7), np.uint64(0xF1357AEA2E62A9C5))


def hash_uniform(*keys: int | np.ndarray) -> np.ndarray:
    """Counter-based uniforms in [0, 1): a pure function of integer keys (broadcast together).

    The simulator keys its randomness by (seed, day, purpose, index), so any day can be produced
    alone, vectorised over many days, and identical however a run is cut into chunks.
    """
    if len(keys) > len(_KEY_MULT):
        raise ValueError(f"at most {len(_KEY_MULT)} keys")
    x = np.full(np.broadcast_shapes(*(np.shape(k) for k in keys)), 0x632BE59BD9B4E019, np.uint64)
    with np.errstate(over="ignore"):
        for k, mult in zip(keys, _KEY_MULT, strict=False):  # scalars mix in cheaply
            x = x + np.asarray(k).astype(np.int64).astype(np.uint64) * mult
        for _ in range(2):  # splitmix64 finaliser, twice: keys that differ by one decorrelate
            x ^= x >> np.uint64(30)
            x *= _M1
            x ^= x >> np.uint64(27)
            x *= _M2
            x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def hash_normal(*keys: int | np.ndarray) -> np.ndarray:
    """Standard normal variates from :func:`hash_uniform` (Box-Muller)."""
    u1 = 1.0 - hash_uniform(*keys, 1)
    u2 = hash_uniform(*keys, 2)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)


@lru_cache(maxsize=65536)
def zone_offset_s(tz: str, day: int) -> int:
    """UTC offset (s) of time zone ``tz`` at 12:00 UTC of the UTC day ordinal ``day``."""
    zone = zoneinfo.ZoneInfo(tz)
    return int(dt.datetime.fromtimestamp(int(day) * DAY_S + 43200, zone).utcoffset().total_seconds())


def clock_offsets_s(ts_s: np.ndarray, utc_offset_h: float, tz: str | None) -> np.ndarray:
    """Seconds from UTC to the household's wall clock per timestamp.

    A fixed ``utc_offset_h`` without ``tz``; with an IANA ``tz`` the zone's offset of each UTC day
    (daylight saving switches at UTC midnight instead of 01:00 UTC, close enough for behaviour).
    """
    ts = np.asarray(ts_s)
    if not tz:
        return np.full(ts.shape, int(round(utc_offset_h * 3600)), np.int64)
    days = np.floor(ts / DAY_S).astype(np.int64)
    if days.size == 0:
        return np.zeros(ts.shape, np.int64)
    d0 = int(days.min())
    table = np.array([zone_offset_s(tz, d) for d in range(d0, int(days.max()) + 1)], np.int64)
    return table[days - d0]


def standard_offset_h(tz: str) -> float:
    """The zone's standard (winter) offset in hours, for solar time."""
    year = 2024
    jan = int(np.datetime64(f"{year}-01-15", "D").astype(np.int64))
    jul = int(np.datetime64(f"{year}-07-15", "D").astype(np.int64))
    return min(zone_offset_s(tz, jan), zone_offset_s(tz, jul)) / 3600
