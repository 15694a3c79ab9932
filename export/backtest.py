"""A day-ahead forecast for a day that has passed, beside what the meter then measured.

:func:`past_day_forecast` asks the bundle's forecast model, through the agent's own
``edge.agent.inference.forecast_step``, what it would have forecast for the last whole day before
``now_s`` (the L bins up to the bin in progress) from the day before it and, for a context model,
the D days before that (``edge.agent.history.ProfileHistory`` backfilled from the gateway store's
readings, as the agent backfills at start-up, in a scratch database: the store is only read), and
returns the measured bins of that day beside it (``unimeter demo`` plots both and reports the
MAPE).
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from dataclasses import dataclass

import numpy as np

from edge.agent.gapfill import fill_window
from edge.agent.history import ProfileHistory
from edge.agent.inference import ModelHost, forecast_step
from edge.agent.store import ReadingStore
from edge.signal.metrics import regression_metrics

MAPE_FLOOR_W = 50.0  # bins under this are left out of the MAPE (a near-zero load has no percentage)


@dataclass
class PastForecast:
    """``start_s``: UTC epoch s of the forecast day's first bin; ``forecast_w`` / ``actual_w`` [L]
    W per bin (actual NaN where nothing was measured); ``history_days`` the context days the model
    saw (0 for a one-day model)."""

    meter_id: str
    start_s: float
    resolution_s: float
    forecast_w: np.ndarray
    actual_w: np.ndarray
    history_days: int

    @property
    def mape_pct(self) -> float:
        ok = np.isfinite(self.actual_w)
        if not ok.any():
            return math.nan
        return float(regression_metrics(self.actual_w[ok], self.forecast_w[ok], MAPE_FLOOR_W)["mape_pct"])

    def summary(self) -> dict:
        return {"start_s": self.start_s, "mape_pct": round(self.mape_pct, 2), "history_days": self.history_days,
                "measured_bins": int(np.isfinite(self.actual_w).sum()), "bins": len(self.actual_w)}


def _measured(store: ReadingStore, meter_id: str, res: float, first: int, n: int) -> np.ndarray:
    """Mean power per bin ``first .. first + n - 1`` of the stored readings (NaN: none)."""
    out = np.full(n, np.nan)
    for k, total, count in store.bins(meter_id, res, first * res):
        if first <= k < first + n and count:
            out[int(k) - first] = total / count
    return out


def past_day_forecast(host: ModelHost, store: ReadingStore, meter_id: str, now_s: float) -> PastForecast | None:
    """The forecast of the last whole day before ``now_s`` made from the day before it, or None
    when the live model has no forecast task or the input day is less than half measured."""
    model = host.current
    if model is None or not model.has("forecast"):
        return None
    shape = model.tasks["forecast"]
    res, L, D = float(shape.resolution_s), int(shape.length), int(shape.history_days)
    target = int(now_s // res) - L  # the bin in progress is left out
    origin = target - L
    day_before = _measured(store, meter_id, res, origin, L)
    if np.isfinite(day_before).mean() < 0.5:
        return None
    observed = np.isfinite(day_before).astype(np.float32)
    filled = fill_window(day_before, origin * res, res).filled_w.astype(np.float32)
    context = None
    if D:
        with contextlib.closing(sqlite3.connect(":memory:", isolation_level=None)) as db:
            history = ProfileHistory(db, res, L, D)
            before = [b for b in store.bins(meter_id, res, (origin - D * L) * res) if b[0] < origin]
            history.backfill(meter_id, before)
            context = history.context(meter_id, origin)
    body = forecast_step(host, filled, origin * res, res, context=context, observed=observed)
    return PastForecast(meter_id, target * res, res, np.asarray(body["day_ahead_w"], np.float64),
                        _measured(store, meter_id, res, target, L), int(body.get("history_days", 0)))
