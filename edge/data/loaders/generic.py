"""A user's own CSV or Parquet: a time column, an optional meter id, one value column (power or
energy, unit in its name or given), optional outdoor temperature; ``,``/``;``/tab separated with
decimal commas, energy per interval or a cumulative register, naive local times read DST-aware or
placed by a UTC offset column. What the loader did to the data is in ``extra["notes"]``."""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.data.loaders.clock import LocalClock, parse_timestamp
from edge.data.loaders.series import (
    LoaderError,
    MeterSeries,
    finish_series,
    parse_float,
)

log = logging.getLogger(__name__)


TIME_COLUMNS = ("timestamp", "ts_s", "time", "datetime", "date_time")
OFFSET_COLUMNS = ("utc_offset", "offset", "tz_offset", "timezone_offset", "utcoffset")
_OFFSET = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{1,2}):?(\d{2})?")
# value column -> (kind, factor to W for power or to Wh for energy)
VALUE_COLUMNS: dict[str, tuple[str, float]] = {
    "power_w": ("power", 1.0), "power_kw": ("power", 1e3), "power_mw": ("power", 1e6),
    "load_w": ("power", 1.0), "load_kw": ("power", 1e3), "load_mw": ("power", 1e6),
    "demand_w": ("power", 1.0), "demand_kw": ("power", 1e3), "demand_mw": ("power", 1e6),
    "energy_wh": ("energy", 1.0), "energy_kwh": ("energy", 1e3), "energy_mwh": ("energy", 1e6),
}
UNITS: dict[str, tuple[str, float]] = {
    "w": ("power", 1.0), "kw": ("power", 1e3), "mw": ("power", 1e6), "gw": ("power", 1e9),
    "wh": ("energy", 1.0), "kwh": ("energy", 1e3), "mwh": ("energy", 1e6),
}
PLAIN_VALUE_COLUMNS = ("value", "power", "energy", "load", "demand", "consumption")
TEMPERATURE_COLUMNS = {"temperature_c": (1.0, 0.0), "temp_c": (1.0, 0.0),
                       "temperature_f": (5 / 9, -32.0), "temp_f": (5 / 9, -32.0)}
TIME_FORMAT_HINT = "; give other formats as a strptime format, e.g. --time-format '%d.%m.%Y %H:%M'"
MIN_PLAUSIBLE_MEDIAN_W = 5.0  # a household's median power in W is above this; kW data is below


def _generic_rows(path: Path) -> tuple[list[str], Iterable[tuple[int, list]], str | None]:
    """Header, numbered rows and the CSV separator (None for Parquet)."""
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise LoaderError(path, None, "reading Parquet needs pyarrow: pip install 'unimeter[data]'") from e
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise LoaderError(path, None, f"not a readable Parquet file: {e}") from e
        cols = table.column_names
        data = [table.column(c).to_pylist() for c in cols]
        # Parquet "line" = 1-based row number (+1 for a header-like offset kept consistent with CSV)
        return cols, ((i + 2, list(r)) for i, r in enumerate(zip(*data, strict=True))), None
    f = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 (closed by the generator)
    try:
        header = f.readline()
    except UnicodeDecodeError as e:
        f.close()
        raise LoaderError(path, None, f"not a text file: {e}") from e
    sep = _csv_separator(header)
    reader = csv.reader(f, delimiter=sep)
    cols = [c.strip() for c in next(csv.reader([header], delimiter=sep), [])]

    def rows() -> Iterator[tuple[int, list]]:
        with f:
            for lineno, row in enumerate(reader, start=2):
                if row:
                    yield lineno, row if sep == "," else [_decimal_point(c) for c in row]

    return cols, rows(), sep


CSV_SEPARATORS = (",", ";", "\t")  # comma first: it wins a tie
_DECIMAL_COMMA = re.compile(r"\s*[+-]?\d*,\d+\s*")


def _csv_separator(header: str) -> str:
    """The separator of a CSV file from its header line: the most frequent of ``,`` ``;`` and tab.

    European exports (Excel, many utilities' portals) separate by ``;`` and write decimal commas.
    """
    return max(CSV_SEPARATORS, key=header.count)


def _decimal_point(cell: str) -> str:
    """``'12345,913'`` -> ``'12345.913'`` (a decimal comma, only in files not separated by commas)."""
    return cell.replace(",", ".") if _DECIMAL_COMMA.fullmatch(cell) else cell


@dataclass(frozen=True)
class _Columns:
    """Where the generic loader finds each quantity, and the value's kind and unit factor."""

    time: int
    value: int
    kind: str  # power | energy
    factor: float  # to W (power) or Wh (energy)
    unit: str
    meter: int | None
    temperature: int | None
    temperature_scale: tuple[float, float] = (1.0, 0.0)
    offset: int | None = None  # a column of UTC offsets for the naive timestamps


def _time_column(path: Path, cols: list[str], time_column: str | None) -> int:
    lower = [c.lower() for c in cols]
    if time_column is not None:
        if time_column.lower() not in lower:
            raise LoaderError(path, 1, f"missing the time column {time_column!r}; columns: {cols}")
        return lower.index(time_column.lower())
    i_t = next((lower.index(c) for c in TIME_COLUMNS if c in lower), None)
    if i_t is None:
        raise LoaderError(path, 1, f"missing the time column (one of {', '.join(TIME_COLUMNS)}, or name it "
                                   f"with --time-column); columns: {cols}")
    return i_t


def _generic_columns(path: Path, cols: list[str], unit: str | None, value_column: str | None,
                     time_column: str | None = None) -> _Columns:
    lower = [c.lower() for c in cols]
    i_t = _time_column(path, cols, time_column)
    if value_column is not None:
        if value_column.lower() not in lower:
            raise LoaderError(path, 1, f"missing the value column {value_column!r}; columns: {cols}")
        i_v = lower.index(value_column.lower())
    else:
        i_v = next((lower.index(c) for c in (*VALUE_COLUMNS, *PLAIN_VALUE_COLUMNS) if c in lower), None)
    if i_v is None:  # one column whose name ends in a unit, e.g. PJM's AEP_MW
        suffixed = [i for i, c in enumerate(lower) if i != i_t and c.rsplit("_", 1)[-1] in UNITS and "_" in c]
        i_v = suffixed[0] if len(suffixed) == 1 else None
    if i_v is None:
        raise LoaderError(path, 1, "missing the value column: need columns timestamp (or ts_s) and power_w "
                          f"or energy_wh (or {', '.join(VALUE_COLUMNS)}, or value with a unit), or name "
                          f"it with --value-column and its unit with --unit; columns: {cols}")
    named = VALUE_COLUMNS.get(lower[i_v])
    if unit is not None:
        if unit.lower() not in UNITS:
            raise LoaderError(path, None, f"unknown unit {unit!r}; known: {', '.join(UNITS)}")
        kind, factor = UNITS[unit.lower()]
        if named is not None and named != (kind, factor):
            raise LoaderError(path, 1, f"column {cols[i_v]!r} says its unit, which contradicts unit {unit!r}")
        unit_name = unit
    elif named is not None:
        (kind, factor), unit_name = named, lower[i_v].rsplit("_", 1)[1]
    elif "_" in lower[i_v] and lower[i_v].rsplit("_", 1)[1] in UNITS:
        unit_name = lower[i_v].rsplit("_", 1)[1]
        kind, factor = UNITS[unit_name]
    else:
        raise LoaderError(path, 1, f"column {cols[i_v]!r} does not say its unit: rename it (e.g. power_w, "
                          "power_kw, energy_kwh) or give the unit (W, kW, MW, Wh, kWh)")
    i_temp = next((lower.index(c) for c in TEMPERATURE_COLUMNS if c in lower), None)
    scale = TEMPERATURE_COLUMNS[lower[i_temp]] if i_temp is not None else (1.0, 0.0)
    i_id = lower.index("meter_id") if "meter_id" in lower else None
    i_off = next((lower.index(c) for c in OFFSET_COLUMNS if c in lower), None)
    return _Columns(i_t, i_v, kind, factor, unit_name, i_id, i_temp, scale, i_off)


def parse_utc_offset(path: Path, lineno: int, text) -> int:
    """A UTC offset in s east of UTC: ``+01:00``, ``+0200``, ``-5``, ``UTC+1``, ``Z`` or minutes (``60``).

    A bare number is minutes when its size is above 14 or it is 0 (``60``, ``-300``), else hours.
    Raises :class:`LoaderError` for anything else or an offset beyond +-14 h.
    """
    cell = str(text).strip()
    if cell.upper() in ("Z", "UTC", "GMT"):
        return 0
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", cell) and not re.fullmatch(r"[+-]\d{4}", cell):  # hours or minutes
        number = float(cell)
        seconds = int(round(number * (3600 if 0 < abs(number) <= 14 else 60)))
    else:  # +01:00, +0200, UTC+1
        m = _OFFSET.fullmatch(cell)
        if m is None:
            raise LoaderError(path, lineno, f"bad UTC offset {cell!r} (e.g. +01:00, +0200 or minutes)")
        seconds = (int(m[2]) * 3600 + int(m[3] or 0) * 60) * (-1 if m[1] == "-" else 1)
    if abs(seconds) > 14 * 3600:
        raise LoaderError(path, lineno, f"UTC offset {cell!r} is beyond +-14 h")
    return seconds


def optional_float(path: Path, lineno: int, value, what: str) -> float:
    if value is None or str(value).strip() in ("", "NA", "NaN", "nan", "null", "Null", "None"):
        return math.nan
    return parse_float(path, lineno, str(value), what)


def load_generic(path: str | Path, default_meter_id: str | None = None, *, tz: str | None = None,
                 unit: str | None = None, value_column: str | None = None,
                 time_format: str | None = None, time_column: str | None = None) -> list[MeterSeries]:
    """A CSV or Parquet file: time, optional ``meter_id``, a power or energy column, optional temperature.

    ``energy_*`` is the energy of the interval from each timestamp to the next of the same meter
    (the last interval uses the median spacing); every value ends as mean power in W. ``tz`` is
    the zone of timestamps written without a UTC offset (DST-aware, see :class:`LocalClock`);
    ``time_format`` a ``strptime`` format for times that are not ISO 8601. Without a known value
    column, the one column whose name ends in a unit (``AEP_MW``, ``import_kwh``) is the value;
    ``time_column`` names a time column not in :data:`TIME_COLUMNS`. A column of UTC offsets (a
    name in :data:`OFFSET_COLUMNS`; ``+01:00``, ``+0200`` or minutes, see :func:`parse_utc_offset`)
    places the naive timestamps of its row, before ``tz`` (which then only sets the local days);
    this tells the two occurrences of the repeated autumn hour apart.
    A W column whose median is below :data:`MIN_PLAUSIBLE_MEDIAN_W` is logged as probably kW.
    What the loader did to the data (separator, counter, dropped rows, missing intervals) is in
    each series' ``extra["notes"]``.
    """
    path = Path(path)
    try:
        cols, rows, sep = _generic_rows(path)
    except OSError as e:
        raise LoaderError(path, None, f"cannot read: {e}") from e
    c = _generic_columns(path, cols, unit, value_column, time_column)
    notes = _file_notes(path, cols, c, sep)
    meter_default = default_meter_id or path.stem
    data: dict[str, tuple[list[int], list[float], list[float]]] = {}
    clocks: dict[str, LocalClock] = {}
    for lineno, row in rows:
        if len(row) != len(cols):
            raise LoaderError(path, lineno, f"expected {len(cols)} columns, got {len(row)}")
        meter = str(row[c.meter]) if c.meter is not None else meter_default
        clock = clocks.setdefault(meter, LocalClock(tz)) if tz else None
        offset_s = parse_utc_offset(path, lineno, row[c.offset]) if c.offset is not None else None
        bucket = data.setdefault(meter, ([], [], []))
        bucket[0].append(parse_timestamp(path, lineno, row[c.time], clock, time_format, TIME_FORMAT_HINT, offset_s))
        bucket[1].append(optional_float(path, lineno, row[c.value], cols[c.value]) * c.factor)
        if c.temperature is not None:
            t = optional_float(path, lineno, row[c.temperature], cols[c.temperature])
            bucket[2].append((t + c.temperature_scale[1]) * c.temperature_scale[0])
    if not data:
        raise LoaderError(path, None, "no data rows")
    return [_generic_series(path, meter, t, v, temp, c, tz, notes) for meter, (t, v, temp) in sorted(data.items())]


def _note(path: Path, notes: list[str], text: str, meter: str | None = None) -> None:
    """Log what the loader did to the data and keep it in the series' notes (``extra["notes"]``)."""
    log.warning("%s: %s%s", path, f"meter {meter}: " if meter is not None else "", text)
    notes.append(text)


def _file_notes(path: Path, cols: list[str], c: _Columns, sep: str | None) -> list[str]:
    """Notes on how a generic file is read as a whole (its separator, its offset column)."""
    notes: list[str] = []
    if sep is not None and sep != ",":
        _note(path, notes, f"{sep!r}-separated; numbers with a decimal comma (1,5) are read as 1.5")
    if c.offset is not None:
        _note(path, notes, f"timestamps without a UTC offset are placed by the column {cols[c.offset]!r}")
    return notes


def _generic_series(path: Path, meter: str, t: list[int], v: list[float], temp: list[float],
                    c: _Columns, tz: str | None, file_notes: list[str] = ()) -> MeterSeries:
    notes = list(file_notes)
    s = _drop_repeated_rows(path, finish_series(meter, np.array(t), np.array(v), "generic",
                                          temperature_c=np.array(temp) if temp else None,
                                          extra={"unit": c.unit, "kind": c.kind, "notes": notes}), c.kind, tz)
    if c.kind == "energy" and _is_counter(s.power_w):
        _note(path, notes, f"the energy column ({c.unit}) never decreases and is far above its steps: read as a "
                           "cumulative meter counter (register reading), the power of each interval from its differences",
              meter)
        s.extra["counter"] = True
        step = np.diff(s.ts_s).astype(np.float64)
        s.power_w = np.append(np.diff(s.power_w) * 3600.0 / step, np.nan)
    elif c.kind == "energy":
        step = np.diff(s.ts_s, append=s.ts_s[-1] + (s.resolution_s or 1))
        s.power_w = s.power_w * 3600.0 / step
    finite = s.power_w[np.isfinite(s.power_w)]
    if c.factor == 1.0 and len(finite) and np.median(np.abs(finite)) < MIN_PLAUSIBLE_MEDIAN_W:
        log.warning("%s: meter %s: median %.3g %s per sample looks like kW (kWh), not W (Wh); "
                    "if so, name the column power_kw / energy_kwh or give the unit",
                    path, meter, float(np.median(np.abs(finite))), c.unit)
    _missing_note(path, s, notes)
    return s


def _missing_note(path: Path, s: MeterSeries, notes: list[str]) -> None:
    """Note how many intervals of the series' own spacing have no row or no value."""
    if not s.resolution_s or len(s.ts_s) < 2:
        return
    expected = int((s.ts_s[-1] - s.ts_s[0]) // s.resolution_s) + 1
    missing = max(0, expected - len(s.ts_s)) + int(np.isnan(s.power_w[:-1] if s.extra.get("counter")
                                                           else s.power_w).sum())
    if missing:
        _note(path, notes, f"{missing} of {expected} intervals of {s.resolution_s} s missing (no row or no value)", s.meter_id)


def _drop_repeated_rows(path: Path, s: MeterSeries, kind: str, tz: str | None = None) -> MeterSeries:
    """Keep the first row of each timestamp when its repeats say the same (an export's duplicated rows).

    Repeats that disagree are kept for power (the profile averages them) and refused for energy,
    whose value is tied to the interval up to the next timestamp; both name the first one.
    """
    repeat = np.flatnonzero(np.diff(s.ts_s) == 0) + 1
    if not len(repeat):
        return s
    a, b = s.power_w[repeat - 1], s.power_w[repeat]
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    first = dt.datetime.fromtimestamp(int(s.ts_s[repeat[0]]), dt.UTC).isoformat()
    if not same.all():
        when = dt.datetime.fromtimestamp(int(s.ts_s[repeat[~same][0]]), dt.UTC).isoformat()
        msg = (f"meter {s.meter_id}: {int((~same).sum())} timestamp(s) repeated with different values, "
               f"the first at {when}")
        if tz is None:  # read as UTC: a local clock's repeated hour in autumn looks like this
            msg += " (times without a UTC offset are read as UTC: if they are local times, give --tz)"
        if kind == "energy":
            raise LoaderError(path, None, f"{msg}: cannot tell which energy value is right; keep one row "
                                          "per timestamp (and meter_id)")
        _note(path, s.extra.setdefault("notes", []), f"{msg}; their power is averaged")
    keep = np.ones(len(s.ts_s), dtype=bool)
    keep[repeat[same]] = False
    if same.any():
        _note(path, s.extra.setdefault("notes", []),
              f"{int(same.sum())} duplicated row(s) dropped (same timestamp and value), the first at {first}", s.meter_id)
    s.ts_s, s.power_w = s.ts_s[keep], s.power_w[keep]
    if s.temperature_c is not None:
        s.temperature_c = s.temperature_c[keep]
    s.resolution_s = int(np.median(np.diff(s.ts_s))) if len(s.ts_s) > 1 else None
    return s


def _is_counter(value: np.ndarray) -> bool:
    """Whether an energy column is a cumulative register (meter reading), not the energy per interval.

    A register never decreases and is large against its steps (12345.6 kWh read every 30 min);
    interval energies go up and down around their own size.
    """
    finite = value[np.isfinite(value)]
    steps = np.diff(finite)
    if len(steps) < 2 or np.any(steps < 0):
        return False
    moving = steps[steps > 0]
    return bool(len(moving)) and float(np.median(finite)) > 20.0 * float(np.median(moving))
