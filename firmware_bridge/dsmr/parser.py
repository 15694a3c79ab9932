"""Parse a framed P1 telegram into a ``Telegram`` object, one COSEM line at a time.

Layers as in dsmr_parser: framing.py cuts bytes into telegrams; this module reads the lines
(``OBIS(value*unit)(...)``) with the tables in obis.py and the value types in values.py;
``dsmr.mapping`` turns the objects into the bridge's ``Reading``.

Tolerance rule: a line that cannot be read (malformed brackets, text where a number belongs, a
unit the object does not take, an impossible date, conflicting duplicates) drops only its own
object: the reason goes to ``Telegram.warnings`` and the object's name to ``Telegram.unreadable``
so that nothing is derived from a half-read group (net power is not "0 - returned" when the
delivered line was unreadable). The telegram is rejected (``ParseError``) only when it has no
usable core register: neither import power, nor an import energy register, nor an M-Bus reading.
Non-ASCII bytes spoil only their line. The CRC was checked by the framer before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from firmware_bridge.dsmr.obis import (
    MBUS_CHANNELS,
    MBUS_TABLE,
    MBUS_UNITS,
    OBIS_TABLE,
    ObisSpec,
)
from firmware_bridge.dsmr.values import (
    DsmrParseConfig,
    MeterTime,
    decode_hex_text,
    parse_breaker,
    parse_count,
    parse_number,
    parse_quantity,
    parse_tariff,
    parse_timestamp,
    split_unit,
)
from firmware_bridge.errors import ParseError
from firmware_bridge.reading import PowerFailure

__all__ = ["DsmrParseConfig", "MbusRecord", "MeterTime", "Telegram", "parse_telegram",
           "parse_timestamp"]

_LINE_RE = re.compile(r"^(\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3})(?:[*.]\d{1,3})?(.*)$")
_GROUPS_RE = re.compile(r"^(?:\([^()]*\))+$")
_GROUP_RE = re.compile(r"\(([^()]*)\)")
# Core registers: a telegram without any of these (or an M-Bus reading) carries nothing usable.
CORE_VALUES = ("power_delivered_w", "import_total_wh", "import_t1_wh", "import_t2_wh",
               "import_t3_wh", "import_t4_wh")
# Failure-log entries dated before this are the meters' "no entry" filler (000101000001W).
_FAILURE_LOG_EPOCH_S = 978307200.0  # 2001-01-01 UTC


@dataclass
class MbusRecord:
    """What the telegram says about M-Bus channel ``channel`` (before the placeholder rules)."""

    channel: int
    device_type_code: int | None = None
    equipment_id: str = ""
    value: float | None = None
    unit: str = ""  # "" when the value came without a unit (a placeholder)
    capture: MeterTime | None = None
    capture_error: str = ""  # why the capture time could not be read


@dataclass
class Telegram:
    """The objects of one telegram.

    ``values`` maps names from the OBIS table (quantities with their unit suffix, e.g.
    ``power_delivered_w``) to SI values or text; ``unreadable`` maps the names of objects that
    were present but dropped to the reason; ``warnings`` has one message per dropped object.
    """

    header: str
    values: dict[str, float | str] = field(default_factory=dict)
    timestamp: MeterTime | None = None
    max_demand_time: MeterTime | None = None
    mbus: dict[int, MbusRecord] = field(default_factory=dict)
    failure_log: list[PowerFailure] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unknown: dict[str, str] = field(default_factory=dict)  # OBIS -> raw groups, not in the tables

    @property
    def version(self) -> str:
        """"5.0", "4.2", "fluvius-50217" or "2.2" (no version line: DSMR 2.2/3 and others)."""
        if "fluvius_version" in self.values:
            return f"fluvius-{self.values['fluvius_version']}"
        raw = self.values.get("dsmr_version")
        if isinstance(raw, str) and len(raw) >= 2 and raw.isdigit():
            return f"{raw[0]}.{raw[1]}"
        return "2.2"

    def drop(self, name: str, reason: str) -> None:
        """Record that object ``name`` was present but could not be used."""
        self.values.pop(name, None)
        self.unreadable.setdefault(name, reason)
        self.warnings.append(reason)

    def store(self, key: str, value: float | str, obis: str, name: str = "") -> None:
        """Keep a value under ``key``; a second, different value drops both.

        ``name`` is the object's table name when ``key`` adds a unit suffix to it.
        """
        name = name or key
        if name in self.unreadable:
            return
        old = self.values.get(key)
        if old is not None and old != value:
            self.values.pop(key)
            self.drop(name, f"{obis}: conflicting values {old!r} and {value!r}")
            return
        self.values[key] = value


def parse_telegram(data: bytes, config: DsmrParseConfig = DsmrParseConfig()) -> Telegram:
    """Parse one framed telegram (``/`` ... ``!CRC``); see the module docstring for the rules.

    Raises ParseError if there is no header or no usable core register.
    """
    text = data.decode("ascii", errors="replace").replace("\r", "")
    if not text.startswith("/"):
        raise ParseError("telegram does not start with '/'")
    end = text.rfind("!")
    if end < 0:
        raise ParseError("telegram has no '!'")
    header, _, body = text[1:end].partition("\n")
    if not header.strip():
        raise ParseError("empty header line")
    tg = Telegram(header=header.strip())
    for obj in _unique_objects(tg, _split_objects(tg, body)):
        _read_object(tg, obj, config)
    if not _has_core(tg):
        detail = "; ".join(tg.warnings[:3])
        raise ParseError("telegram has no usable power, energy or M-Bus register"
                         + (f" ({detail})" if detail else ""))
    return tg


class _Object:
    """One COSEM object as written: its OBIS code, the brackets, and (DSMR 2.2 M-Bus) the next line."""

    __slots__ = ("obis", "rest", "continuation", "channel", "mbus_role")

    def __init__(self, obis: str, rest: str) -> None:
        self.obis, self.rest, self.continuation = obis, rest, ""
        self.channel, self.mbus_role = _MBUS_OBIS.get(obis, (0, None))


# "0-n:C.D.E" of M-Bus channel n -> (n, role in MBUS_TABLE)
_MBUS_OBIS = {f"0-{n}:{cde}": (n, role) for n in MBUS_CHANNELS for cde, role in MBUS_TABLE.items()}


def _split_objects(tg: Telegram, body: str) -> list[_Object]:
    """Lines -> objects; a line starting with "(" is the value of the DSMR 2.2 M-Bus line before it."""
    objects: list[_Object] = []
    previous: _Object | None = None
    match = _LINE_RE.match
    for raw_line in body.split("\n"):
        line = raw_line.strip()
        if not line:
            continue
        if line[0] == "(":
            if previous is not None and previous.mbus_role == "reading_22" and not previous.continuation:
                previous.continuation = line
            else:
                tg.warnings.append(f"stray line {line[:48]!r}")
            previous = None
            continue
        m = match(line)
        if m is None:
            tg.warnings.append(f"unreadable line {line[:48]!r}")
            previous = None
            continue
        previous = _Object(m.group(1), m.group(2))
        objects.append(previous)
    return objects


def _unique_objects(tg: Telegram, objects: list[_Object]) -> list[_Object]:
    """Each OBIS code once: exact repeats are read once, different payloads drop the object."""
    first: dict[str, _Object] = {}
    conflicts: dict[str, int] = {}
    repeats = False
    for obj in objects:
        seen = first.setdefault(obj.obis, obj)
        if seen is not obj:
            repeats = True
            if (seen.rest, seen.continuation) != (obj.rest, obj.continuation):
                conflicts[obj.obis] = conflicts.get(obj.obis, 1) + 1
    if not repeats:
        return objects
    for obis, n in conflicts.items():
        reason = f"{obis}: {n} conflicting lines"
        channel = first[obis].channel
        if channel:
            tg.mbus.setdefault(channel, MbusRecord(channel))
            tg.warnings.append(reason)
        elif obis in OBIS_TABLE:
            tg.drop(OBIS_TABLE[obis].name, reason)
    return [obj for obis, obj in first.items() if obis not in conflicts]


def _has_core(tg: Telegram) -> bool:
    if any(name in tg.values for name in CORE_VALUES):
        return True
    return any(rec.value is not None and rec.unit for rec in tg.mbus.values())


def _read_object(tg: Telegram, obj: _Object, config: DsmrParseConfig) -> None:
    """Read one object into ``tg``; a failure drops this object only (ParseError -> warning)."""
    groups = _GROUP_RE.findall(obj.rest) if _GROUPS_RE.match(obj.rest) else None
    if obj.mbus_role is not None:
        _mbus_object(tg, obj.channel, obj.mbus_role, obj, groups, config)
        return
    spec = OBIS_TABLE.get(obj.obis)
    if spec is None:
        tg.unknown[obj.obis] = obj.rest
        return
    if groups is None:
        tg.drop(spec.name, f"{obj.obis}: malformed brackets in {obj.rest[:40]!r}")
        return
    try:
        _READERS[spec.kind](tg, spec, obj.obis, groups, config)
    except ParseError as e:
        tg.drop(spec.name, f"{obj.obis}: {e}")


def _first(groups: list[str]) -> str:
    if not groups:
        raise ParseError("no value")
    return groups[0]


def _read_clock(tg: Telegram, spec: ObisSpec, obis: str, groups: list[str],
        config: DsmrParseConfig) -> None:
    tg.timestamp = parse_timestamp(_first(groups), config)


def _read_text(tg: Telegram, spec: ObisSpec, obis: str, groups: list[str],
        config: DsmrParseConfig) -> None:
    tg.store(spec.name, _first(groups), obis)


def _read_hex(tg: Telegram, spec: ObisSpec, obis: str, groups: list[str],
        config: DsmrParseConfig) -> None:
    tg.store(spec.name, decode_hex_text(_first(groups)), obis)


def _read_count(tg: Telegram, spec: ObisSpec, obis: str, groups: list[str],
        config: DsmrParseConfig) -> None:
    tg.store(spec.name, float(parse_count(_first(groups))), obis)


def _read_tariff(tg: Telegram, spec: ObisSpec, obis: str, groups: list[str],
        config: DsmrParseConfig) -> None:
    tg.store(spec.name, float(parse_tariff(_first(groups))), obis)


def _read_breaker(tg: Telegram, spec: ObisSpec, obis: str, groups: list[str],
        config: DsmrParseConfig) -> None:
    tg.store(spec.name, float(parse_breaker(_first(groups))), obis)


def _read_quantity(tg: Telegram, spec: ObisSpec, obis: str, groups: list[str],
        config: DsmrParseConfig) -> None:
    value, suffix = parse_quantity(_first(groups), spec.units)
    tg.store(f"{spec.name}_{suffix}" if suffix else spec.name, value, obis, spec.name)


def _read_max_demand(tg: Telegram, spec: ObisSpec, obis: str, groups: list[str],
        config: DsmrParseConfig) -> None:
    """(time)(value) in either order: some Belgian meters write the value first."""
    if len(groups) != 2:
        raise ParseError(f"expected (time)(value), got {len(groups)} groups")
    first, second = groups
    stamp_text, value_text = (first, second) if "*" in second else (second, first)
    value, suffix = parse_quantity(value_text, spec.units)
    tg.max_demand_time = parse_timestamp(stamp_text, config)
    tg.store(f"{spec.name}_{suffix}", value, obis, spec.name)


def _read_failure_log(tg: Telegram, spec: ObisSpec, obis: str, groups: list[str],
        config: DsmrParseConfig) -> None:
    """``(n)(0-0:96.7.19)(end time)(duration*s)...``: entries with a bad time are dropped alone."""
    if not groups:
        raise ParseError("empty failure log")
    pairs = groups[2:] if len(groups) > 1 and ":" in groups[1] else groups[1:]
    for i in range(0, len(pairs) - 1, 2):
        stamp_text, duration_text = pairs[i], pairs[i + 1]
        try:
            end = parse_timestamp(stamp_text, config)
            duration_s = parse_number(split_unit(duration_text)[0])
        except ParseError as e:
            tg.warnings.append(f"{obis}: failure log entry {i // 2 + 1} dropped: {e}")
            continue
        if end.ts_s >= _FAILURE_LOG_EPOCH_S:
            tg.failure_log.append(PowerFailure(end.ts_s, duration_s))


def _read_skip(tg: Telegram, spec: ObisSpec, obis: str, groups: list[str],
        config: DsmrParseConfig) -> None:
    return None


_READERS = {
    "clock": _read_clock, "text": _read_text, "hex": _read_hex, "count": _read_count,
    "tariff": _read_tariff, "breaker": _read_breaker, "quantity": _read_quantity,
    "max_demand": _read_max_demand, "failure_log": _read_failure_log, "skip": _read_skip,
}


def _mbus_object(tg: Telegram, channel: int, role: str, obj: _Object, groups: list[str] | None,
                 config: DsmrParseConfig) -> None:
    rec = tg.mbus.setdefault(channel, MbusRecord(channel))
    if groups is None:
        tg.warnings.append(f"{obj.obis}: malformed brackets")
        return
    try:
        _MBUS_READERS[role](tg, rec, groups, config, obj)
    except ParseError as e:
        tg.warnings.append(f"{obj.obis}: {e}")
        if role.startswith("reading"):
            rec.value, rec.unit = None, ""


def _mbus_device_type(tg: Telegram, rec: MbusRecord, groups: list[str], config: DsmrParseConfig,
                      obj: _Object) -> None:
    text = groups[0] if groups else ""
    if not text:
        return  # empty channel
    if not text.isdigit():
        raise ParseError(f"device type {text!r} is not a number")
    rec.device_type_code = int(text)


def _mbus_equipment_id(tg: Telegram, rec: MbusRecord, groups: list[str], config: DsmrParseConfig,
                       obj: _Object) -> None:
    rec.equipment_id = decode_hex_text(groups[0]) if groups else ""


def _mbus_capture(tg: Telegram, rec: MbusRecord, text: str, config: DsmrParseConfig,
                  obj: _Object) -> None:
    if not text:
        return
    try:
        rec.capture = parse_timestamp(text, config)
    except ParseError as e:
        rec.capture_error = str(e)
        tg.warnings.append(f"{obj.obis}: capture time dropped: {e}")


def _mbus_value(rec: MbusRecord, text: str, unit_default: str = "") -> None:
    number, unit = split_unit(text)
    if not number:
        return  # empty channel: "()"
    value = parse_number(number)
    unit = unit or unit_default
    if unit and unit.lower() not in MBUS_UNITS:
        raise ParseError(f"unit {unit!r} is not an M-Bus counter unit")
    rec.value, rec.unit = value, MBUS_UNITS.get(unit.lower(), "")


def _mbus_reading(tg: Telegram, rec: MbusRecord, groups: list[str], config: DsmrParseConfig,
                  obj: _Object) -> None:
    """DSMR 4/5 and e-MUCS: ``(capture time)(value*unit)``; some meters send ``(value)`` alone."""
    if len(groups) >= 2:
        _mbus_capture(tg, rec, groups[0], config, obj)
    _mbus_value(rec, groups[-1] if groups else "")


def _mbus_reading_22(tg: Telegram, rec: MbusRecord, groups: list[str], config: DsmrParseConfig,
                     obj: _Object) -> None:
    """DSMR 2.2/3: ``(capture time)(00)(60)(1)(0-n:24.2.1)(m3)`` and ``(value)`` on the next line."""
    _mbus_capture(tg, rec, groups[0] if groups else "", config, obj)
    value_groups = _GROUP_RE.findall(obj.continuation) if _GROUPS_RE.match(obj.continuation) else []
    if not value_groups:
        raise ParseError("no value line after the capture line")
    _mbus_value(rec, value_groups[0], groups[-1] if len(groups) > 1 else "")


def _mbus_valve(tg: Telegram, rec: MbusRecord, groups: list[str], config: DsmrParseConfig,
                obj: _Object) -> None:
    if groups and groups[0]:
        tg.store(f"mbus{rec.channel}_valve", float(parse_breaker(groups[0])), obj.obis)


_MBUS_READERS = {
    "device_type": _mbus_device_type, "equipment_id": _mbus_equipment_id,
    "reading": _mbus_reading, "reading_22": _mbus_reading_22, "valve": _mbus_valve,
}
