"""OBIS references of the P1 port as data tables: code -> (name, kind, units).

Sources: DSMR P1 Companion Standard 5.0.2 (NL), 4.2 and 2.2; Fluvius e-MUCS P1 1.7 (BE);
Luxmetering E-Meter P1 Specification 1.1 (LU Smarty); IEC 62056-61 for the code structure
(A-B:C.D.E; a billing-period suffix ``*F`` or ``.F``, usually 255, is ignored).

Kinds (how the groups of a line are read, see ``dsmr.values``): "clock" meter time, "text",
"hex" hex-encoded text, "count" integer counter, "tariff" tariff indicator, "breaker" switch
position, "quantity" number with a unit, "max_demand" a (time)(quantity) pair, "failure_log" the
power-failure event log, "skip" known but not used (the Belgian 13-month peak history).

Per-phase codes follow IEC 62056-61: 21/41/61 +P, 22/42/62 -P, 23/43/63 +Q, 24/44/64 -Q,
31/51/71 I, 32/52/72 U (L1/L2/L3).
"""

from __future__ import annotations

from dataclasses import dataclass

# unit as sent -> (name suffix, scale to that SI unit). A quantity object accepts only the units
# of its group; any other unit drops that one object (with a warning), never the telegram.
POWER = {"kW": ("w", 1000.0), "W": ("w", 1.0)}
ENERGY = {"kWh": ("wh", 1000.0), "Wh": ("wh", 1.0), "MWh": ("wh", 1e6)}
REACTIVE_POWER = {"kvar": ("var", 1000.0), "var": ("var", 1.0)}
REACTIVE_ENERGY = {"kvarh": ("varh", 1000.0), "varh": ("varh", 1.0)}
APPARENT_POWER = {"kVA": ("va", 1000.0), "VA": ("va", 1.0)}
VOLTAGE = {"V": ("v", 1.0)}
CURRENT = {"A": ("a", 1.0)}
FREQUENCY = {"Hz": ("hz", 1.0)}
DURATION = {"s": ("s", 1.0)}
# The limiter threshold 0-0:17.0.0 is kW in NL, kVA in LU, A in some older meters.
LIMIT = {**POWER, **APPARENT_POWER, **CURRENT}
UNITLESS = {"": ("", 1.0)}  # power factor


@dataclass(frozen=True, slots=True)
class ObisSpec:
    """How one OBIS line is read: the value's name, its kind and (quantities) accepted units.

    A quantity is stored as ``f"{name}_{suffix}"`` with the suffix of the unit the meter sent
    (``limiter_threshold`` + kVA -> ``limiter_threshold_va``), so a key always names its unit.
    """

    name: str
    kind: str
    units: dict[str, tuple[str, float]] | None = None


def _q(name: str, units: dict[str, tuple[str, float]]) -> ObisSpec:
    return ObisSpec(name, "quantity", units)


def _phase_specs() -> dict[str, ObisSpec]:
    out = {}
    for n, (pp, pn, qp, qn, i, u) in enumerate(((21, 22, 23, 24, 31, 32), (41, 42, 43, 44, 51, 52),
                                                 (61, 62, 63, 64, 71, 72)), start=1):
        out |= {f"1-0:{pp}.7.0": _q(f"power_delivered_l{n}", POWER),
                f"1-0:{pn}.7.0": _q(f"power_returned_l{n}", POWER),
                f"1-0:{qp}.7.0": _q(f"reactive_power_import_l{n}", REACTIVE_POWER),
                f"1-0:{qn}.7.0": _q(f"reactive_power_export_l{n}", REACTIVE_POWER),
                f"1-0:{i}.7.0": _q(f"current_l{n}", CURRENT),
                f"1-0:{u}.7.0": _q(f"voltage_l{n}", VOLTAGE),
                f"1-0:{i}.4.0": _q(f"current_limit_l{n}", CURRENT),  # BE: fuse limitation
                f"1-0:{u}.32.0": ObisSpec(f"voltage_sags_l{n}", "count"),
                f"1-0:{u}.36.0": ObisSpec(f"voltage_swells_l{n}", "count"),
                f"1-0:{u + 1}.7.0": _q(f"power_factor_l{n}", UNITLESS)}  # 33/53/73
    return out


def _tariff_specs() -> dict[str, ObisSpec]:
    """Energy registers: C = 1 (+A import), 2 (-A export), 3 (+R), 4 (-R); E = 0 total, 1..4."""
    out = {}
    for c, name, units in ((1, "import", ENERGY), (2, "export", ENERGY),
                           (3, "reactive_import", REACTIVE_ENERGY),
                           (4, "reactive_export", REACTIVE_ENERGY)):
        out[f"1-0:{c}.8.0"] = _q(f"{name}_total", units)
        for t in range(1, 5):
            out[f"1-0:{c}.8.{t}"] = _q(f"{name}_t{t}", units)
    return out


OBIS_TABLE: dict[str, ObisSpec] = {
    # identification and clock
    "1-3:0.2.8": ObisSpec("dsmr_version", "text"),  # NL DSMR 4/5: "42", "50"
    "0-0:96.1.4": ObisSpec("fluvius_version", "text"),  # BE e-MUCS: "50217"
    "0-0:1.0.0": ObisSpec("timestamp", "clock"),
    "0-0:96.1.1": ObisSpec("equipment_id", "hex"),
    "0-0:96.1.0": ObisSpec("device_serial", "hex"),  # HU, IE
    "0-0:42.0.0": ObisSpec("logical_device_name", "hex"),  # LU, HU: COSEM logical device name
    "1-0:0.0.0": ObisSpec("meter_serial", "text"),  # EasyMeter Q3D, Iskra IE
    "0-0:96.1.255": ObisSpec("serial_number", "text"),  # EasyMeter Q3D
    "1-0:96.5.5": ObisSpec("device_state", "text"),  # EasyMeter Q3D status word (hex)
    "0-0:96.13.0": ObisSpec("text_message", "hex"),
    "0-0:96.13.1": ObisSpec("text_message_code", "hex"),
    **{f"0-0:96.13.{n}": ObisSpec(f"text_message_{n}", "hex") for n in (2, 3, 4, 5)},  # LU
    # energy per tariff and totals, reactive energy
    **_tariff_specs(),
    "1-0:5.8.0": _q("reactive_q1", REACTIVE_ENERGY),  # HU: reactive energy per quadrant
    "1-0:6.8.0": _q("reactive_q2", REACTIVE_ENERGY),
    "1-0:7.8.0": _q("reactive_q3", REACTIVE_ENERGY),
    "1-0:8.8.0": _q("reactive_q4", REACTIVE_ENERGY),
    "1-0:15.8.0": _q("absolute_active", ENERGY),  # |+A| + |-A|
    "0-0:96.14.0": ObisSpec("tariff", "tariff"),
    # instantaneous values, total and per phase
    "1-0:1.7.0": _q("power_delivered", POWER),
    "1-0:2.7.0": _q("power_returned", POWER),
    "1-0:3.7.0": _q("reactive_power_import", REACTIVE_POWER),
    "1-0:4.7.0": _q("reactive_power_export", REACTIVE_POWER),
    "1-0:5.7.0": _q("reactive_power_q1", REACTIVE_POWER),
    "1-0:6.7.0": _q("reactive_power_q2", REACTIVE_POWER),
    "1-0:7.7.0": _q("reactive_power_q3", REACTIVE_POWER),
    "1-0:8.7.0": _q("reactive_power_q4", REACTIVE_POWER),
    "1-0:9.7.0": _q("apparent_power_import", APPARENT_POWER),
    "1-0:10.7.0": _q("apparent_power_export", APPARENT_POWER),
    "1-0:13.7.0": _q("power_factor", UNITLESS),
    "1-0:14.7.0": _q("frequency", FREQUENCY),
    **_phase_specs(),
    # power quality and events
    "0-0:96.7.21": ObisSpec("power_failures", "count"),
    "0-0:96.7.9": ObisSpec("long_power_failures", "count"),
    "1-0:99.97.0": ObisSpec("power_failure_log", "failure_log"),
    # limiter, breaker, Belgian demand
    "0-0:17.0.0": _q("limiter_threshold", LIMIT),
    "0-0:96.3.10": ObisSpec("breaker_state", "breaker"),
    "1-0:1.4.0": _q("avg_demand", POWER),
    "1-0:1.6.0": ObisSpec("max_demand_month", "max_demand", POWER),
    "1-1:31.4.0": ObisSpec("current_transformer_ratio", "text"),  # LU
    "0-0:98.1.0": ObisSpec("max_demand_history", "skip"),
}

# M-Bus sub-meters on channel n = 1..4: objects "0-n:C.D.E", keyed here by "C.D.E".
# NL DSMR 4/5 send the reading as 24.2.1 (temperature-corrected m3), BE 24.2.3 (not corrected),
# DSMR 2.2/3 as 24.3.0 with the value on the next line.
MBUS_TABLE: dict[str, str] = {
    "24.1.0": "device_type",
    "96.1.0": "equipment_id",
    "96.1.1": "equipment_id",
    "24.2.1": "reading",
    "24.2.3": "reading",
    "24.3.0": "reading_22",
    "24.4.0": "valve",
    "96.3.10": "valve",
}
MBUS_CHANNELS = range(1, 5)

# Units an M-Bus reading may carry, normalised (the meters write "m3", some "M3").
MBUS_UNITS = {"m3": "m3", "gj": "GJ", "mj": "MJ", "mwh": "MWh", "kwh": "kWh", "wh": "Wh"}
# Device kind when the meter sends no type line: from the unit.
MBUS_KIND_BY_UNIT = {"m3": "gas", "GJ": "heat", "MJ": "heat", "MWh": "heat", "kWh": "electricity",
                     "Wh": "electricity"}
