"""dsmr_parser (the parser Home Assistant's DSMR integration uses) as the oracle.

Every corpus telegram goes through dsmr_parser (its own TelegramBuffer framing, then
``TelegramParser`` with the specification a user of that library would pick for the meter) and
through the product (TelegramFramer + parse_telegram). Every field the oracle reads must equal
the product's object of the same OBIS code, converted to SI units. Where the two differ because
the oracle is wrong, or the product applies a documented rule, the difference is listed below
with the reason; any other difference, or an oracle field the product does not map, fails.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from dsmr_parser import telegram_specifications

from firmware_bridge.dsmr.framing import FramerConfig, TelegramFramer
from firmware_bridge.dsmr.parser import Telegram, parse_telegram

from .corpus import CorpusTelegram, load_corpus, oracle_parse

CORPUS = load_corpus()


# Oracle value name -> (product object name, how to compare).
FIELDS: dict[str, tuple[str, str]] = {
    "P1_MESSAGE_HEADER": ("dsmr_version", "text"),
    "P1_MESSAGE_TIMESTAMP": ("timestamp", "clock"),
    "EQUIPMENT_IDENTIFIER": ("equipment_id", "hex"),
    "BELGIUM_EQUIPMENT_IDENTIFIER": ("equipment_id", "hex"),
    "EQUIPMENT_SERIAL_NUMBER": ("device_serial", "hex"),
    "EQUIPMENT_IDENTIFIER_GAS": ("device_serial", "hex"),  # 0-0:96.1.0 outside the M-Bus
    "COSEM_LOGICAL_DEVICE_NAME": ("logical_device_name", "hex"),
    "LUXEMBOURG_EQUIPMENT_IDENTIFIER": ("logical_device_name", "hex"),
    "BELGIUM_VERSION_INFORMATION": ("fluvius_version", "text"),
    "Q3D_EQUIPMENT_IDENTIFIER": ("meter_serial", "text"),
    "Q3D_EQUIPMENT_SERIALNUMBER": ("serial_number", "text"),
    "Q3D_EQUIPMENT_STATE": ("device_state", "text"),
    "MSN_CT_RATIO": ("current_transformer_ratio", "text"),
    "ELECTRICITY_IMPORTED_TOTAL": ("import_total", "quantity"),
    "ELECTRICITY_EXPORTED_TOTAL": ("export_total", "quantity"),
    "ELECTRICITY_REACTIVE_IMPORTED_TOTAL": ("reactive_import_total", "quantity"),
    "ELECTRICITY_REACTIVE_EXPORTED_TOTAL": ("reactive_export_total", "quantity"),
    **{f"ELECTRICITY_USED_TARIFF_{t}": (f"import_t{t}", "quantity") for t in range(1, 5)},
    **{f"ELECTRICITY_DELIVERED_TARIFF_{t}": (f"export_t{t}", "quantity") for t in range(1, 5)},
    **{f"ELECTRICITY_REACTIVE_IMPORTED_TARIFF_{t}": (f"reactive_import_t{t}", "quantity")
       for t in (1, 2)},
    **{f"ELECTRICITY_REACTIVE_EXPORTED_TARIFF_{t}": (f"reactive_export_t{t}", "quantity")
       for t in (1, 2)},
    **{f"ELECTRICITY_REACTIVE_TOTAL_Q{q}": (f"reactive_q{q}", "quantity") for q in range(1, 5)},
    **{f"INSTANTANEOUS_REACTIVE_POWER_Q{q}": (f"reactive_power_q{q}", "quantity") for q in range(1, 5)},
    "ELECTRICITY_COMBINED": ("absolute_active", "quantity"),
    "ELECTRICITY_ACTIVE_TARIFF": ("tariff", "tariff"),
    "CURRENT_ELECTRICITY_USAGE": ("power_delivered", "quantity"),
    "CURRENT_ELECTRICITY_DELIVERY": ("power_returned", "quantity"),
    "CURRENT_REACTIVE_IMPORTED": ("reactive_power_import", "quantity"),
    "CURRENT_REACTIVE_EXPORTED": ("reactive_power_export", "quantity"),
    "MSN_INSTANTANEOUS_APPARENT_POWER_POSITIVE": ("apparent_power_import", "quantity"),
    "MSN_INSTANTANEOUS_APPARENT_POWER_NEGATIVE": ("apparent_power_export", "quantity"),
    "INSTANTANEOUS_POWER_FACTOR_TOTAL": ("power_factor", "quantity"),
    "FREQUENCY": ("frequency", "quantity"),
    "LONG_POWER_FAILURE_COUNT": ("long_power_failures", "count"),
    "SHORT_POWER_FAILURE_COUNT": ("power_failures", "count"),
    "POWER_EVENT_FAILURE_LOG": ("power_failure_log", "failure_log"),
    "TEXT_MESSAGE": ("text_message", "hex"),
    "TEXT_MESSAGE_CODE": ("text_message_code", "hex"),
    **{f"MSN_TEXT_MESSAGE_{n}": (f"text_message_{n}", "hex") for n in (2, 3, 4, 5)},
    "ACTUAL_TRESHOLD_ELECTRICITY": ("limiter_threshold", "quantity"),
    "ACTUAL_SWITCH_POSITION": ("breaker_state", "count"),
    "BELGIUM_CURRENT_AVERAGE_DEMAND": ("avg_demand", "quantity"),
    "BELGIUM_MAXIMUM_DEMAND_MONTH": ("max_demand_month", "max_demand"),
}
for _n in (1, 2, 3):
    FIELDS |= {
        f"INSTANTANEOUS_VOLTAGE_L{_n}": (f"voltage_l{_n}", "quantity"),
        f"INSTANTANEOUS_CURRENT_L{_n}": (f"current_l{_n}", "quantity"),
        f"FUSE_THRESHOLD_L{_n}": (f"current_limit_l{_n}", "quantity"),
        f"VOLTAGE_SAG_L{_n}_COUNT": (f"voltage_sags_l{_n}", "count"),
        f"VOLTAGE_SWELL_L{_n}_COUNT": (f"voltage_swells_l{_n}", "count"),
        f"INSTANTANEOUS_ACTIVE_POWER_L{_n}_POSITIVE": (f"power_delivered_l{_n}", "quantity"),
        f"INSTANTANEOUS_ACTIVE_POWER_L{_n}_NEGATIVE": (f"power_returned_l{_n}", "quantity"),
        f"INSTANTANEOUS_REACTIVE_POWER_L{_n}_POSITIVE": (f"reactive_power_import_l{_n}", "quantity"),
        f"INSTANTANEOUS_REACTIVE_POWER_L{_n}_NEGATIVE": (f"reactive_power_export_l{_n}", "quantity"),
        f"INSTANTANEOUS_POWER_FACTOR_L{_n}": (f"power_factor_l{_n}", "quantity"),
    }
# Oracle value names of M-Bus objects (channel 1..4) -> the product's MbusRecord part.
MBUS_FIELDS = {
    "DEVICE_TYPE": "device_type", "MBUS_DEVICE_TYPE": "device_type",
    "EQUIPMENT_IDENTIFIER_GAS": "equipment_id", "MBUS_EQUIPMENT_IDENTIFIER": "equipment_id",
    "EQUIPMENT_IDENTIFIER": "equipment_id", "BELGIUM_EQUIPMENT_IDENTIFIER": "equipment_id",
    "HOURLY_GAS_METER_READING": "reading", "GAS_METER_READING": "reading",
    "MBUS_METER_READING": "reading",
    "VALVE_POSITION_GAS": "valve", "MBUS_VALVE_POSITION": "valve",
    "MSN_MBUS_SWITCH_POSITION": "valve",
}
# Oracle fields the product deliberately does not read.
NOT_READ = {
    "BELGIUM_MAXIMUM_DEMAND_13_MONTHS": "the 13-month peak archive is history, not a reading; "
                                        "the current month's peak (1-0:1.6.0) is read",
}

# Telegrams the oracle rejects although they are valid, and why.
ORACLE_REJECTS = {
    "dsmrparser-telegram-sagemcom-t210-d-r.p1":
        "dsmr_parser's SAGEMCOM_T210_D_R specification only takes the encrypted (hex) frame; it "
        "rejects the plaintext telegram the meter's P1 port sends once decrypted",
}
# Differences where the oracle is wrong or the product applies a documented rule:
# (telegram, oracle field) -> reason.
KNOWN_DIFFERENCES = {
    ("dsmrreader-landisgyr350-dsmr40.p1", "HOURLY_GAS_METER_READING@1"):
        "lower-case DST flag 's' in the gas capture time: the oracle returns no time",
    ("dsmrparser-telegram-iskra-ie.p1", "P1_MESSAGE_TIMESTAMP"):
        "summer-time flag 'S' on a February date (an Irish meter): the oracle ignores the flag "
        "outside the repeated October hour and applies the Amsterdam calendar; the product takes "
        "the meter's flag (CET + 1 h), then its clock policy checks the time against the gateway",
    ("case:dsmr-cosem-hex-clock-empty-mbus", "P1_MESSAGE_TIMESTAMP"):
        "COSEM date-time octet string (07E8061C...): the oracle returns no time",
    ("case:dsmr-cosem-hex-clock-empty-mbus", "ELECTRICITY_ACTIVE_TARIFF"):
        "tariff sent as hex text '5431' = 'T1': the oracle reads the number 5431",
}
# Test-side unit table (independent of the product's): unit as written -> (SI suffix, scale).
UNITS = {"kwh": ("wh", 1000), "wh": ("wh", 1), "mwh": ("wh", 10**6), "kw": ("w", 1000),
         "w": ("w", 1), "kvarh": ("varh", 1000), "varh": ("varh", 1), "kvar": ("var", 1000),
         "var": ("var", 1), "kva": ("va", 1000), "va": ("va", 1), "v": ("v", 1), "a": ("a", 1),
         "hz": ("hz", 1), None: ("", 1)}
_FAILURE_LOG_EPOCH = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)  # older entries: the meters' filler


def product_parse(item: CorpusTelegram) -> Telegram:
    crc = "none" if item.version in ("2.2", "3") else "required"
    frames = [f for f in TelegramFramer(FramerConfig(crc=crc)).feed(item.data) if isinstance(f, bytes)]
    assert frames, f"the product's framer found no valid telegram in {item.name}"
    return parse_telegram(frames[-1])


def _ts(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _hex_text(value) -> str:
    if value is None:
        return ""
    value = str(value)  # some specifications read identifiers as numbers
    try:
        text = bytes.fromhex(value).decode("ascii")
        return text if text.isprintable() else value
    except ValueError:
        return value


def _si(value, unit) -> tuple[float, str]:
    suffix, scale = UNITS[unit.lower() if unit else None]
    return float(Decimal(value) * scale), suffix


def _compare_field(kind: str, name: str, obj, tg: Telegram) -> tuple | None:
    """(oracle, product) when they differ, else None."""
    if kind == "clock":
        oracle, product = _ts(obj.value), tg.timestamp.ts_s if tg.timestamp else None
    elif kind == "text":
        oracle, product = obj.value or "", tg.values.get(name, "")
    elif kind == "hex":
        oracle, product = _hex_text(obj.value), tg.values.get(name, "")
    elif kind in ("count", "tariff"):
        oracle, product = float(int(obj.value)), tg.values.get(name)
    elif kind == "quantity":
        value, suffix = _si(obj.value, obj.unit)
        key = f"{name}_{suffix}" if suffix else name
        oracle, product = (value, key), (tg.values.get(key), key)
        return None if product[0] == pytest.approx(value, rel=1e-12, abs=1e-9) else (oracle, product)
    elif kind == "max_demand":
        value, suffix = _si(obj.value, obj.unit)
        oracle = (value, _ts(obj.datetime))
        product = (tg.values.get(f"{name}_{suffix}"),
                   tg.max_demand_time.ts_s if tg.max_demand_time else None)
    elif kind == "failure_log":
        oracle = [(_ts(e.datetime), float(e.value)) for e in obj.buffer
                  if e.datetime is not None and e.datetime >= _FAILURE_LOG_EPOCH]
        product = [(f.end_ts_s, f.duration_s) for f in tg.failure_log]
    else:
        raise AssertionError(kind)
    return None if oracle == product else (oracle, product)


def _compare_mbus(device, tg: Telegram, differences: dict) -> None:
    rec = tg.mbus.get(device.channel_id)
    for oracle_name, obj in device:
        part, key = MBUS_FIELDS[oracle_name], f"{oracle_name}@{device.channel_id}"
        if rec is None:
            differences[key] = (obj.value, None)
        elif part == "device_type":
            oracle = None if obj.value in (None, "") else int(obj.value)
            if oracle != rec.device_type_code:
                differences[key] = (oracle, rec.device_type_code)
        elif part == "equipment_id":
            if _hex_text(obj.value) != rec.equipment_id:
                differences[key] = (_hex_text(obj.value), rec.equipment_id)
        elif part == "valve":
            product = tg.values.get(f"mbus{device.channel_id}_valve")
            if obj.value is not None and float(int(obj.value)) != product:
                differences[key] = (obj.value, product)
        else:
            oracle = (float(obj.value), (obj.unit or "").lower(), _ts(obj.datetime))
            product = (rec.value, rec.unit.lower(), rec.capture.ts_s if rec.capture else None)
            if oracle != product:
                differences[key] = (oracle, product)


# The product's core registers: the oracle must read these too when the telegram has them (a
# telegram the oracle "accepts" while reading none of its lines would otherwise pass unnoticed).
CORE = ("power_delivered", "power_returned", "import_total", "import_t1", "import_t2",
        "export_total", "export_t1", "export_t2")


def compare(oracle_tg, tg: Telegram) -> tuple[dict, set]:
    """({oracle field: (oracle, product)} for every difference, {oracle fields not mapped})."""
    differences, unmapped = {}, set()
    read_by_oracle = {FIELDS[name][0] for name, _ in oracle_tg if name in FIELDS}
    for name in CORE:
        if any(key.rsplit("_", 1)[0] == name for key in tg.values) and name not in read_by_oracle:
            differences[f"not read: {name}"] = (None, "read by the product")
    for oracle_name, obj in oracle_tg:
        if oracle_name == "MBUS_DEVICES":
            for device in obj:
                _compare_mbus(device, tg, differences)
        elif oracle_name in NOT_READ:
            continue
        elif oracle_name not in FIELDS:
            unmapped.add(oracle_name)
        elif getattr(obj, "obis_id_code", (0, 0))[1] != 0 and oracle_name in MBUS_FIELDS:
            continue  # an M-Bus object the oracle also lists at top level
        else:
            name, kind = FIELDS[oracle_name]
            diff = _compare_field(kind, name, obj, tg)
            if diff is not None:
                differences[oracle_name] = diff
    return differences, unmapped


@pytest.mark.parametrize("item", CORPUS, ids=[c.name for c in CORPUS])
def test_every_field_the_oracle_reads_equals_the_products(item):
    oracle_tg, rejected = oracle_parse(item)
    tg = product_parse(item)  # the product accepts every corpus telegram
    if oracle_tg is None:
        assert item.name in ORACLE_REJECTS, f"oracle rejected {item.name}: {rejected}"
        return
    assert item.name not in ORACLE_REJECTS, "the oracle accepts it now: update ORACLE_REJECTS"
    differences, unmapped = compare(oracle_tg, tg)
    assert not unmapped, f"oracle fields without a product mapping: {sorted(unmapped)}"
    expected = {field for (name, field) in KNOWN_DIFFERENCES if name == item.name}
    assert set(differences) == expected, differences


def test_the_mapping_covers_every_field_of_the_oracles_specifications():
    names = {o["value_name"] for spec in (
        "V2_2", "V4", "V5", "BELGIUM_FLUVIUS", "LUXEMBOURG_SMARTY", "MSN", "SWEDEN", "Q3D",
        "SAGEMCOM_T210_D_R", "ISKRA_IE", "EON_HUNGARY")
        for o in getattr(telegram_specifications, spec)["objects"]}
    assert names <= set(FIELDS) | set(MBUS_FIELDS) | set(NOT_READ), sorted(
        names - set(FIELDS) - set(MBUS_FIELDS) - set(NOT_READ))


def test_the_corpus_spans_meter_families():
    headers = {c.data.split(b"\n", 1)[0][:5] for c in CORPUS}
    for tag in (b"/ISk5", b"/ISK5", b"/KFM5", b"/XMX5", b"/FLU5", b"/Lux5", b"/EST5", b"/ESY5",
                b"/KAM5", b"/SAG5", b"/Ene5"):
        assert tag in headers, tag
    assert len(CORPUS) >= 50
