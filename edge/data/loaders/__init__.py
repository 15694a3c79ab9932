"""Loaders for the smart-meter data a user really has, all returning :class:`MeterSeries`.

One module per format (``cer``, ``lcl``, ``redd_ukdale``, ``pjm``, ``generic``, ``home_assistant``),
what they share in ``series`` and ``clock``; :func:`load` picks one by name (:data:`LOADERS`).

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

import difflib
import inspect
import zoneinfo
from pathlib import Path

from edge.data.loaders.cer import load_cer
from edge.data.loaders.clock import LocalClock, parse_timestamp
from edge.data.loaders.generic import (
    TEMPERATURE_COLUMNS,
    TIME_COLUMNS,
    UNITS,
    VALUE_COLUMNS,
    load_generic,
    optional_float,
    parse_utc_offset,
)
from edge.data.loaders.home_assistant import load_home_assistant
from edge.data.loaders.lcl import load_lcl
from edge.data.loaders.pjm import load_pjm
from edge.data.loaders.redd_ukdale import (
    load_redd_house,
    load_ukdale_house,
    read_channel,
    read_labels,
)
from edge.data.loaders.series import LoaderError, MeterSeries

__all__ = ["LOADERS", "TEMPERATURE_COLUMNS", "TIME_COLUMNS", "UNITS", "VALUE_COLUMNS", "LoaderError",
           "LocalClock", "MeterSeries", "check_time_zone", "load", "load_cer", "load_generic",
           "load_home_assistant", "load_lcl", "load_pjm", "load_redd_house", "load_ukdale_house",
           "optional_float", "parse_timestamp", "parse_utc_offset", "read_channel", "read_labels"]


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
    loader = LOADERS[fmt]
    accepted = inspect.signature(loader).parameters
    unknown = sorted(k for k, v in options.items() if v is not None and k not in accepted)
    if unknown:
        raise LoaderError(path, None, f"format {fmt!r} takes no option {', '.join(unknown)}")
    if isinstance(options.get("tz"), str):
        check_time_zone(path, options["tz"])
    out = loader(path, **{k: v for k, v in options.items() if v is not None and k in accepted})
    return out if isinstance(out, list) else [out]
