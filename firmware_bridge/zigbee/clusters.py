"""ZCL attributes the bridge listens to, as data, and the scaling state of one metering device.

Metering (0x0702): a value times ``multiplier / divisor`` is in ``unit_of_measure`` (0 = kW / kWh
for electricity), so W = demand * multiplier / divisor * 1000. Electrical Measurement (0x0B04):
``active_power * ac_power_multiplier / ac_power_divisor`` is W, and likewise V and A. Multipliers
and divisors of 0 (unset in some firmware) are treated as 1, which is what ZHA does too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

METERING_CLUSTER_ID = 0x0702
ELECTRICAL_MEASUREMENT_CLUSTER_ID = 0x0B04
METERING_UNIT_KW = 0x00  # unit_of_measure: kW (and kWh), binary format

# (cluster_id, attribute id) -> attribute name; the names are zigpy's AttributeDefs names
ATTRIBUTES: dict[tuple[int, int], str] = {
    (METERING_CLUSTER_ID, 0x0000): "current_summ_delivered",
    (METERING_CLUSTER_ID, 0x0001): "current_summ_received",
    (METERING_CLUSTER_ID, 0x0300): "unit_of_measure",
    (METERING_CLUSTER_ID, 0x0301): "multiplier",
    (METERING_CLUSTER_ID, 0x0302): "divisor",
    (METERING_CLUSTER_ID, 0x0400): "instantaneous_demand",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0505): "rms_voltage",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0508): "rms_current",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x050B): "active_power",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x050E): "reactive_power",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0600): "ac_voltage_multiplier",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0601): "ac_voltage_divisor",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0602): "ac_current_multiplier",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0603): "ac_current_divisor",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0604): "ac_power_multiplier",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0605): "ac_power_divisor",
}

# Scaling attributes read once after a device appears (they are rarely reported).
SCALING_ATTRIBUTES: dict[int, tuple[str, ...]] = {
    METERING_CLUSTER_ID: ("unit_of_measure", "multiplier", "divisor"),
    ELECTRICAL_MEASUREMENT_CLUSTER_ID: (
        "ac_voltage_multiplier", "ac_voltage_divisor", "ac_current_multiplier",
        "ac_current_divisor", "ac_power_multiplier", "ac_power_divisor"),
}

# Reporting configuration: attribute -> reportable change (in raw units).
REPORTING: dict[int, dict[str, int]] = {
    METERING_CLUSTER_ID: {"instantaneous_demand": 1, "current_summ_delivered": 1,
                          "current_summ_received": 1},
    ELECTRICAL_MEASUREMENT_CLUSTER_ID: {"active_power": 1, "rms_voltage": 1, "rms_current": 1,
                                        "reactive_power": 1},
}

POWER_ATTRIBUTES = frozenset({"instantaneous_demand", "active_power"})


def _ratio(raw: dict[str, float], multiplier: str, divisor: str) -> float:
    m = raw.get(multiplier) or 1.0
    d = raw.get(divisor) or 1.0
    return float(m) / float(d)


@dataclass
class MeteringState:
    """Raw attribute values of one device (both clusters) and their scaled SI values."""

    raw: dict[str, float] = field(default_factory=dict)
    last_power_attr: str | None = None

    def update(self, name: str, value: float) -> None:
        self.raw[name] = float(value)
        if name in POWER_ATTRIBUTES:
            self.last_power_attr = name

    def invalidate(self, name: str) -> None:
        """The device sent the ZCL invalid number for ``name``: it has no value now."""
        self.raw.pop(name, None)

    @property
    def is_electricity(self) -> bool:
        return int(self.raw.get("unit_of_measure", METERING_UNIT_KW)) & 0x7F == METERING_UNIT_KW

    def _metering(self, name: str, scale: float) -> float | None:
        if name not in self.raw or not self.is_electricity:
            return None
        return self.raw[name] * _ratio(self.raw, "multiplier", "divisor") * scale

    def _em(self, name: str, multiplier: str, divisor: str) -> float | None:
        if name not in self.raw:
            return None
        return self.raw[name] * _ratio(self.raw, multiplier, divisor)

    def values(self) -> dict[str, float | None]:
        demand_w = self._metering("instantaneous_demand", 1000.0)
        active_w = self._em("active_power", "ac_power_multiplier", "ac_power_divisor")
        power_w = active_w if self.last_power_attr == "active_power" else demand_w
        if power_w is None:
            power_w = active_w if active_w is not None else demand_w
        return {
            "power_w": power_w,
            "reactive_var": self._em("reactive_power", "ac_power_multiplier", "ac_power_divisor"),
            "import_wh": self._metering("current_summ_delivered", 1000.0),
            "export_wh": self._metering("current_summ_received", 1000.0),
            "voltage_v": self._em("rms_voltage", "ac_voltage_multiplier", "ac_voltage_divisor"),
            "current_a": self._em("rms_current", "ac_current_multiplier", "ac_current_divisor"),
        }
