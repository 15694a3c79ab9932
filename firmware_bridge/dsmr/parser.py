"""Parse a framed P1 telegram into a ``Telegram`` object, and a telegram into a ``Reading``.

Layers as in dsmr_parser: framing.py cuts bytes into telegrams; this module parses the COSEM lines
(``OBIS(value*unit)(...)``) with the OBIS table in obis.py; ``telegram_to_reading`` maps the objects
to the bridge's ``Reading`` with the clock policy.

Timestamps ``YYMMDDhhmmssX``: X is "S" (summer) or "W" (winter). DSMR meters exist only in the
Netherlands, Belgium and Luxembourg, all on CET/CEST, so with a suffix the UTC offset is
``standard_utc_offset_s`` (+1 h) plus one hour for "S". Using the flag rather than a tz database
resolves the repeated hour at the end of summer time, which is exactly what the flag is for.
Timestamps without a suffix (DSMR 2.2 gas) are resolved with the ``timezone`` name (zoneinfo).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from firmware_bridge.clock import ClockPolicy
from firmware_bridge.dsmr.obis import (
    GAS_OBIS_SUFFIXES,
    KIND_UNIT,
    MBUS_DEVICE_TYPE_SUFFIX,
    MBUS_GAS,
    MBUS_WATER,
    OBIS_TABLE,
    UNIT_SCALE,
)
from firmware_bridge.errors import ParseError
from firmware_bridge.reading import Reading, ReadingFlag

_LINE_RE = re.compile(r"^(\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3})((?:\([^()]*\))+)$")
_GROUP_RE = re.compile(r"\(([^()]*)\)")
_TS_RE = re.compile(r"^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([SW]?)$")


@dataclass(frozen=True)
class DsmrParseConfig:
    standard_utc_offset_s: int = 3600  # CET
    timezone: str = "Europe/Amsterdam"  # for timestamps without S/W (DSMR 2.2)


@dataclass(frozen=True)
class MeterTime:
    ts_s: float  # UTC epoch seconds
    dst: bool  # meter reported summer time ("S")


@dataclass
class Telegram:
    """The objects of one telegram. ``values`` maps OBIS_TABLE names to SI values or text."""

    header: str
    values: dict[str, float | str] = field(default_factory=dict)
    timestamp: MeterTime | None = None
    gas_m3: float | None = None
    gas_time: MeterTime | None = None
    max_demand_time: MeterTime | None = None
    water_m3: float | None = None
    mbus_types: dict[int, int] = field(default_factory=dict)  # channel -> M-Bus device type
    mbus_values: dict[int, tuple[MeterTime | None, float]] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)  # OBIS -> raw groups, not in the table

    @property
    def version(self) -> str:
        """"5.0", "4.2", "fluvius-50217" or "2.2" (no version line: DSMR 2.2/3)."""
        if "fluvius_version" in self.values:
            return f"fluvius-{self.values['fluvius_version']}"
        raw = self.values.get("dsmr_version")
        if isinstance(raw, str) and len(raw) >= 2 and raw.isdigit():
            return f"{raw[0]}.{raw[1]}"
        return "2.2"


def parse_timestamp(text: str, config: DsmrParseConfig = DsmrParseConfig()) -> MeterTime:
    m = _TS_RE.match(text)
    if m is None:
        raise ParseError(f"bad timestamp {text!r}")
    yy, mo, dd, hh, mi, ss, suffix = m.groups()
    try:
        naive = dt.datetime(2000 + int(yy), int(mo), int(dd), int(hh), int(mi), int(ss))
    except ValueError as e:
        raise ParseError(f"bad timestamp {text!r}: {e}") from e
    if suffix:
        offset_s = config.standard_utc_offset_s + (3600 if suffix == "S" else 0)
        ts_s = naive.replace(tzinfo=dt.UTC).timestamp() - offset_s
        return MeterTime(ts_s, suffix == "S")
    local = naive.replace(tzinfo=ZoneInfo(config.timezone))
    return MeterTime(local.timestamp(), bool(local.dst()))


def parse_quantity(text: str, expected_unit: str | None = None) -> float:
    """``"001234.567*kWh"`` -> 1234567.0 (Wh). A bare number is taken in ``expected_unit``."""
    number, _, unit = text.partition("*")
    try:
        value = float(number)
    except ValueError as e:
        raise ParseError(f"bad number {text!r}") from e
    if not math.isfinite(value):
        raise ParseError(f"non-finite number {text!r}")
    if not unit:
        return value
    if unit not in UNIT_SCALE:
        raise ParseError(f"unknown unit {unit!r} in {text!r}")
    si_unit, scale = UNIT_SCALE[unit]
    if expected_unit is not None and si_unit != expected_unit:
        raise ParseError(f"unit {unit!r} where {expected_unit} was expected in {text!r}")
    # round away binary noise of the decimal scaling (65.180 kWh -> 65180.0 Wh, not ...0001)
    return round(value * scale, 6) if scale != 1.0 else value


def _decode_hex(text: str) -> str:
    try:
        return bytes.fromhex(text).decode("ascii", errors="replace")
    except ValueError:
        return text  # some meters send plain text here


def _split_lines(body: str) -> list[tuple[str, list[str]]]:
    """COSEM lines as (obis, groups); a line starting with "(" continues the previous one (2.2 gas)."""
    objects: list[tuple[str, list[str]]] = []
    for raw_line in body.split("\n"):
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith("(") and objects:
            objects[-1][1].extend(_GROUP_RE.findall(line))
            continue
        m = _LINE_RE.match(line)
        if m is None:
            raise ParseError(f"malformed line {line[:60]!r}")
        objects.append((m.group(1), _GROUP_RE.findall(m.group(2))))
    return objects


def _apply_object(tg: Telegram, obis: str, groups: list[str], config: DsmrParseConfig) -> None:
    if obis.startswith("0-") and obis.endswith(GAS_OBIS_SUFFIXES):
        if len(groups) >= 2:
            channel = int(obis[2 : obis.index(":")])
            stamp = parse_timestamp(groups[0], config) if groups[0] else None
            tg.mbus_values[channel] = (stamp, parse_quantity(groups[-1], "m3"))
        return
    if obis.endswith(MBUS_DEVICE_TYPE_SUFFIX):
        try:
            tg.mbus_types[int(obis[2 : obis.index(":")])] = int(groups[0])
        except (ValueError, IndexError) as e:
            raise ParseError(f"bad M-Bus device type line {obis}{groups}") from e
        return
    spec = OBIS_TABLE.get(obis)
    if spec is None:
        tg.unknown[obis] = "".join(f"({g})" for g in groups)
        return
    name, kind = spec
    first = groups[0] if groups else ""
    if kind == "ts":
        tg.timestamp = parse_timestamp(first, config)
    elif kind == "str":
        tg.values[name] = first
    elif kind == "hex":
        tg.values[name] = _decode_hex(first)
    elif kind == "int":
        try:
            tg.values[name] = float(int(first.partition("*")[0]))
        except ValueError as e:
            raise ParseError(f"bad integer {first!r} for {obis}") from e
    elif kind == "ts_kw":
        if len(groups) >= 2:
            tg.max_demand_time = parse_timestamp(groups[0], config)
            tg.values[name] = parse_quantity(groups[1], "W")
    else:
        tg.values[name] = parse_quantity(first, KIND_UNIT[kind])


def _assign_mbus(tg: Telegram) -> None:
    """Gas is the M-Bus channel of device type 3 (or the first untyped one); water is type 7."""
    for channel in sorted(tg.mbus_values):
        stamp, value_m3 = tg.mbus_values[channel]
        device_type = tg.mbus_types.get(channel)
        if device_type == MBUS_WATER:
            tg.water_m3 = value_m3 if tg.water_m3 is None else tg.water_m3
        elif device_type in (MBUS_GAS, None) and tg.gas_m3 is None:
            tg.gas_m3, tg.gas_time = value_m3, stamp


def parse_telegram(data: bytes, config: DsmrParseConfig = DsmrParseConfig()) -> Telegram:
    """Parse one framed telegram (``/`` ... ``!CRC``). Raises ParseError on malformed content."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise ParseError(f"non-ASCII byte at {e.start}") from e
    text = text.replace("\r", "")
    if not text.startswith("/"):
        raise ParseError("telegram does not start with '/'")
    end = text.rfind("!")
    if end < 0:
        raise ParseError("telegram has no '!'")
    header, _, body = text[1:end].partition("\n")
    if not header.strip():
        raise ParseError("empty header line")
    tg = Telegram(header=header.strip())
    for obis, groups in _split_lines(body):
        _apply_object(tg, obis, groups, config)
    _assign_mbus(tg)
    if not any(k in tg.values for k in ("power_delivered_w", "import_t1_wh", "import_total_wh")):
        raise ParseError("telegram has neither power nor an energy register")
    return tg


def _sum(values: dict, *names: str) -> float | None:
    present = [float(values[n]) for n in names if n in values]
    return sum(present) if present else None


def telegram_to_reading(
    tg: Telegram,
    *,
    meter_id: str,
    received_s: float,
    clock: ClockPolicy = ClockPolicy(),
    source: str = "dsmr",
    extra_flags: ReadingFlag = ReadingFlag.NONE,
) -> Reading:
    """Map a telegram to a Reading: net power (delivered - returned), energy summed over tariffs.

    ``voltage_v``/``current_a`` are phase L1 (the only phase of a single-phase meter); all phases
    are in ``extra``. The meter clock goes through ``clock``; DST is flagged when the meter says "S".
    """
    v = tg.values
    delivered_w, returned_w = v.get("power_delivered_w"), v.get("power_returned_w")
    power_w = None
    if delivered_w is not None or returned_w is not None:
        power_w = float(delivered_w or 0.0) - float(returned_w or 0.0)
    import_wh = _sum(v, "import_t1_wh", "import_t2_wh")
    if import_wh is None:
        import_wh = _sum(v, "import_total_wh")
    export_wh = _sum(v, "export_t1_wh", "export_t2_wh")
    if export_wh is None:
        export_wh = _sum(v, "export_total_wh")
    meter_ts_s = tg.timestamp.ts_s if tg.timestamp else None
    ts_s, flags = clock.apply(meter_ts_s, received_s)
    if tg.timestamp is not None and tg.timestamp.dst:
        flags |= ReadingFlag.DST
    extra: dict[str, float | str] = {k: val for k, val in v.items() if k not in (
        "power_delivered_w", "power_returned_w")}
    extra["dsmr_version"] = tg.version
    for phase in ("l1", "l2", "l3"):
        d, r = v.get(f"power_delivered_{phase}_w"), v.get(f"power_returned_{phase}_w")
        if d is not None or r is not None:
            extra[f"power_{phase}_w"] = float(d or 0.0) - float(r or 0.0)
    if meter_ts_s is not None:
        extra["meter_ts_s"] = meter_ts_s
    if tg.water_m3 is not None:
        extra["water_m3"] = tg.water_m3
    if tg.gas_m3 is not None:
        extra["gas_m3"] = tg.gas_m3
        if tg.gas_time is not None:
            extra["gas_ts_s"] = tg.gas_time.ts_s
    return Reading(
        meter_id=meter_id, ts_s=ts_s, received_s=received_s, power_w=power_w,
        import_wh=import_wh, export_wh=export_wh,
        voltage_v=_as_float(v.get("voltage_l1_v")), current_a=_as_float(v.get("current_l1_a")),
        source=source, flags=flags | extra_flags, extra=extra,
    )


def _as_float(value: float | str | None) -> float | None:
    return None if value is None else float(value)
