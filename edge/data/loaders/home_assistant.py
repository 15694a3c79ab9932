"""A Home Assistant history export (History panel, "download data"): ``entity_id,state,
last_changed`` with ISO 8601 UTC times; power sensors (W, sample-and-hold) or cumulative energy
sensors (kWh), resampled to a regular grid."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np

from edge.data.loaders.clock import parse_timestamp
from edge.data.loaders.series import (
    LoaderError,
    MeterSeries,
    finish_series,
    numbered_lines,
    parse_float,
)

log = logging.getLogger(__name__)


def _held_means(t: np.ndarray, v: np.ndarray, t0: int, res: int, n: int, min_cover: float) -> np.ndarray:
    """Time-weighted bin means of a sample-and-hold signal (value v[i] holds on [t[i], t[i+1]))."""
    seg_a, seg_b = t[:-1], t[1:]
    ok = np.isfinite(v[:-1]) & (seg_b > seg_a)
    a = np.clip((seg_a[ok] - t0) / res, 0, n)
    b = np.clip((seg_b[ok] - t0) / res, 0, n)
    ia, ib = np.floor(a).astype(np.int64), np.floor(b).astype(np.int64)
    fa, fb = a - ia, b - ib
    idx = np.concatenate([ia, ia + 1, ib, ib + 1])
    out = []
    for w in (v[:-1][ok], np.ones(ok.sum())):
        diff = np.concatenate([w * (1 - fa), w * fa, -w * (1 - fb), -w * fb])
        out.append(np.cumsum(np.bincount(idx, weights=diff, minlength=n + 2)[:n]))
    total, cover = out
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cover >= min_cover, total / np.maximum(cover, 1e-12), np.nan)


HA_UNAVAILABLE = ("unavailable", "unknown", "")


def load_home_assistant(path: str | Path, resolution_s: int = 60, kind: str = "auto",
                        min_cover: float = 0.5, *, entity: str | None = None,
                        temperature_entity: str | None = "auto", unit: str | None = None
                        ) -> list[MeterSeries]:
    """A Home Assistant history export (History panel -> download): ``entity_id,state,last_changed``.

    Each meter entity becomes a regular series at ``resolution_s``. ``kind``: ``power`` (state
    held until the next change; bins are time-weighted means), ``energy_kwh`` (a cumulative
    ``total_increasing`` sensor, differentiated between bin edges; resets give NaN) or ``auto``
    (by the entity name: ``energy`` -> energy_kwh, else power). ``unit``: the state's unit
    (``W``/``kW`` for power, ``kWh``/``Wh`` for energy; default W and kWh, as Home Assistant's
    energy dashboard uses). ``entity`` keeps one entity as the meter (default: every entity
    without ``temperature`` in its id). ``temperature_entity``: an
    outdoor temperature sensor (degC) whose held values become the meters' ``temperature_c``;
    ``"auto"`` takes the entity with ``temperature`` in its id if there is exactly one, ``None``
    none. ``unavailable`` / ``unknown`` states are gaps; bins covered less than ``min_cover`` are NaN.
    """
    path = Path(path)
    data = _ha_states(path)
    temp_id = _ha_temperature_entity(path, data, temperature_entity)
    meters = {e: tv for e, tv in data.items() if e != temp_id and "temperature" not in e}
    if entity is not None:
        if entity not in data:
            raise LoaderError(path, None, f"no entity {entity!r} in the export; it has {sorted(data)}")
        meters = {entity: data[entity]}
    if not meters:
        raise LoaderError(path, None, f"no meter entity in the export (only {sorted(data)})")
    out = []
    for name, (t, v) in sorted(meters.items()):
        s = _ha_series(name, np.array(t), np.array(v), resolution_s, kind, min_cover, unit)
        if temp_id is not None:
            tt, tv = (np.array(x) for x in data[temp_id])
            grid_end = s.ts_s[-1] + resolution_s
            s.temperature_c = _held_means(np.append(tt, max(grid_end, tt[-1] + 1)), np.append(tv, np.nan),
                                          int(s.ts_s[0]), resolution_s, len(s), min_cover)
            s.extra["temperature_entity"] = temp_id
        out.append(s)
    return out


def _ha_states(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    data: dict[str, tuple[list[float], list[float]]] = {}
    lines = numbered_lines(path)
    header_no, header = next(((n, h) for n, h in lines if h.strip()), (0, ""))
    cols = [c.strip().strip('"') for c in header.split(",")]
    if cols[:3] != ["entity_id", "state", "last_changed"]:
        raise LoaderError(path, header_no or 1, f"not a Home Assistant history header: {header.strip()!r}")
    for lineno, line in lines:
        if not line.strip():
            continue
        parts = [p.strip() for p in next(csv.reader([line]))]
        if len(parts) < 3:
            raise LoaderError(path, lineno, f"expected entity_id,state,last_changed, got {line.strip()!r}")
        entity, state, stamp = parts[:3]
        ts = parse_timestamp(path, lineno, stamp)
        value = math.nan if state in HA_UNAVAILABLE else parse_float(path, lineno, state, "state")
        bucket = data.setdefault(entity, ([], []))
        bucket[0].append(float(ts))
        bucket[1].append(value)
    if not data:
        raise LoaderError(path, None, "no data rows")
    return data


def _ha_temperature_entity(path: Path, data: dict, choice: str | None) -> str | None:
    if choice is None:
        return None
    if choice != "auto":
        if choice not in data:
            raise LoaderError(path, None, f"no temperature entity {choice!r} in the export; it has {sorted(data)}")
        return choice
    found = [e for e in data if "temperature" in e]
    if len(found) > 1:
        log.warning("%s: several temperature entities %s; none used (choose one)", path, found)
    return found[0] if len(found) == 1 else None


HA_UNITS = {"power": {"w": 1.0, "kw": 1e3}, "energy_kwh": {"kwh": 3.6e6, "wh": 3.6e3}}


def _ha_series(entity: str, t: np.ndarray, v: np.ndarray, res: int, kind: str, min_cover: float,
               unit: str | None = None) -> MeterSeries:
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if kind == "auto":
        kind = "energy_kwh" if "energy" in entity else "power"
    if kind not in HA_UNITS:
        raise LoaderError(entity, None, f"unknown kind {kind!r} (power, energy_kwh or auto)")
    factors = HA_UNITS[kind]
    u = (unit or ("W" if kind == "power" else "kWh")).lower()
    if u not in factors:
        raise LoaderError(entity, None, f"unit {unit!r} does not fit a {kind} entity ({', '.join(factors)})")
    t0 = int(t[0]) - int(t[0]) % res
    n = max(1, int(np.ceil((t[-1] - t0) / res)))
    grid = t0 + res * np.arange(n, dtype=np.int64)
    if kind == "power":
        power = factors[u] * _held_means(np.append(t, t0 + n * res), np.append(v, np.nan), t0, res, n, min_cover)
    else:
        ok = np.isfinite(v)
        edges = t0 + res * np.arange(n + 1, dtype=np.float64)
        counter = np.interp(edges, t[ok], v[ok], left=np.nan, right=np.nan)
        power = np.diff(counter) * factors[u] / res
        power[power < 0] = np.nan  # counter reset
    return finish_series(entity, grid, power, "homeassistant", extra={"kind": kind, "unit": u})
