"""A weather feed the agent reads: a CSV of outdoor temperatures (forecasts or measurements).

The file (written by anything: a cron job, a Home Assistant automation exporting a weather
entity's forecast)::

    timestamp,temperature_c
    2024-06-02T00:00:00+01:00,14.5
    2024-06-02T01:00:00+01:00,14.1

Times as in ``edge.data.loaders`` (ISO 8601 with or without an offset; without one they are local
times of ``tz``; or epoch seconds); any spacing. :func:`day_temperatures` gives one local day's
temperatures at the model's resolution for ``edge.features.forecast_covariates``, or None when
the feed has nothing for that day (the forecast then runs without weather and says so).
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np

from edge.data.loaders import (
    TEMPERATURE_COLUMNS,
    TIME_COLUMNS,
    LoaderError,
    LocalClock,
    optional_float,
    parse_timestamp,
)
from edge.data.profiles import DAY_S, utc_offsets_s


def read_weather_csv(path: str | Path, tz: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ts_s int64 sorted, temperature_c float64) of a weather CSV; errors name file and line."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise LoaderError(path, None, f"cannot read: {e}") from e
    cols = [c.strip().lower() for c in rows[0]] if rows else []
    i_t = next((cols.index(c) for c in TIME_COLUMNS if c in cols), None)
    i_v = next((cols.index(c) for c in TEMPERATURE_COLUMNS if c in cols), None)
    if i_t is None or i_v is None:
        raise LoaderError(path, 1, f"a weather file needs columns timestamp and temperature_c; got {cols}")
    scale, offset = TEMPERATURE_COLUMNS[cols[i_v]]
    clock = LocalClock(tz, strict=False) if tz else None
    ts, temp = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(cols):
            raise LoaderError(path, lineno, f"expected {len(cols)} columns, got {len(row)}")
        ts.append(parse_timestamp(path, lineno, row[i_t], clock))
        temp.append((optional_float(path, lineno, row[i_v], cols[i_v]) + offset) * scale)
    order = np.argsort(ts, kind="stable")
    return np.asarray(ts, np.int64)[order], np.asarray(temp, np.float64)[order]


def day_temperatures(ts_s: np.ndarray, temperature_c: np.ndarray, date: dt.date | str | np.datetime64,
                     tz: str | None, steps_per_day: int) -> np.ndarray | None:
    """float64[steps_per_day]: slot means of the local day ``date`` (NaN slots inside are filled by
    linear interpolation, the ends held); None when the day has no finite temperature."""
    day = int(np.datetime64(str(date)[:10], "D").astype(np.int64))
    ts_s = np.asarray(ts_s, np.int64)
    ok = np.isfinite(temperature_c)
    local = ts_s + utc_offsets_s(ts_s, tz)
    sel = ok & (local // DAY_S == day)
    if not sel.any():
        return None
    res = DAY_S // steps_per_day
    slot = (local[sel] % DAY_S) // res
    total = np.bincount(slot, weights=temperature_c[sel], minlength=steps_per_day)
    count = np.bincount(slot, minlength=steps_per_day)
    out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    have = np.isfinite(out)
    idx = np.arange(steps_per_day)
    return np.interp(idx, idx[have], out[have])
