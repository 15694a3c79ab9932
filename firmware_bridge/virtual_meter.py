"""Shared meter-side state of simulated meters: a ``power_source(ts_s)`` becomes full register values.

A power source may return only ``power_w``; the meter then integrates its own import/export
counters (as a real meter does) and derives current from power and voltage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

PowerSource = Callable[[float], Mapping[str, float]]
POWER_SOURCE_KEYS = ("power_w", "reactive_var", "import_wh", "export_wh", "voltage_v", "current_a")


@dataclass
class MeterRegisters:
    """Values a simulated meter shows at one instant (SI units)."""

    ts_s: float
    power_w: float
    reactive_var: float
    import_wh: float
    export_wh: float
    voltage_v: float
    current_a: float

    def as_mapping(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in POWER_SOURCE_KEYS}


class VirtualMeterState:
    def __init__(self, power_source: PowerSource, *, nominal_voltage_v: float = 230.0) -> None:
        if not callable(power_source):
            raise TypeError("power_source must be a callable ts_s -> Mapping[str, float]")
        self.power_source = power_source
        self.nominal_voltage_v = nominal_voltage_v
        self._import_wh = 0.0
        self._export_wh = 0.0
        self._last_ts_s: float | None = None
        self._last_power_w = 0.0

    def sample(self, ts_s: float) -> MeterRegisters:
        values = self.power_source(ts_s)
        unknown = set(values) - set(POWER_SOURCE_KEYS)
        if unknown:
            raise ValueError(f"power_source returned unknown keys {sorted(unknown)}")
        power_w = float(values.get("power_w", 0.0))
        if not math.isfinite(power_w):
            raise ValueError(f"power_source returned power_w={power_w!r}")
        self._integrate(ts_s, power_w)
        voltage_v = float(values.get("voltage_v", self.nominal_voltage_v))
        return MeterRegisters(
            ts_s=ts_s,
            power_w=power_w,
            reactive_var=float(values.get("reactive_var", 0.0)),
            import_wh=float(values.get("import_wh", self._import_wh)),
            export_wh=float(values.get("export_wh", self._export_wh)),
            voltage_v=voltage_v,
            current_a=float(values.get("current_a", abs(power_w) / max(voltage_v, 1.0))),
        )

    def _integrate(self, ts_s: float, power_w: float) -> None:
        if self._last_ts_s is not None and ts_s > self._last_ts_s:
            energy_wh = self._last_power_w * (ts_s - self._last_ts_s) / 3600.0
            if energy_wh >= 0:
                self._import_wh += energy_wh
            else:
                self._export_wh -= energy_wh
        self._last_ts_s, self._last_power_w = ts_s, power_w
