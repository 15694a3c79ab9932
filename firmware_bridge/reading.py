"""The one reading type every meter protocol produces, and the typed parts it carries.

``Reading`` has the fields every consumer needs (net power, energy counters, L1 voltage/current)
plus typed groups that only some meters send: per-phase values (``PhaseValues``), energy per
tariff register, reactive energy, the current tariff, the power-failure log (``PowerFailure``)
and M-Bus sub-meters (``MbusChannel``: gas, water, heat, cooling, electricity). ``extra`` keeps
protocol-specific scalars with units in their keys.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field


class ReadingFlag(enum.IntFlag):
    """Quality flags carried with a reading (a bit set, stored as an int)."""

    NONE = 0
    CLOCK_FALLBACK = 1  # meter clock missing or implausible: ts_s is the gateway receive time
    DST = 2  # the meter reported summer time (DSMR "S" suffix); ts_s is still UTC
    SIMULATED = 4  # produced by a simulated meter
    ESTIMATED = 8  # a value was derived (e.g. power from counter differences)
    OUT_OF_ORDER = 16  # the meter clock went backwards relative to the last reading
    DUPLICATE = 32  # same meter and timestamp seen before
    PARTIAL = 64  # some objects of the frame could not be read: dropped, listed in Reading.warnings
    INVALID_VALUE = 128  # a value was the protocol's "no value" (ZCL invalid number, NaN): set to None
    IMPLAUSIBLE = 256  # a value outside the meter's limits was withheld: extra["<field>_withheld"]
    COUNTER_GLITCH = 512  # a counter jumped implausibly: withheld (extra["<field>_withheld"])
    COUNTER_RESET = 1024  # the counter starts a new series here (meter reset or swap), confirmed
    CLOCK_SKEW = 2048  # meter clock far off: ts_s is the receive time, kept out of model windows


# M-Bus device types (EN 13757-3 table "Device type identification"; DSMR 0-n:24.1.0 sends the
# code in decimal, e.g. "(003)" gas, "(007)" water) -> the kind a consumer shows ("other" if absent).
MBUS_DEVICE_TYPES: dict[int, str] = {
    0x02: "electricity",
    0x03: "gas",
    0x04: "heat",  # heat meter, return temperature
    0x06: "water",  # warm water
    0x07: "water",
    0x0A: "cooling",  # cooling meter, return temperature
    0x0B: "cooling",  # cooling meter, flow temperature
    0x0C: "heat",  # heat meter, flow temperature
    0x0D: "heat",  # combined heat / cooling
    0x15: "water",  # hot water
    0x16: "water",  # cold water
    0x17: "water",  # dual register (hot/cold) water
}


@dataclass(frozen=True, slots=True)
class PhaseValues:
    """One phase (L1, L2 or L3) of a poly-phase meter; ``None`` where the meter does not send it.

    ``power_w`` is net active power of the phase (import positive, export negative), as
    ``Reading.power_w``; ``reactive_var`` likewise (Q+ minus Q-).
    """

    power_w: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    reactive_var: float | None = None


@dataclass(frozen=True, slots=True)
class MbusChannel:
    """One sub-meter on the electricity meter's M-Bus (DSMR channels 1..4).

    ``device_type`` is the kind from ``MBUS_DEVICE_TYPES`` ("gas", "water", "heat", "cooling",
    "electricity", or "other" for an unlisted code); without a type line it follows from the unit
    (m3 -> "gas", GJ/MWh -> "heat", kWh -> "electricity").
    ``value`` is the counter as the meter states it, in ``unit`` ("m3", "GJ", "kWh", "MWh", ...);
    ``capture_ts_s`` is when the sub-meter captured it (UTC epoch seconds), ``None`` if not sent.
    Only channels with a real reading are reported: empty and placeholder channels are not.
    """

    channel: int
    device_type: str
    value: float
    unit: str
    capture_ts_s: float | None = None
    device_type_code: int | None = None
    equipment_id: str = ""


@dataclass(frozen=True, slots=True)
class PowerFailure:
    """One entry of a meter's long power-failure event log (DSMR 1-0:99.97.0).

    ``end_ts_s``: UTC epoch seconds when the failure ended (the meter logs the end);
    ``duration_s``: how long it lasted.
    """

    end_ts_s: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of one meter.

    Units are in the names: watts, var, watt-hours, volts, amperes; times are UTC epoch seconds.
    ``power_w`` is net active power (import positive, export negative), ``reactive_var`` net
    reactive power (Q+ minus Q-). ``import_wh``/``export_wh`` are the totals over all tariffs;
    ``import_tariff_wh[i]`` is tariff register i+1 (DSMR 1.8.1 .. 1.8.4), ``None`` where that
    register was not sent or not readable. Fields a protocol does not carry are ``None`` or empty.
    ``extra`` holds protocol-specific values with units in their keys (``"gas_m3"``, ``"tariff"``).
    ``warnings`` says which objects of the frame were dropped and why (then ``PARTIAL`` is set).
    """

    meter_id: str
    ts_s: float  # UTC, from the meter's clock (or receive time if CLOCK_FALLBACK)
    received_s: float  # UTC, gateway clock when the frame was received
    power_w: float | None
    reactive_var: float | None = None
    import_wh: float | None = None
    export_wh: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    source: str = ""  # "dsmr", "modbus", "zigbee", "virtual-dsmr", "virtual", ...
    flags: ReadingFlag = ReadingFlag.NONE
    extra: Mapping[str, float | str] = field(default_factory=dict)
    phases: tuple[PhaseValues, ...] = ()  # L1, L2, L3 in order
    import_tariff_wh: tuple[float | None, ...] = ()  # tariff 1, 2, (3, 4)
    export_tariff_wh: tuple[float | None, ...] = ()
    reactive_import_varh: float | None = None  # +R, OBIS 3.8.x summed over tariffs
    reactive_export_varh: float | None = None  # -R, OBIS 4.8.x
    tariff: int | None = None  # tariff the meter books on now (1..4)
    power_failures: int | None = None  # count of all power failures (DSMR 96.7.21)
    long_power_failures: int | None = None  # count of long power failures (DSMR 96.7.9)
    power_failure_log: tuple[PowerFailure, ...] = ()  # long failures, as the meter lists them
    mbus: tuple[MbusChannel, ...] = ()  # sub-meters with a real reading, by channel
    warnings: tuple[str, ...] = ()  # objects dropped from the frame, one message each

    def __post_init__(self) -> None:
        if not self.meter_id:
            raise ValueError("Reading.meter_id must be a non-empty string")
        for name in ("ts_s", "received_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Reading.{name} must be a finite number, got {value!r}")

    def to_dict(self) -> dict:
        """A JSON-friendly dict (flags as int)."""
        return {
            "meter_id": self.meter_id,
            "ts_s": self.ts_s,
            "received_s": self.received_s,
            "power_w": self.power_w,
            "reactive_var": self.reactive_var,
            "import_wh": self.import_wh,
            "export_wh": self.export_wh,
            "voltage_v": self.voltage_v,
            "current_a": self.current_a,
            "source": self.source,
            "flags": int(self.flags),
            "extra": dict(self.extra),
            "phases": [asdict(p) for p in self.phases],
            "import_tariff_wh": list(self.import_tariff_wh),
            "export_tariff_wh": list(self.export_tariff_wh),
            "reactive_import_varh": self.reactive_import_varh,
            "reactive_export_varh": self.reactive_export_varh,
            "tariff": self.tariff,
            "power_failures": self.power_failures,
            "long_power_failures": self.long_power_failures,
            "power_failure_log": [asdict(f) for f in self.power_failure_log],
            "mbus": [asdict(c) for c in self.mbus],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Reading:
        """Inverse of ``to_dict`` (also accepts dicts written before the typed groups existed)."""
        kwargs = dict(data)
        kwargs["flags"] = ReadingFlag(int(kwargs.get("flags", 0)))
        kwargs["extra"] = dict(kwargs.get("extra") or {})
        kwargs["phases"] = tuple(PhaseValues(**p) for p in kwargs.get("phases") or ())
        kwargs["power_failure_log"] = tuple(
            PowerFailure(**f) for f in kwargs.get("power_failure_log") or ())
        kwargs["mbus"] = tuple(MbusChannel(**c) for c in kwargs.get("mbus") or ())
        for name in ("import_tariff_wh", "export_tariff_wh", "warnings"):
            kwargs[name] = tuple(kwargs.get(name) or ())
        return cls(**kwargs)
