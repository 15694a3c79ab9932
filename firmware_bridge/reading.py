"""The one reading type every meter protocol produces."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field


class ReadingFlag(enum.IntFlag):
    """Quality flags carried with a reading (a bit set, stored as an int)."""

    NONE = 0
    CLOCK_FALLBACK = 1  # meter clock missing or implausible: ts_s is the gateway receive time
    DST = 2  # the meter reported summer time (DSMR "S" suffix); ts_s is still UTC
    SIMULATED = 4  # produced by a simulated meter
    ESTIMATED = 8  # a value was derived (e.g. power from counter differences)
    OUT_OF_ORDER = 16  # the meter clock went backwards relative to the last reading
    DUPLICATE = 32  # same meter and timestamp seen before


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of one meter.

    Units are in the names: watts, var, watt-hours, volts, amperes; times are UTC epoch seconds.
    ``power_w`` is net active power (import positive, export negative). Fields a protocol does not
    carry are ``None``. ``extra`` holds protocol-specific values with units in their keys
    (``"voltage_l2_v"``, ``"gas_m3"``, ``"tariff"``).
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
    source: str = ""  # "dsmr", "modbus", "zigbee", "sim", ...
    flags: ReadingFlag = ReadingFlag.NONE
    extra: Mapping[str, float | str] = field(default_factory=dict)

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
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Reading:
        kwargs = dict(data)
        kwargs["flags"] = ReadingFlag(int(kwargs.get("flags", 0)))
        kwargs["extra"] = dict(kwargs.get("extra") or {})
        return cls(**kwargs)
