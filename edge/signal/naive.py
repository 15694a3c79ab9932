"""Naive baselines that any model of a household's load must beat (numpy only).

All work on one meter's consecutive local days ``days_w`` [D, L] (W, NaN where missing):

- forecasting: :func:`previous_day_forecast` (day d = day d-1) and
  :func:`same_day_last_week_forecast` (day d = day d-7, the weekly naive of seed 004);
- gap filling on the continuous series: :func:`linear_fill` (between the nearest observed points,
  edges held) and :func:`previous_day_fill` (a missing point takes the same slot of the day before;
  linear where that is missing too);
- anomaly detection: :func:`zscore_scores`, the mean absolute z-score of a day's points against the
  same slots of the previous 7 days (per-slot mean and standard deviation, the standard deviation
  floored at 5 % of the day's level so a flat slot does not explode the score).

Days without the history a method needs (the first day, the first week) get NaN, and callers judge
every method on the same days.
"""

from __future__ import annotations

import numpy as np

from edge.signal.errors import SignalInputError

ZSCORE_HISTORY_DAYS = 7
ZSCORE_STD_FLOOR = 0.05  # fraction of the history's mean level


class NaiveError(SignalInputError):
    """Input of the wrong shape."""


def _days(days_w: np.ndarray) -> np.ndarray:
    days_w = np.asarray(days_w, np.float64)
    if days_w.ndim != 2:
        raise NaiveError(f"days_w must be [D, L], got shape {days_w.shape}")
    return days_w


def shifted(days_w: np.ndarray, lag_days: int) -> np.ndarray:
    """[D, L]: row d holds day d - lag_days (NaN for the first ``lag_days`` rows)."""
    days_w = _days(days_w)
    out = np.full_like(days_w, np.nan)
    if lag_days < len(days_w):
        out[lag_days:] = days_w[: len(days_w) - lag_days]
    return out


def previous_day_forecast(days_w: np.ndarray) -> np.ndarray:
    """Day-ahead forecast of every day by the day before it."""
    return shifted(days_w, 1)


def same_day_last_week_forecast(days_w: np.ndarray) -> np.ndarray:
    """Day-ahead forecast of every day by the same weekday a week earlier."""
    return shifted(days_w, 7)


def linear_fill(series_w: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Linear interpolation of the missing points of a 1-D series between observed neighbours
    (before the first / after the last observed point: that point's value)."""
    x = np.asarray(series_w, np.float64).ravel()
    obs = np.asarray(observed, bool).ravel() & np.isfinite(x)
    if not obs.any():
        raise NaiveError("no observed point to interpolate from")
    idx = np.arange(len(x))
    return np.where(obs, x, np.interp(idx, idx[obs], x[obs]))


def previous_day_fill(series_w: np.ndarray, observed: np.ndarray, steps_per_day: int) -> np.ndarray:
    """Each missing point takes the same slot one day earlier (when that one is observed), else
    the linear fill."""
    x = np.asarray(series_w, np.float64).ravel()
    obs = np.asarray(observed, bool).ravel() & np.isfinite(x)
    out = linear_fill(x, obs)
    prev = np.full_like(x, np.nan)
    prev[steps_per_day:] = np.where(obs[:-steps_per_day], x[:-steps_per_day], np.nan)
    use = ~obs & np.isfinite(prev)
    out[use] = prev[use]
    return out


def zscore_scores(days_w: np.ndarray, history_days: int = ZSCORE_HISTORY_DAYS) -> np.ndarray:
    """[D]: mean |z| of each day's points against the same slots of the previous ``history_days``
    days (NaN when fewer than ``history_days`` earlier days exist or a day is missing points)."""
    days_w = _days(days_w)
    out = np.full(len(days_w), np.nan)
    for d in range(history_days, len(days_w)):
        hist = days_w[d - history_days:d]
        if not np.isfinite(hist).all() or not np.isfinite(days_w[d]).all():
            continue
        out[d] = zscore_of(days_w[d], hist)
    return out


def zscore_of(day_w: np.ndarray, history_w: np.ndarray) -> float:
    """Mean |z| of one day [L] against history [H, L] (see the module docstring)."""
    mean = history_w.mean(axis=0)
    floor = ZSCORE_STD_FLOOR * max(float(np.abs(mean).mean()), 1e-9)
    std = np.maximum(history_w.std(axis=0), floor)
    return float(np.mean(np.abs(day_w - mean) / std))
