"""OBIS references of the P1 port as a data table: code -> (name, kind).

Kinds: "ts" meter clock, "str" text, "hex" hex-encoded text, "int" counter/indicator,
"kw"/"kwh"/"v"/"a" quantities (converted to W / Wh / V / A), "gas" a (timestamp)(m3) pair,
"ts_kw" a (timestamp)(kW) pair (Fluvius monthly peak). Per-phase L1/L2/L3 codes follow IEC 62056-61
(21/41/61 = +P, 22/42/62 = -P, 31/51/71 = I, 32/52/72 = U).
"""

from __future__ import annotations

OBIS_TABLE: dict[str, tuple[str, str]] = {
    # identification and clock
    "1-3:0.2.8": ("dsmr_version", "str"),  # NL DSMR 4/5: "42", "50"
    "0-0:96.1.4": ("fluvius_version", "str"),  # BE e-MUCS: "50217"
    "0-0:1.0.0": ("timestamp", "ts"),
    "0-0:96.1.1": ("equipment_id", "hex"),
    "0-0:96.13.0": ("text_message", "hex"),
    # energy counters
    "1-0:1.8.0": ("import_total_wh", "kwh"),
    "1-0:2.8.0": ("export_total_wh", "kwh"),
    "1-0:1.8.1": ("import_t1_wh", "kwh"),  # NL: low tariff; BE: day tariff
    "1-0:1.8.2": ("import_t2_wh", "kwh"),
    "1-0:2.8.1": ("export_t1_wh", "kwh"),
    "1-0:2.8.2": ("export_t2_wh", "kwh"),
    "0-0:96.14.0": ("tariff", "int"),
    # instantaneous power, total and per phase
    "1-0:1.7.0": ("power_delivered_w", "kw"),
    "1-0:2.7.0": ("power_returned_w", "kw"),
    "1-0:21.7.0": ("power_delivered_l1_w", "kw"),
    "1-0:41.7.0": ("power_delivered_l2_w", "kw"),
    "1-0:61.7.0": ("power_delivered_l3_w", "kw"),
    "1-0:22.7.0": ("power_returned_l1_w", "kw"),
    "1-0:42.7.0": ("power_returned_l2_w", "kw"),
    "1-0:62.7.0": ("power_returned_l3_w", "kw"),
    "1-0:32.7.0": ("voltage_l1_v", "v"),
    "1-0:52.7.0": ("voltage_l2_v", "v"),
    "1-0:72.7.0": ("voltage_l3_v", "v"),
    "1-0:31.7.0": ("current_l1_a", "a"),
    "1-0:51.7.0": ("current_l2_a", "a"),
    "1-0:71.7.0": ("current_l3_a", "a"),
    # power quality counters
    "0-0:96.7.21": ("power_failures", "int"),
    "0-0:96.7.9": ("long_power_failures", "int"),
    "1-0:32.32.0": ("voltage_sags_l1", "int"),
    "1-0:52.32.0": ("voltage_sags_l2", "int"),
    "1-0:72.32.0": ("voltage_sags_l3", "int"),
    "1-0:32.36.0": ("voltage_swells_l1", "int"),
    "1-0:52.36.0": ("voltage_swells_l2", "int"),
    "1-0:72.36.0": ("voltage_swells_l3", "int"),
    # Fluvius (BE) and DSMR 2.2 extras
    "1-0:1.4.0": ("avg_demand_w", "kw"),
    "1-0:1.6.0": ("max_demand_month_w", "ts_kw"),
    "0-0:17.0.0": ("limiter_threshold_w", "kw"),
    "0-0:96.3.10": ("breaker_state", "int"),
}

# Gas on an M-Bus channel n (1..4): NL DSMR 4/5 "0-n:24.2.1", BE "0-n:24.2.3",
# DSMR 2.2 "0-n:24.3.0" with the value on the next line. M-Bus device type 3 = gas.
GAS_OBIS_SUFFIXES: tuple[str, ...] = (":24.2.1", ":24.2.3", ":24.3.0")
MBUS_DEVICE_TYPE_SUFFIX = ":24.1.0"
MBUS_GAS = 3  # M-Bus device types (EN 13757-3)
MBUS_WATER = 7

# unit in the telegram -> (SI unit of the Reading, scale)
UNIT_SCALE: dict[str, tuple[str, float]] = {
    "kWh": ("Wh", 1000.0),
    "Wh": ("Wh", 1.0),
    "kW": ("W", 1000.0),
    "W": ("W", 1.0),
    "V": ("V", 1.0),
    "A": ("A", 1.0),
    "m3": ("m3", 1.0),
    "s": ("s", 1.0),
}
KIND_UNIT = {"kw": "W", "kwh": "Wh", "v": "V", "a": "A"}
