"""Meter files as users have them, written from a simulated household (real formats, known truth).

Used by the loader/profile tests here and by the ``train all`` route tests: a generic CSV with
naive local times across clock changes, gaps, kW instead of W, hourly or 15-min rows, with or
without a temperature column; a Home Assistant history export (sample-and-hold states,
``unavailable`` gaps, an outdoor temperature entity); a labels CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import zoneinfo
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.sim.household import HouseholdTrace, fleet_member, simulate_household

UNIT_FACTOR = {"W": 1.0, "kW": 1e3}


def household(days: int = 70, resolution_s: int = 900, tz: str = "Europe/London", start: str = "2024-02-01",
              index: int = 0, seed: int = 0) -> HouseholdTrace:
    """A simulated household trace (deterministic)."""
    cfg, trace_seed = fleet_member(index, seed, tz=tz)
    return simulate_household(cfg, days, resolution_s, trace_seed, start)


def local_iso(ts_s: np.ndarray, tz: str) -> list[str]:
    """Naive local wall-clock ISO times, as a meter logging local time writes them."""
    zone = zoneinfo.ZoneInfo(tz)
    return [dt.datetime.fromtimestamp(int(t), zone).replace(tzinfo=None).isoformat() for t in ts_s]


def write_generic(path: Path, trace: HouseholdTrace, *, unit: str = "W", tz: str | None = "Europe/London",
                  gaps: Sequence[slice] = (), blank: Sequence[int] = (), temperature: bool = False,
                  every: int = 1, meter_id: str | None = None) -> Path:
    """A generic CSV: ``timestamp`` (naive local time of ``tz``, or UTC ISO with Z when tz is None),
    ``power_w`` or ``power_kw``, optional ``meter_id`` and ``temperature_c``. ``gaps``: rows left
    out (a logger that was off); ``blank``: rows with an empty value; ``every``: keep every n-th
    sample's mean over n (coarser files, e.g. hourly from 15-min)."""
    ts, power, temp = trace.ts_s, trace.power_w.astype(np.float64), trace.temperature_c.astype(np.float64)
    if every > 1:
        n = len(ts) // every * every
        ts, power = ts[:n:every], power[:n].reshape(-1, every).mean(axis=1)
        temp = temp[:n].reshape(-1, every).mean(axis=1)
    keep = np.ones(len(ts), bool)
    for g in gaps:
        keep[g] = False
    blank_rows = set(int(b) for b in blank)
    stamps = local_iso(ts, tz) if tz else [dt.datetime.fromtimestamp(int(t), dt.UTC).isoformat().replace("+00:00", "Z")
                                           for t in ts]
    header = ["timestamp"] + (["meter_id"] if meter_id else []) + [f"power_{unit.lower()}"] + \
        (["temperature_c"] if temperature else [])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in np.flatnonzero(keep):
            value = "" if i in blank_rows else f"{power[i] / UNIT_FACTOR[unit]:.6g}"
            w.writerow([stamps[i]] + ([meter_id] if meter_id else []) + [value] +
                       ([f"{temp[i]:.2f}"] if temperature else []))
    return path


def write_home_assistant(path: Path, trace: HouseholdTrace, *, unavailable: Sequence[slice] = (),
                         temperature: bool = True, entity: str = "sensor.house_power") -> Path:
    """A Home Assistant history export: a state row whenever the power changes (sample-and-hold),
    ``unavailable`` over the given sample ranges, and an outdoor temperature entity every hour."""
    power = np.round(trace.power_w.astype(np.float64), 0)
    down = np.zeros(len(power), bool)
    for u in unavailable:
        down[u] = True
    rows = []
    prev = None
    for i, t in enumerate(trace.ts_s):
        state = "unavailable" if down[i] else f"{power[i]:g}"
        if state != prev:
            rows.append((entity, state, int(t)))
            prev = state
    if temperature:
        step = max(1, 3600 // trace.resolution_s)
        rows += [("sensor.outdoor_temperature", f"{trace.temperature_c[i]:.1f}", int(trace.ts_s[i]))
                 for i in range(0, len(trace.ts_s), step)]
    rows.sort(key=lambda r: (r[0], r[2]))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["entity_id", "state", "last_changed"])
        for e, s, t in rows:
            w.writerow([e, s, dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")])
    return path


def write_labels(path: Path, intervals: Sequence[tuple[str, str]], meter_id: str = "", kind: str = "theft") -> Path:
    """A labels CSV (start,end,meter_id,kind) of local ISO intervals."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start", "end", "meter_id", "kind"])
        for a, b in intervals:
            w.writerow([a, b, meter_id, kind])
    return path
