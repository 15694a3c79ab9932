"""Loaders for the smart-meter data a user really has, all returning :class:`MeterSeries`.

Nothing is downloaded: every loader reads files from paths the user gives. Malformed input raises
:class:`LoaderError` naming the file and the 1-based line. Missing values that the format itself
marks as missing (LCL ``Null``, empty cells) become NaN, so nothing is silently dropped.

Formats (source and layout):

- **CER / ISSDA** Smart Metering Electricity Customer Behaviour Trials (Irish Social Science Data
  Archive, 2009-2010), ``File1.txt`` .. ``File6.txt``: no header, space-separated
  ``meter_id day_code kWh`` where ``day_code`` is 5 digits ``DDDHH``: day DDD (1 = 2009-01-01)
  and half-hour HH (1..48; 49/50 on the autumn clock-change day, 46 half-hours in spring),
  intervals counted from local (Europe/Dublin) midnight; kWh consumed in that half-hour.
- **Low Carbon London** (UK Power Networks, London Datastore, 2011-2014), e.g.
  ``Power-Networks-LCL-June2015(withAcornGps)v2_1.csv``: header
  ``LCLid,stdorToU,DateTime,KWH/hh (per half hour) [,Acorn,Acorn_grouped]``, rows like
  ``MAC000002,Std,2012-10-12 00:30:00.0000000, 0.143 `` (UK local time, ``Null`` = missing).
- **REDD** low-frequency (Kolter and Johnson, MIT, 2011), ``low_freq/house_N/channel_K.dat``:
  ``unix_ts power_W`` per line, space-separated (mains ~1 Hz, circuits every ~3 s), and
  ``labels.dat`` with ``K name`` per line (``1 mains``, ``2 mains``, ``3 oven``, ...).
- **UK-DALE** (Kelly and Knottenbelt, UKERC, 2015), ``house_N/channel_K.dat``: ``unix_ts power_W``
  (6 s), ``labels.dat`` with ``K name`` (``1 aggregate``, ``2 boiler``, ...).
- **PJM hourly load**: either the PJM Data Miner ``hrl_load_metered`` CSV (``datetime_beginning_utc,
  datetime_beginning_ept,nerc_region,mkt_region,zone,load_area,mw,is_verified``, timestamps like
  ``1/1/2024 5:00:00 AM``) or the widely used per-zone files ``AEP_hourly.csv``
  (``Datetime,AEP_MW``, local Eastern time ``2004-12-31 01:00:00``).
- **Home Assistant** history export (History panel, "download data"): ``entity_id,state,
  last_changed`` with ISO 8601 UTC times; power sensors (W, sample-and-hold) or cumulative energy
  sensors (kWh).
- **Generic CSV / Parquet**: a time column (``timestamp``, ``ts_s``, ``time``, ``datetime``,
  ``date_time``: ISO 8601 with or without a UTC offset, or epoch seconds; times without an offset
  are local times of ``tz``, UTC when no ``tz`` is given), optional ``meter_id``, one value
  column whose name gives kind and unit (:data:`VALUE_COLUMNS`: mean power of the interval in
  W/kW/MW, or energy of the interval starting at the timestamp in Wh/kWh), or a column ``value``
  / ``power`` / ``energy`` with an explicit ``unit``; optional outdoor ``temperature_c`` (or
  ``temperature_f``). Missing optional columns are never an error; a missing required one is,
  by name.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import re
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import DataError

CER_EPOCH = dt.date(2009, 1, 1)  # CER day code 1
log = logging.getLogger(__name__)


class LoaderError(DataError):
    """Malformed input; the message names the file and the line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path, self.line = str(path), line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass
class MeterSeries:
    """One meter's series: UTC epoch seconds and mean power (W) per sample, NaN where missing."""

    meter_id: str
    ts_s: np.ndarray  # int64, sorted ascending
    power_w: np.ndarray  # float64
    source: str = ""  # cer | lcl | redd | ukdale | pjm | generic
    resolution_s: int | None = None  # median sample spacing
    appliances: dict[str, np.ndarray] = field(default_factory=dict)  # per-appliance power, same ts
    extra: dict = field(default_factory=dict)
    temperature_c: np.ndarray | None = None  # outdoor temperature (degC) per sample, NaN where unknown

    def __len__(self) -> int:
        return len(self.ts_s)


def _finish(meter_id: str, ts: np.ndarray, power: np.ndarray, source: str, **kw) -> MeterSeries:
    order = np.argsort(ts, kind="stable")
    ts = np.asarray(ts, dtype=np.int64)[order]
    res = int(np.median(np.diff(ts))) if len(ts) > 1 else None
    apps = {k: np.asarray(v, dtype=np.float64)[order] for k, v in kw.pop("appliances", {}).items()}
    temp = kw.pop("temperature_c", None)
    if temp is not None:
        temp = np.asarray(temp, dtype=np.float64)[order]
    return MeterSeries(meter_id, ts, np.asarray(power, dtype=np.float64)[order], source, res, apps,
                       temperature_c=temp, **kw)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            yield from enumerate(f, start=1)
    except OSError as e:
        raise LoaderError(path, None, f"cannot read: {e}") from e
    except UnicodeDecodeError as e:
        raise LoaderError(path, None, f"not a text file: {e}") from e


def _float(path: Path, lineno: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise LoaderError(path, lineno, f"{what} {text.strip()!r} is not a number") from e
    if math.isinf(value):
        raise LoaderError(path, lineno, f"{what} is infinite")
    return value


# --- local wall-clock times -----------------------------------------------------------------


class LocalClock:
    """Naive local wall-clock times of one meter -> UTC epoch seconds, DST-aware.

    An ambiguous time (the repeated hour when the clocks go back) maps to its first occurrence
    (summer time) the first time it is seen and to the second (standard time) when it comes again,
    which is how a meter logging local time writes the repeated hour. A time that does not exist
    (the hour skipped when the clocks go forward) raises ``ValueError``.
    """

    def __init__(self, tz: str | dt.tzinfo | None, strict: bool = True) -> None:
        self.zone = zoneinfo.ZoneInfo(tz) if isinstance(tz, str) else (tz or dt.UTC)
        self.strict = strict  # False: a non-existent time is read with the offset before the change
        self.nonexistent = 0  # non-existent times read so (strict=False)
        self._seen: set[dt.datetime] = set()

    def utc_s(self, local: dt.datetime) -> int:
        first = int(local.replace(tzinfo=self.zone, fold=0).timestamp())
        second = int(local.replace(tzinfo=self.zone, fold=1).timestamp())
        if first == second:
            return first
        if dt.datetime.fromtimestamp(first, self.zone).replace(tzinfo=None) != local:
            if not self.strict:
                self.nonexistent += 1
                return first
            raise ValueError(f"{local.isoformat()} does not exist in {self.zone} (the clocks went forward); "
                             "if the file keeps standard time all year, give a fixed-offset zone "
                             "such as Etc/GMT-1")
        if local in self._seen:
            return second
        self._seen.add(local)
        return first


def parse_timestamp(path: Path, lineno: int, text: str, clock: LocalClock | None = None,
                    time_format: str | None = None, hint: str = "", offset_s: int | None = None) -> int:
    """Epoch seconds, or ISO 8601 (or ``time_format``, a ``strptime`` format such as
    ``%d/%m/%Y %H:%M``): with an offset as given; without one, at UTC offset ``offset_s`` (s east
    of UTC, from a separate offset column) or else in ``clock``'s zone (UTC when there is no clock).
    ``hint`` ends the error of an unreadable time (how to give another format)."""
    text = str(text).strip()
    if time_format is None:
        try:
            return int(float(text))
        except ValueError:
            pass
    try:
        stamp = (dt.datetime.strptime(text, time_format) if time_format
                 else dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as e:
        expected = f"time format {time_format!r}" if time_format else "ISO 8601 or epoch seconds" + hint
        raise LoaderError(path, lineno, f"bad timestamp {text!r} ({expected})") from e
    if stamp.tzinfo is not None:
        return int(stamp.timestamp())
    if offset_s is not None:
        return int(stamp.replace(tzinfo=dt.UTC).timestamp()) - offset_s
    if clock is None:
        return int(stamp.replace(tzinfo=dt.UTC).timestamp())
    try:
        return clock.utc_s(stamp)
    except ValueError as e:
        raise LoaderError(path, lineno, str(e)) from e


# --- CER / ISSDA -----------------------------------------------------------------------------


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
    return [_finish(str(m), ts[order[a:b]], kwh[order[a:b]] * 2000.0, "cer")
            for m, a, b in zip(meters, bounds[:-1], bounds[1:], strict=True)]


def _load_cer_lines(path: Path, zone: dt.tzinfo | None) -> list[MeterSeries]:
    midnight_cache: dict[int, int] = {}
    rows: dict[str, tuple[list[int], list[float]]] = {}
    for lineno, line in _lines(path):
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
        value = _float(path, lineno, kwh, "kWh")
        bucket = rows.setdefault(meter, ([], []))
        bucket[0].append(ts)
        bucket[1].append(value * 2000.0)  # kWh per half hour -> mean W
    if not rows:
        raise LoaderError(path, None, "no data rows")
    return [_finish(m, np.array(t), np.array(p), "cer") for m, (t, p) in sorted(rows.items())]


# --- Low Carbon London ----------------------------------------------------------------------


def load_lcl(path: str | Path, tz: str | None = "Europe/London") -> list[MeterSeries]:
    """A Low Carbon London CSV: one :class:`MeterSeries` per LCLid (``Null`` -> NaN).

    Reads the UK Power Networks release (``LCLid,stdorToU,DateTime,KWH/hh (per half hour) ...``)
    and the widely shared re-cut ``halfhourly_dataset/block_N.csv`` (``LCLid,tstp,energy(kWh/hh)``).
    """
    path = Path(path)
    zone = zoneinfo.ZoneInfo(tz) if tz else dt.UTC
    rows: dict[str, tuple[list[int], list[float], str]] = {}
    clocks: dict[str, LocalClock] = {}
    lines = _lines(path)
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
        value = math.nan if kwh in ("Null", "") else _float(path, lineno, kwh, "kWh per half hour") * 2000.0
        bucket = rows.setdefault(meter, ([], [], parts[i_tariff] if i_tariff is not None else ""))
        bucket[0].append(ts)
        bucket[1].append(value)
    if not rows:
        raise LoaderError(path, None, "no data rows")
    _warn_nonexistent(path, clocks.values())
    return [_finish(m, np.array(t), np.array(p), "lcl", extra={"tariff": tariff})
            for m, (t, p, tariff) in sorted(rows.items())]


def _warn_nonexistent(path: Path, clocks: Iterable[LocalClock]) -> None:
    n = sum(c.nonexistent for c in clocks)
    if n:
        log.warning("%s: %d local times fall in an hour skipped by a clock change; read with the "
                    "offset before the change", path, n)


# --- REDD / UK-DALE channel files ------------------------------------------------------------


def read_channel(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A ``channel_K.dat`` file (REDD low_freq, UK-DALE): (ts_s int64, power_w float64)."""
    path = Path(path)
    ts, pw = [], []
    for lineno, line in _lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise LoaderError(path, lineno, f"expected 'timestamp power', got {line.strip()!r}")
        t = _float(path, lineno, parts[0], "timestamp")
        if t != int(t) or t < 0:
            raise LoaderError(path, lineno, f"timestamp {parts[0]!r} is not whole UNIX seconds")
        ts.append(int(t))
        pw.append(_float(path, lineno, parts[1], "power"))
    return np.array(ts, dtype=np.int64), np.array(pw, dtype=np.float64)


def read_labels(path: str | Path) -> dict[int, str]:
    """A ``labels.dat`` file: channel number -> appliance name."""
    path = Path(path)
    labels: dict[int, str] = {}
    for lineno, line in _lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise LoaderError(path, lineno, f"expected 'channel name', got {line.strip()!r}")
        labels[int(parts[0])] = parts[1]
    if not labels:
        raise LoaderError(path, None, "no labels")
    return labels


def _bin_mean(ts: np.ndarray, pw: np.ndarray, t0: int, res: int, n: int) -> np.ndarray:
    idx = (ts - t0) // res
    ok = (idx >= 0) & (idx < n)
    s = np.bincount(idx[ok], weights=pw[ok], minlength=n)
    c = np.bincount(idx[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def _load_channels(house_dir: str | Path, mains_names: tuple[str, ...], resolution_s: int,
                   source: str) -> MeterSeries:
    house = Path(house_dir)
    labels = read_labels(house / "labels.dat")
    channels = {}
    for k, name in labels.items():
        f = house / f"channel_{k}.dat"
        if f.exists():
            channels[k] = (name, *read_channel(f))
    mains = [c for c in channels.values() if c[0] in mains_names]
    if not mains:
        raise LoaderError(house / "labels.dat", None, f"no mains channel (one of {mains_names}) with a data file")
    t0 = min(int(c[1].min()) for c in channels.values() if len(c[1]))
    t1 = max(int(c[1].max()) for c in channels.values() if len(c[1]))
    t0 -= t0 % resolution_s
    n = (t1 - t0) // resolution_s + 1
    power = sum(_bin_mean(ts, pw, t0, resolution_s, n) for _, ts, pw in mains)
    apps: dict[str, np.ndarray] = {}
    for name, ts, pw in channels.values():
        if name in mains_names:
            continue
        binned = _bin_mean(ts, pw, t0, resolution_s, n)
        apps[name] = apps[name] + binned if name in apps else binned  # same-name circuits add
    ts_grid = t0 + resolution_s * np.arange(n, dtype=np.int64)
    return _finish(f"{source}_{house.name}", ts_grid, power, source, appliances=apps)


def load_redd_house(house_dir: str | Path, resolution_s: int = 60) -> MeterSeries:
    """A REDD ``low_freq/house_N`` directory binned to ``resolution_s`` (mains 1 + 2 summed)."""
    return _load_channels(house_dir, ("mains",), resolution_s, "redd")


def load_ukdale_house(house_dir: str | Path, resolution_s: int = 60) -> MeterSeries:
    """A UK-DALE ``house_N`` directory binned to ``resolution_s`` (channel ``aggregate`` = mains)."""
    return _load_channels(house_dir, ("aggregate", "mains"), resolution_s, "ukdale")


# --- PJM --------------------------------------------------------------------------------------

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
            mw = math.nan if not row[i_mw].strip() else _float(path, lineno, row[i_mw], "MW")
            bucket = rows.setdefault(get_id(row), ([], []))
            bucket[0].append(ts)
            bucket[1].append(mw * 1e6)
    if not rows:
        raise LoaderError(path, None, "no data rows")
    _warn_nonexistent(path, [clock])
    return [_finish(m, np.array(t), np.array(p), "pjm") for m, (t, p) in sorted(rows.items())]


# --- generic CSV / Parquet -----------------------------------------------------------------------

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
    return _float(path, lineno, str(value), what)


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
    s = _drop_repeated_rows(path, _finish(meter, np.array(t), np.array(v), "generic",
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


# --- Home Assistant history export ------------------------------------------------------------


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
    lines = _lines(path)
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
        value = math.nan if state in HA_UNAVAILABLE else _float(path, lineno, state, "state")
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
    return _finish(entity, grid, power, "homeassistant", extra={"kind": kind, "unit": u})


LOADERS = {
    "cer": load_cer,
    "lcl": load_lcl,
    "redd": load_redd_house,
    "ukdale": load_ukdale_house,
    "pjm": load_pjm,
    "generic": load_generic,
    "homeassistant": load_home_assistant,
}


def check_time_zone(path: str | Path, tz: str) -> None:
    """Refuse a time zone that is not an IANA name, suggesting the nearest ones (a typo)."""
    import difflib

    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        near = difflib.get_close_matches(tz, sorted(zoneinfo.available_timezones()), n=3)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        raise LoaderError(path, None, f"unknown time zone {tz!r}: give an IANA name such as "
                                      f"Europe/London{hint}") from e


def load(path: str | Path, fmt: str, **options) -> list[MeterSeries]:
    """Load ``path`` in format ``fmt`` (a key of :data:`LOADERS`) as a list of series.

    ``options`` go to the loader; ones it does not take (e.g. ``unit`` for CER) are an error
    naming them, never silently ignored.
    """
    if fmt not in LOADERS:
        raise LoaderError(path, None, f"unknown format {fmt!r}; known: {sorted(LOADERS)}")
    import inspect

    loader = LOADERS[fmt]
    accepted = inspect.signature(loader).parameters
    unknown = sorted(k for k, v in options.items() if v is not None and k not in accepted)
    if unknown:
        raise LoaderError(path, None, f"format {fmt!r} takes no option {', '.join(unknown)}")
    if isinstance(options.get("tz"), str):
        check_time_zone(path, options["tz"])
    out = loader(path, **{k: v for k, v in options.items() if v is not None and k in accepted})
    return out if isinstance(out, list) else [out]
