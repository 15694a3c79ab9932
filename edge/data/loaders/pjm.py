"""PJM hourly load: the Data Miner ``hrl_load_metered`` CSV (UTC and Eastern times, ``mw``) or the
per-zone files such as ``AEP_hourly.csv`` (``Datetime,AEP_MW`` in local Eastern time)."""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from pathlib import Path

import numpy as np

from edge.data.loaders.clock import LocalClock, warn_nonexistent
from edge.data.loaders.series import (
    LoaderError,
    MeterSeries,
    finish_series,
    parse_float,
)

_PJM_US = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) ([AP]M)$")


def _pjm_time(path: Path, lineno: int, text: str, clock: LocalClock) -> int:
    m = _PJM_US.match(text.strip())
    try:
        if m:
            mo, d, y, h, mi, s, ampm = m.groups()
            hour = int(h) % 12 + (12 if ampm == "PM" else 0)
            local = dt.datetime(int(y), int(mo), int(d), hour, int(mi), int(s))
        else:
            local = dt.datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise LoaderError(path, lineno, f"bad timestamp {text!r}") from e
    return int(local.timestamp()) if local.tzinfo else clock.utc_s(local)


def load_pjm(path: str | Path, tz: str = "America/New_York") -> list[MeterSeries]:
    """PJM hourly load (Data Miner ``hrl_load_metered`` or ``ZONE_hourly.csv``), MW -> W."""
    path = Path(path)
    rows: dict[str, tuple[list[int], list[float]]] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if "datetime_beginning_utc" in header and "mw" in header:
            i_t, i_mw = header.index("datetime_beginning_utc"), header.index("mw")
            i_id = header.index("load_area") if "load_area" in header else header.index("zone")
            clock, get_id = LocalClock(dt.UTC), (lambda r: r[i_id])
        elif len(header) == 2 and header[0] == "Datetime" and header[1].endswith("_MW"):
            i_t, i_mw, clock = 0, 1, LocalClock(tz, strict=False)
            name = header[1][:-3]
            get_id = lambda r: name  # noqa: E731
        else:
            raise LoaderError(path, 1, f"not a PJM hourly load header: {','.join(header)!r}")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise LoaderError(path, lineno, f"expected {len(header)} columns, got {len(row)}")
            ts = _pjm_time(path, lineno, row[i_t], clock)
            mw = math.nan if not row[i_mw].strip() else parse_float(path, lineno, row[i_mw], "MW")
            bucket = rows.setdefault(get_id(row), ([], []))
            bucket[0].append(ts)
            bucket[1].append(mw * 1e6)
    if not rows:
        raise LoaderError(path, None, "no data rows")
    warn_nonexistent(path, [clock])
    return [finish_series(m, np.array(t), np.array(p), "pjm") for m, (t, p) in sorted(rows.items())]
