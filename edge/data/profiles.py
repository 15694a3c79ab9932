"""A meter series -> daily profiles in the meter's local time, at 15 min, 30 min or hourly.

The profile tasks (imputation, anomaly detection, forecasting) see one local day as L points:
L = 86400 / resolution_s = 96 (15 min), 48 (30 min) or 24 (hourly). :func:`to_profiles` bins a
:class:`edge.data.loaders.MeterSeries` onto that grid:

- Days are local calendar days of the meter's IANA time zone and every sample goes to the slot of
  its local wall-clock time, DST-aware per sample. On the day the clocks go forward the skipped
  hour's slots have no time, so they are missing (NaN; imputation fills them like any gap); on the
  day they go back the repeated hour's two occurrences are averaged into its slots. Such days are
  listed in the notes.
- Resolution: by default the series' own resolution when it is one of :data:`PROFILE_RESOLUTIONS_S`;
  finer data (e.g. 1-min Home Assistant bins) is averaged to 30 min; coarser data (2-hourly) is
  refused. A requested resolution finer than the data (hourly data at 30 min) spreads each sample
  over its slots, which adds no information, and only when asked. Every resample is in the notes
  (``ProfileSet.notes``) and logged; nothing is resampled silently.
- A slot is observed when the samples in it cover at least ``min_coverage`` of it (NaN otherwise).

Temperatures, when the series has them, are binned the same way (slot means, NaN where none).
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass, field

import numpy as np

from edge.data.loaders import MeterSeries
from edge.errors import DataError

log = logging.getLogger(__name__)

DAY_S = 86400
PROFILE_RESOLUTIONS_S = (900, 1800, 3600)
DEFAULT_FINE_TARGET_S = 1800  # finer data is averaged to 30 min unless another resolution is asked


class ProfileError(DataError):
    """A series that cannot become daily profiles as asked (the message says why)."""


@dataclass
class MeterProfiles:
    """One meter's local days: [D, L] arrays on consecutive calendar days (NaN where missing).

    Duck-compatible with :class:`edge.sim.household.DailyProfiles` (``household_id``, ``dates``,
    ``load_w``, ``temperature_c``, ``weekday``, ``is_holiday``) so shard writers take either.
    """

    household_id: str
    dates: np.ndarray  # datetime64[D], local dates, consecutive
    load_w: np.ndarray  # float32 [D, L], mean power (W) per slot, NaN where not observed
    temperature_c: np.ndarray  # float32 [D, L], NaN where unknown (all NaN without a weather column)
    weekday: np.ndarray  # int8 [D], Monday = 0
    is_holiday: np.ndarray  # bool [D]
    resolution_s: int = 1800
    tz: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def steps_per_day(self) -> int:
        return DAY_S // self.resolution_s

    @property
    def has_temperature(self) -> bool:
        return bool(np.isfinite(self.temperature_c).any())

    def __len__(self) -> int:
        return len(self.dates)

    def subset(self, idx) -> MeterProfiles:
        return MeterProfiles(self.household_id, self.dates[idx], self.load_w[idx], self.temperature_c[idx],
                             self.weekday[idx], self.is_holiday[idx], self.resolution_s, self.tz,
                             list(self.notes))


def choose_resolution(native_s: int | None, requested_s: int | None = None) -> tuple[int, str]:
    """(target resolution_s, a note saying what happens to the data; "" when nothing does)."""
    native = int(native_s or 0)
    if requested_s is not None:
        target = int(requested_s)
        if target not in PROFILE_RESOLUTIONS_S:
            raise ProfileError(f"profile resolution {target} s is not one of {PROFILE_RESOLUTIONS_S} "
                               "(15 min, 30 min, hourly)")
    elif native in PROFILE_RESOLUTIONS_S:
        target = native
    elif 0 < native < min(PROFILE_RESOLUTIONS_S):
        target = DEFAULT_FINE_TARGET_S
    else:
        raise ProfileError(f"the series' resolution ({native} s) is not 15 min, 30 min or hourly and not "
                           "finer; give a profile resolution (900, 1800 or 3600) to resample explicitly")
    if native == target or native == 0:
        return target, ""
    if native < target:
        return target, f"resampled {native} s -> {target} s (mean power per {target} s slot)"
    return target, (f"spread each {native} s sample over {native // target} slots of {target} s "
                    "(as asked; this adds no information)")


def utc_offsets_s(ts_s: np.ndarray, tz: str | None) -> np.ndarray:
    """Each sample's UTC offset (s) in ``tz``: exact per sample, computed per UTC day and only
    per sample on the days where the offset changes."""
    if not tz:
        return np.zeros(len(ts_s), np.int64)
    zone = zoneinfo.ZoneInfo(tz)
    days, inv = np.unique(ts_s // DAY_S, return_inverse=True)

    def offset(t: int) -> int:
        return int(dt.datetime.fromtimestamp(int(t), zone).utcoffset().total_seconds())

    start = np.array([offset(d * DAY_S) for d in days], np.int64)
    end = np.array([offset(d * DAY_S + DAY_S - 1) for d in days], np.int64)
    out = start[inv]
    for k in np.flatnonzero(start != end):
        rows = np.flatnonzero(inv == k)
        out[rows] = [offset(t) for t in ts_s[rows]]
    return out


def _bin(values: np.ndarray, idx: np.ndarray, n: int, need: float) -> np.ndarray:
    ok = np.isfinite(values)
    total = np.bincount(idx[ok], weights=values[ok], minlength=n)
    count = np.bincount(idx[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= need, total / np.maximum(count, 1), np.nan)


def _dst_notes(first_day: int, n_days: int, tz: str | None, res: int) -> list[str]:
    if not tz:
        return []
    zone = zoneinfo.ZoneInfo(tz)
    notes = []
    for d in range(first_day, first_day + n_days):
        date = dt.date(1970, 1, 1) + dt.timedelta(days=d)
        a = dt.datetime(date.year, date.month, date.day, tzinfo=zone)
        b = a + dt.timedelta(days=1)
        length = int(b.timestamp() - a.timestamp())
        if length != DAY_S:
            what = ("the skipped slots are missing" if length < DAY_S
                    else "the repeated hour's slots are the mean of both")
            notes.append(f"{date} has {length / 3600:g} h (clock change in {tz}): {abs(DAY_S - length) // res} "
                         f"slot(s) affected, {what}")
    return notes


def to_profiles(series: MeterSeries, tz: str | None = None, resolution_s: int | None = None,
                min_coverage: float = 0.5, holidays=None, keep_empty_days: bool = True) -> MeterProfiles:
    """Daily profiles of ``series`` in local time ``tz`` (None: UTC) at ``resolution_s``.

    ``holidays``: a callable ``date -> bool`` (e.g. ``CovariateSpec.is_holiday``) or None (no
    holidays). ``keep_empty_days``: keep days without any observed slot (all NaN) so the days stay
    consecutive (what "same day last week" needs); False drops them (shards for pre-training).
    Raises :class:`ProfileError` for a resolution that cannot be used.
    """
    ts = np.asarray(series.ts_s, np.int64)
    if len(ts) == 0:
        raise ProfileError(f"meter {series.meter_id}: no samples")
    native = int(series.resolution_s or 0)
    res, note = choose_resolution(native, resolution_s)
    notes = [note] if note else []
    local = ts + utc_offsets_s(ts, tz)
    power = np.asarray(series.power_w, np.float64)
    temp = None if series.temperature_c is None else np.asarray(series.temperature_c, np.float64)
    if native > res:  # spread coarse samples (asked for explicitly; see choose_resolution)
        k = native // res
        local = (local[:, None] + res * np.arange(k)[None, :]).reshape(-1)
        power = np.repeat(power, k)
        temp = None if temp is None else np.repeat(temp, k)
    steps = DAY_S // res
    slot = local // res
    day0 = int(slot.min() // steps)
    n_days = int(slot.max() // steps) - day0 + 1
    idx = slot - day0 * steps
    need = max(1.0, min_coverage * res / max(min(native, res), 1)) if native else 1.0
    load = _bin(power, idx, n_days * steps, need).reshape(n_days, steps)
    temperature = (np.full((n_days, steps), np.nan) if temp is None
                   else _bin(temp, idx, n_days * steps, 1.0).reshape(n_days, steps))
    days = day0 + np.arange(n_days)
    keep = np.ones(n_days, bool) if keep_empty_days else np.isfinite(load).any(axis=1)
    days = days[keep]
    dates = days.astype("datetime64[D]")
    notes += _dst_notes(day0, n_days, tz, res)
    for n in notes:
        log.info("meter %s: %s", series.meter_id, n)
    notes = list(series.extra.get("notes", [])) + notes  # what the loader did (logged there)
    return MeterProfiles(
        household_id=series.meter_id, dates=dates, load_w=load[keep].astype(np.float32),
        temperature_c=temperature[keep].astype(np.float32), weekday=((days + 3) % 7).astype(np.int8),
        is_holiday=np.array([bool(holidays(d)) if holidays else False for d in dates], bool),
        resolution_s=res, tz=tz, notes=notes)


def trace_series(trace) -> MeterSeries:
    """A simulated household (``edge.sim.HouseholdTrace``) as the series a meter would deliver,
    with its temperature, so simulated fleets take the same road to profiles as real meters (any
    resolution: a fleet checkpoint for 15-min or hourly users)."""
    return MeterSeries(trace.household_id, np.asarray(trace.ts_s, np.int64), np.asarray(trace.power_w, np.float64),
                       source="sim", resolution_s=int(trace.resolution_s),
                       temperature_c=np.asarray(trace.temperature_c, np.float64))
