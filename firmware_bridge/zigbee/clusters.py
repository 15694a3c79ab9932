"""ZCL attributes the bridge listens to, as data, and the scaling state of one metering device.

Metering (0x0702): a value times ``multiplier / divisor`` is in ``unit_of_measure`` (0 = kW / kWh
for electricity), so W = demand * multiplier / divisor * 1000. Electrical Measurement (0x0B04):
``active_power * ac_power_multiplier / ac_power_divisor`` is W, and likewise V and A. Multipliers
and divisors of 0 (unset in some firmware) are treated as 1, which is what ZHA does too.

Poly-phase devices (meter interfaces on a three-phase main meter, DIN-rail meters) send phase B
and C in their own attributes (ZCL 4.9.2.2.7: ``0x09xx`` phase B, ``0x0Axx`` phase C, scaled
like phase A); ``active_power`` is "the single phase or phase A" value. Such a device's readings
carry all phases in ``Reading.phases``, and its total active power is the sum over the phases it
sends (``None`` while one of them has no value: nothing is derived from a half-read group).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware_bridge.reading import PhaseValues

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
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0905): "rms_voltage_ph_b",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0908): "rms_current_ph_b",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x090B): "active_power_ph_b",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x090E): "reactive_power_ph_b",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0A05): "rms_voltage_ph_c",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0A08): "rms_current_ph_c",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0A0B): "active_power_ph_c",
    (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x0A0E): "reactive_power_ph_c",
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

# Electrical Measurement attributes of phase n (L1 = A, L2 = B, L3 = C):
# (voltage, current, active power, reactive power), all scaled by the cluster's ac_* factors.
PHASE_ATTRIBUTES: dict[int, tuple[str, str, str, str]] = {
    1: ("rms_voltage", "rms_current", "active_power", "reactive_power"),
    2: ("rms_voltage_ph_b", "rms_current_ph_b", "active_power_ph_b", "reactive_power_ph_b"),
    3: ("rms_voltage_ph_c", "rms_current_ph_c", "active_power_ph_c", "reactive_power_ph_c"),
}
_PHASE_BC = frozenset(name for n in (2, 3) for name in PHASE_ATTRIBUTES[n])
POWER_ATTRIBUTES = frozenset({"instantaneous_demand", "active_power", "active_power_ph_b",
                              "active_power_ph_c"})
_EM_SCALING = {"voltage": ("ac_voltage_multiplier", "ac_voltage_divisor"),
               "current": ("ac_current_multiplier", "ac_current_divisor"),
               "power": ("ac_power_multiplier", "ac_power_divisor")}

# Reporting configuration: attribute -> reportable change (in raw units). Phase B/C attributes a
# single-phase device lacks are refused by it (UNSUPPORTED_ATTRIBUTE), which is recorded, not fatal.
REPORTING: dict[int, dict[str, int]] = {
    METERING_CLUSTER_ID: {"instantaneous_demand": 1, "current_summ_delivered": 1,
                          "current_summ_received": 1},
    ELECTRICAL_MEASUREMENT_CLUSTER_ID: {name: 1 for n in (1, 2, 3) for name in PHASE_ATTRIBUTES[n]},
}


def _scaled(raw: dict[str, float], name: str, multiplier: str, divisor: str) -> float:
    """``raw[name] * multiplier / divisor`` (a factor of 0 or absent counts as 1), multiplied before
    dividing so that 2011 / 10 is 201.1, not 201.10000000000002."""
    m = raw.get(multiplier) or 1.0
    d = raw.get(divisor) or 1.0
    return raw[name] * float(m) / float(d)


@dataclass
class MeteringState:
    """Raw attribute values of one device (both clusters) and their scaled SI values."""

    raw: dict[str, float] = field(default_factory=dict)
    last_power_attr: str | None = None
    seen: set[str] = field(default_factory=set)  # attributes the device ever sent, valid or not

    def update(self, name: str, value: float) -> None:
        self.raw[name] = float(value)
        self.seen.add(name)
        if name in POWER_ATTRIBUTES:
            self.last_power_attr = name

    def invalidate(self, name: str) -> None:
        """The device sent the ZCL invalid number for ``name``: it has no value now."""
        self.raw.pop(name, None)
        self.seen.add(name)

    @property
    def poly_phase(self) -> bool:
        """The device sends phase B or C attributes."""
        return not _PHASE_BC.isdisjoint(self.seen)

    @property
    def is_electricity(self) -> bool:
        return int(self.raw.get("unit_of_measure", METERING_UNIT_KW)) & 0x7F == METERING_UNIT_KW

    def _metering(self, name: str, scale: float) -> float | None:
        if name not in self.raw or not self.is_electricity:
            return None
        return _scaled(self.raw, name, "multiplier", "divisor") * scale

    def _em(self, name: str, multiplier: str, divisor: str) -> float | None:
        if name not in self.raw:
            return None
        return _scaled(self.raw, name, multiplier, divisor)

    def _phase(self, n: int) -> PhaseValues:
        voltage, current, active, reactive = PHASE_ATTRIBUTES[n]
        return PhaseValues(power_w=self._em(active, *_EM_SCALING["power"]),
                           voltage_v=self._em(voltage, *_EM_SCALING["voltage"]),
                           current_a=self._em(current, *_EM_SCALING["current"]),
                           reactive_var=self._em(reactive, *_EM_SCALING["power"]))

    def _phase_sum(self, phases: tuple[PhaseValues, ...], attr: str, index: int) -> float | None:
        """Sum of ``attr`` over the phases whose attribute the device sends; None if one has no value
        (or the device sends none of them)."""
        sent = [ph for n, ph in enumerate(phases, start=1) if PHASE_ATTRIBUTES[n][index] in self.seen]
        values = [getattr(ph, attr) for ph in sent]
        if not values or any(v is None for v in values):
            return None
        return float(sum(values))

    def values(self) -> dict[str, object]:
        """The scaled values as ``Reading`` keyword arguments (W, var, Wh, V, A, ``phases``)."""
        l1 = self._phase(1)
        phases: tuple[PhaseValues, ...] = ()
        active_w, reactive_var = l1.power_w, l1.reactive_var
        if self.poly_phase:
            phases = (l1, self._phase(2), self._phase(3))
            active_w = self._phase_sum(phases, "power_w", 2)
            reactive_var = self._phase_sum(phases, "reactive_var", 3)
        demand_w = self._metering("instantaneous_demand", 1000.0)
        power_w = active_w if self.last_power_attr in POWER_ATTRIBUTES - {"instantaneous_demand"} else demand_w
        if power_w is None:
            power_w = active_w if active_w is not None else demand_w
        return {
            "power_w": power_w,
            "reactive_var": reactive_var,
            "import_wh": self._metering("current_summ_delivered", 1000.0),
            "export_wh": self._metering("current_summ_received", 1000.0),
            "voltage_v": l1.voltage_v,
            "current_a": l1.current_a,
            "phases": phases,
        }
