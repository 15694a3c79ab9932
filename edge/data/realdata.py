"""Real meter data -> the project's units: daily 30-min profiles and NILM windows.

:func:`series_to_profiles` turns any :class:`edge.data.loaders.MeterSeries` into
:class:`edge.sim.household.DailyProfiles` (L=48 half-hour mean powers per local day, NaN where a
half-hour is not covered well enough), so real data goes through the same shards, readers and
models as simulated data. Real data has no anomaly-free ground truth: ``load_clean_w`` in the
shards equals ``load_w``, and the temperature is NaN unless the user supplies it.

:data:`APPLIANCE_ALIASES` maps REDD / UK-DALE channel labels to the simulator's appliance names so
that NILM windows from real houses line up with :data:`edge.sim.specs.ALL_APPLIANCES`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from edge.data.loaders import MeterSeries
from edge.sim.household import DailyProfiles
from edge.sim.specs import ALL_APPLIANCES
from edge.sim.weather import is_holiday_day

HALF_HOUR_S = 1800

# Dataset label -> simulator appliance name (labels not listed are ignored for NILM targets).
APPLIANCE_ALIASES: dict[str, str] = {
    "refrigerator": "fridge", "fridge": "fridge", "fridge_freezer": "fridge", "freezer": "freezer",
    "kettle": "kettle", "toaster": "toaster", "microwave": "microwave", "lighting": "lighting",
    "light": "lighting", "lights": "lighting", "tv": "tv", "television": "tv",
    "washer_dryer": "washing_machine", "washing_machine": "washing_machine", "dishwaser": "dishwasher",
    "dish_washer": "dishwasher", "dishwasher": "dishwasher", "oven": "oven", "electric_oven": "oven",
    "stove": "oven", "tumble_dryer": "tumble_dryer", "electric_heat": "heating",
    "electric_space_heater": "heating", "heat_pump": "heating", "boiler": "water_heater",
    "immersion_heater": "water_heater", "electric_shower": "water_heater", "air_conditioning": "cooling",
    "air_conditioner": "cooling", "laptop": "computer", "desktop": "computer", "computer": "computer",
    "router": "router", "broadband_router": "router", "solar_thermal_pump": "standby",
}


def _utc_offsets_s(ts_s: np.ndarray, tz: str | None) -> np.ndarray:
    """UTC offset (s) per sample, evaluated at noon UTC of each sample's day (fast, per day)."""
    if not tz:
        return np.zeros(len(ts_s), np.int64)
    zone = zoneinfo.ZoneInfo(tz)
    days, inv = np.unique(ts_s // 86400, return_inverse=True)
    offs = np.array([int(dt.datetime.fromtimestamp(int(d) * 86400 + 43200, zone).utcoffset().total_seconds())
                     for d in days], np.int64)
    return offs[inv]


def series_to_profiles(series: MeterSeries, tz: str | None = None, min_coverage: float = 0.5) -> DailyProfiles:
    """Daily 30-min profiles of a meter series, days in local time ``tz`` (None: UTC).

    A half-hour is observed when its samples cover at least ``min_coverage`` of it (NaN
    otherwise). Coarser data (hourly PJM) is spread evenly over its half-hours. Days without any
    observed half-hour are left out.
    """
    ts = np.asarray(series.ts_s, np.int64)
    power = np.asarray(series.power_w, np.float64)
    res = int(series.resolution_s or HALF_HOUR_S)
    local = ts + _utc_offsets_s(ts, tz)
    if res > HALF_HOUR_S:
        k = res // HALF_HOUR_S
        local = (local[:, None] + HALF_HOUR_S * np.arange(k)[None, :]).reshape(-1)
        power = np.repeat(power, k)
        res = HALF_HOUR_S
    slot = local // HALF_HOUR_S
    day0 = int(slot.min() // 48)
    n_days = int(slot.max() // 48) - day0 + 1
    idx = slot - day0 * 48
    ok = np.isfinite(power)
    total = np.bincount(idx[ok], weights=power[ok], minlength=n_days * 48)
    count = np.bincount(idx[ok], minlength=n_days * 48)
    need = max(1.0, min_coverage * HALF_HOUR_S / res)
    with np.errstate(invalid="ignore", divide="ignore"):
        load = np.where(count >= need, total / np.maximum(count, 1), np.nan).reshape(n_days, 48)
    keep = np.isfinite(load).any(axis=1)
    days = (day0 + np.arange(n_days))[keep]
    return DailyProfiles(
        household_id=series.meter_id,
        dates=days.astype("datetime64[D]"),
        load_w=load[keep].astype(np.float32),
        temperature_c=np.full((len(days), 48), np.nan, np.float32),
        weekday=((days + 3) % 7).astype(np.int8),
        is_holiday=np.array([is_holiday_day(int(d)) for d in days], bool),
    )


def series_nilm_windows(series: MeterSeries, window: int, appliances: Sequence[str] = ALL_APPLIANCES,
                        max_missing: float = 0.0) -> dict[str, np.ndarray]:
    """Consecutive NILM windows of a binned REDD/UK-DALE series with aliased appliance targets.

    Windows with more than ``max_missing`` NaN samples in the aggregate are skipped; NaN in an
    appliance channel becomes 0 W. ``appliance_on`` is power > 10 W; ``reactive_var`` is NaN
    (these data sets' low-frequency files carry active power only).
    """
    n = len(series.ts_s) // window
    agg = series.power_w[: n * window].reshape(n, window)
    good = np.isnan(agg).mean(axis=1) <= max_missing
    app_w = np.zeros((n, len(appliances), window), np.float32)
    owned = np.zeros(len(appliances), bool)
    for label, values in series.appliances.items():
        name = APPLIANCE_ALIASES.get(label.lower())
        if name in appliances:
            a = list(appliances).index(name)
            owned[a] = True
            app_w[:, a] += np.nan_to_num(values[: n * window].reshape(n, window)).astype(np.float32)
    return {"start_ts_s": series.ts_s[: n * window : window][good], "load_w": agg[good].astype(np.float32),
            "reactive_var": np.full((int(good.sum()), window), np.nan, np.float32),
            "appliance_w": app_w[good], "appliance_on": app_w[good] > 10.0, "owned": owned}


def write_series(series: Iterable[MeterSeries], out_dir: str | Path, meter_ids: Sequence[str],
                 fractions: dict[str, float] | None = None, seed: int = 0, tz: str | None = None,
                 nilm_window: int = 0, meta: dict | None = None) -> dict:
    """Write real meter series as profile (and, if they carry appliances, NILM) shards."""
    from edge.data.shards import DatasetWriter, split_households

    split_of = split_households(meter_ids, fractions, seed)
    writer = None
    for s in series:
        if writer is None:
            writer = DatasetWriter(out_dir, split_of, nilm_window=nilm_window or None,
                                   nilm_resolution_s=s.resolution_s,
                                   meta={"seed": seed, "source": s.source, "tz": tz, **(meta or {})})
        writer.add_profiles(series_to_profiles(s, tz))
        if nilm_window and s.appliances:
            writer.add_nilm(s.meter_id, series_nilm_windows(s, nilm_window))
    if writer is None:
        raise ValueError("no meter series to write")
    return writer.close()
