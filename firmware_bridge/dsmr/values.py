"""Value types of P1 objects: meter time, numbers with units, counters, tariff and switch indicators.

Every function takes the text of one group (between the brackets) and returns the value or
raises ``ParseError`` with the reason; the parser turns that into a dropped object, never a
dropped telegram.

Meter time comes in two forms:

* ``YYMMDDhhmmssX`` (DSMR 4/5, e-MUCS): X is "S" (summer) or "W" (winter), some meters write it
  in lower case. DSMR meters exist only in NL, BE and LU, all on CET/CEST, so with a flag the UTC
  offset is ``standard_utc_offset_s`` (+1 h) plus one hour for summer; using the flag rather than
  a tz database resolves the repeated hour in October, which is what the flag is for. Without a
  flag (DSMR 2.2/3 gas) the ``timezone`` name is used. Two-digit years follow the DSMR rule:
  00-69 -> 20xx, 70-99 -> 19xx (so an unconnected channel's ``700101...`` is 1970, not 2070).
* the COSEM date-time octet string in hex (IEC 62056-62 / DLMS Blue Book 4.1.6.1), 12 bytes:
  year(2) month day weekday hour minute second hundredths deviation(2, signed minutes, local time
  to UTC: UTC = local + deviation) clock-status (bit 7 = summer time).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from firmware_bridge.errors import ParseError

_TS_RE = re.compile(r"^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([SWsw]?)$")
_COSEM_RE = re.compile(r"^[0-9A-Fa-f]{24}$")
_NUMBER_RE = re.compile(r"^[+-]?\d+(?:\.\d*)?$")
_TRAILING_INT_RE = re.compile(r"(\d+)\s*$")
_COSEM_DEVIATION_UNSET = -0x8000


@dataclass(frozen=True)
class DsmrParseConfig:
    """How meter time maps to UTC (see the module docstring)."""

    standard_utc_offset_s: int = 3600  # CET
    timezone: str = "Europe/Amsterdam"  # for timestamps without S/W (DSMR 2.2) and COSEM without deviation


@dataclass(frozen=True)
class MeterTime:
    ts_s: float  # UTC epoch seconds
    dst: bool  # meter reported summer time


def dsmr_year(yy: int) -> int:
    """Two-digit year of a DSMR timestamp: 00-69 -> 2000-2069, 70-99 -> 1970-1999."""
    return 2000 + yy if yy < 70 else 1900 + yy


def parse_timestamp(text: str, config: DsmrParseConfig = DsmrParseConfig()) -> MeterTime:
    """``YYMMDDhhmmss[S|W]`` or a COSEM date-time in hex -> ``MeterTime``; ParseError otherwise."""
    m = _TS_RE.match(text)
    if m is None:
        if _COSEM_RE.match(text):
            return parse_cosem_datetime(text, config)
        raise ParseError(f"bad timestamp {text!r}")
    yy, mo, dd, hh, mi, ss, flag = m.groups()
    try:
        naive = dt.datetime(dsmr_year(int(yy)), int(mo), int(dd), int(hh), int(mi), int(ss))
    except ValueError as e:
        raise ParseError(f"impossible timestamp {text!r}: {e}") from e
    flag = flag.upper()
    if flag:
        return _from_offset(naive, config.standard_utc_offset_s + (3600 if flag == "S" else 0),
                            flag == "S")
    local = naive.replace(tzinfo=ZoneInfo(config.timezone))
    return MeterTime(local.timestamp(), bool(local.dst()))


def _from_offset(naive: dt.datetime, utc_offset_s: int, dst: bool) -> MeterTime:
    return MeterTime(naive.replace(tzinfo=dt.UTC).timestamp() - utc_offset_s, dst)


def parse_cosem_datetime(text: str, config: DsmrParseConfig = DsmrParseConfig()) -> MeterTime:
    """A 12-byte COSEM date-time octet string written as 24 hex digits (see the module docstring)."""
    raw = bytes.fromhex(text)
    year = int.from_bytes(raw[0:2], "big")
    month, day, _weekday, hour, minute, second, hundredths = raw[2:9]
    deviation_min = int.from_bytes(raw[9:11], "big", signed=True)
    dst = bool(raw[11] & 0x80) if raw[11] != 0xFF else False
    try:
        naive = dt.datetime(year, month, day, hour, minute, second,
                            0 if hundredths == 0xFF else 10_000 * hundredths)
    except ValueError as e:
        raise ParseError(f"impossible COSEM date-time {text!r}: {e}") from e
    if deviation_min == _COSEM_DEVIATION_UNSET:
        return _from_offset(naive, config.standard_utc_offset_s + (3600 if dst else 0), dst)
    if abs(deviation_min) > 720:
        raise ParseError(f"COSEM date-time {text!r}: deviation {deviation_min} min out of range")
    return _from_offset(naive, -60 * deviation_min, dst)


def parse_number(text: str) -> float:
    """A plain decimal number (no exponent, no nan/inf) -> float."""
    if not _NUMBER_RE.match(text):
        raise ParseError(f"not a number: {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise ParseError(f"not a finite number: {text!r}")
    return value


def split_unit(text: str) -> tuple[str, str]:
    """``"001234.567*kWh"`` -> ("001234.567", "kWh"); no ``*`` -> (text, "")."""
    number, _, unit = text.partition("*")
    return number.strip(), unit.strip()


def parse_quantity(text: str, units: dict[str, tuple[str, float]]) -> tuple[float, str]:
    """``"001234.567*kWh"`` with the object's accepted ``units`` -> (1234567.0, "wh").

    ``units`` maps the unit as sent to (SI suffix, scale), e.g. obis.ENERGY. A unit outside it,
    or a missing unit where one is required, raises ParseError naming the unit.
    """
    number, unit = split_unit(text)
    value = parse_number(number)
    spec = units.get(unit) or _units_folded(units).get(unit.lower())
    if spec is None:
        if not unit:
            raise ParseError(f"{text!r} has no unit (expected {'/'.join(units)})")
        raise ParseError(f"unit {unit!r} not expected here (expected {'/'.join(units)})")
    suffix, scale = spec
    # round away binary noise of the decimal scaling (65.180 kWh -> 65180.0 Wh, not ...0001)
    return (round(value * scale, 6) if scale != 1.0 else value), suffix


@functools.cache
def _folded(items: tuple) -> dict[str, tuple[str, float]]:
    return {unit.lower(): spec for unit, spec in items}


def _units_folded(units: dict[str, tuple[str, float]]) -> dict[str, tuple[str, float]]:
    """``units`` keyed in lower case: meters write "kVArh" for "kvarh" (the units of one object
    differ in more than case, so folding is unambiguous). Only used when the exact unit misses."""
    return _folded(tuple(units.items()))


def parse_count(text: str) -> int:
    """An integer counter such as ``"00004"`` (a unit, if any, is ignored)."""
    number, _unit = split_unit(text)
    if not number.isdigit():
        raise ParseError(f"not an integer: {text!r}")
    return int(number)


def decode_hex_text(text: str) -> str:
    """Hex-encoded ASCII (``"5431"`` -> ``"T1"``); text that is not hex comes back unchanged."""
    if len(text) % 2 or not text:
        return text
    try:
        decoded = bytes.fromhex(text).decode("ascii")
    except ValueError:
        return text
    return decoded if decoded.isprintable() else text


def parse_tariff(text: str) -> int:
    """Tariff indicator: ``"0002"`` -> 2; text forms ``T1``, ``TARIFF 1`` and their hex -> 1."""
    number, _unit = split_unit(text)
    if number.isdigit() and int(number) <= 9:
        return int(number)
    for candidate in (decode_hex_text(number), number):
        m = _TRAILING_INT_RE.search(candidate)
        if m and candidate[: m.start()].strip(" _-:").isalpha() and int(m.group(1)) <= 9:
            return int(m.group(1))
    raise ParseError(f"unreadable tariff {text!r}")


_BREAKER_WORDS = {"ON": 1, "CONNECTED": 1, "OFF": 0, "DISCONNECTED": 0}


def parse_breaker(text: str) -> int:
    """Breaker/valve position: 0 disconnected, 1 connected, 2 ready for reconnection; ON/OFF too."""
    number, _unit = split_unit(text)
    if number.isdigit() and int(number) <= 2:
        return int(number)
    for candidate in (number, decode_hex_text(number)):
        word = _BREAKER_WORDS.get(candidate.strip().upper())
        if word is not None:
            return word
    raise ParseError(f"unreadable switch position {text!r}")
