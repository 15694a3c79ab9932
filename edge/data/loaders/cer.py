"""CER / ISSDA Smart Metering Electricity Customer Behaviour Trials (Irish Social Science Data
Archive, 2009-2010), ``File1.txt`` .. ``File6.txt``: no header, space-separated ``meter_id day_code
kWh``; ``day_code`` is ``DDDHH``: day DDD (1 = 2009-01-01) and half-hour HH (1..48; 49/50 on the
autumn clock-change day, 46 half-hours in spring), counted from local (Europe/Dublin) midnight."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import numpy as np

from edge.data.loaders.series import (
    LoaderError,
    MeterSeries,
    finish_series,
    numbered_lines,
    parse_float,
)

CER_EPOCH = dt.date(2009, 1, 1)  # CER day code 1


def _cer_midnight_s(day: int, zone: dt.tzinfo | None) -> int:
    date = CER_EPOCH + dt.timedelta(days=int(day) - 1)
    return int(dt.datetime(date.year, date.month, date.day, tzinfo=zone or dt.UTC).timestamp())


def load_cer(path: str | Path, tz: str | None = "Europe/Dublin") -> list[MeterSeries]:
    """A CER/ISSDA ``FileN.txt``: one :class:`MeterSeries` per meter, half-hourly mean power.

    The trial files hold ~25 million lines each: they are parsed with pyarrow when it is
    installed (seconds); anything the fast path does not accept is re-read line by line, which
    names the offending line.
    """
    path = Path(path)
    zone = zoneinfo.ZoneInfo(tz) if tz else None
    fast = _load_cer_fast(path, zone)
    return fast if fast is not None else _load_cer_lines(path, zone)


def _load_cer_fast(path: Path, zone: dt.tzinfo | None) -> list[MeterSeries] | None:
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return None
    try:
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(column_names=["meter", "code", "kwh"]),
            parse_options=pacsv.ParseOptions(delimiter=" ", ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types={"meter": pa.string(), "code": pa.int64(), "kwh": pa.float64()}))
    except (pa.ArrowInvalid, OSError):
        return None  # the line parser reports where
    if table.num_rows == 0 or any(table[c].null_count for c in ("meter", "code", "kwh")):
        return None
    code = table["code"].to_numpy()
    kwh = table["kwh"].to_numpy()
    day, half = code // 100, code % 100
    if code.min() < 101 or code.max() > 99999 or half.min() < 1 or half.max() > 50 or not np.isfinite(kwh).all():
        return None
    days, inv = np.unique(day, return_inverse=True)
    midnight = np.array([_cer_midnight_s(int(d), zone) for d in days], np.int64)
    ts = midnight[inv] + (half - 1) * 1800
    encoded = table["meter"].combine_chunks().dictionary_encode()
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    by_name = np.argsort(names)  # meters in sorted order, like the line parser
    rank = np.empty(len(names), np.int64)
    rank[by_name] = np.arange(len(names))
    meters, m_inv = names[by_name], rank[encoded.indices.to_numpy()]
    order = np.lexsort((ts, m_inv))
    bounds = np.searchsorted(m_inv[order], np.arange(len(meters) + 1))
    return [finish_series(str(m), ts[order[a:b]], kwh[order[a:b]] * 2000.0, "cer")
            for m, a, b in zip(meters, bounds[:-1], bounds[1:], strict=True)]


def _load_cer_lines(path: Path, zone: dt.tzinfo | None) -> list[MeterSeries]:
    midnight_cache: dict[int, int] = {}
    rows: dict[str, tuple[list[int], list[float]]] = {}
    for lineno, line in numbered_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise LoaderError(path, lineno, f"expected 'meter_id day_code kWh', got {line.strip()!r}")
        meter, code, kwh = parts
        if not code.isdigit() or len(code) != 5:
            raise LoaderError(path, lineno, f"day code {code!r} is not 5 digits DDDHH")
        day, half = int(code[:3]), int(code[3:])
        if day < 1 or not 1 <= half <= 50:
            raise LoaderError(path, lineno, f"day code {code}: day {day} / half-hour {half} out of range")
        if day not in midnight_cache:
            midnight_cache[day] = _cer_midnight_s(day, zone)
        ts = midnight_cache[day] + (half - 1) * 1800
        value = parse_float(path, lineno, kwh, "kWh")
        bucket = rows.setdefault(meter, ([], []))
        bucket[0].append(ts)
        bucket[1].append(value * 2000.0)  # kWh per half hour -> mean W
    if not rows:
        raise LoaderError(path, None, "no data rows")
    return [finish_series(m, np.array(t), np.array(p), "cer") for m, (t, p) in sorted(rows.items())]
