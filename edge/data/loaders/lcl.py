"""Low Carbon London (UK Power Networks, London Datastore, 2011-2014): ``LCLid,stdorToU,DateTime,
KWH/hh (per half hour) [,Acorn,Acorn_grouped]`` in UK local time, ``Null`` = missing."""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from pathlib import Path

import numpy as np

from edge.data.loaders.clock import LocalClock, warn_nonexistent
from edge.data.loaders.series import (
    LoaderError,
    MeterSeries,
    finish_series,
    numbered_lines,
    parse_float,
)


def load_lcl(path: str | Path, tz: str | None = "Europe/London") -> list[MeterSeries]:
    """A Low Carbon London CSV: one :class:`MeterSeries` per LCLid (``Null`` -> NaN).

    Reads the UK Power Networks release (``LCLid,stdorToU,DateTime,KWH/hh (per half hour) ...``)
    and the widely shared re-cut ``halfhourly_dataset/block_N.csv`` (``LCLid,tstp,energy(kWh/hh)``).
    """
    path = Path(path)
    zone = zoneinfo.ZoneInfo(tz) if tz else dt.UTC
    rows: dict[str, tuple[list[int], list[float], str]] = {}
    clocks: dict[str, LocalClock] = {}
    lines = numbered_lines(path)
    header_no, header = next(((n, h) for n, h in lines if h.strip()), (0, ""))
    cols = [c.strip() for c in header.split(",")]
    if len(cols) >= 4 and cols[0] == "LCLid" and cols[3].startswith("KWH/hh"):
        i_t, i_v, i_tariff, width = 2, 3, 1, 4
    elif len(cols) >= 3 and cols[0] == "LCLid" and cols[1] == "tstp" and cols[2].startswith("energy"):
        i_t, i_v, i_tariff, width = 1, 2, None, 3
    else:
        raise LoaderError(path, header_no or 1, f"not a Low Carbon London header: {header.strip()!r}")
    for lineno, line in lines:
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < width:
            raise LoaderError(path, lineno, f"expected at least {width} columns, got {len(parts)}")
        meter, stamp, kwh = parts[0], parts[i_t], parts[i_v]
        try:
            local = dt.datetime.fromisoformat(stamp[:19])
        except ValueError as e:
            raise LoaderError(path, lineno, f"bad DateTime {stamp!r}") from e
        ts = clocks.setdefault(meter, LocalClock(zone, strict=False)).utc_s(local)
        value = math.nan if kwh in ("Null", "") else parse_float(path, lineno, kwh, "kWh per half hour") * 2000.0
        bucket = rows.setdefault(meter, ([], [], parts[i_tariff] if i_tariff is not None else ""))
        bucket[0].append(ts)
        bucket[1].append(value)
    if not rows:
        raise LoaderError(path, None, "no data rows")
    warn_nonexistent(path, clocks.values())
    return [finish_series(m, np.array(t), np.array(p), "lcl", extra={"tariff": tariff})
            for m, (t, p, tariff) in sorted(rows.items())]
