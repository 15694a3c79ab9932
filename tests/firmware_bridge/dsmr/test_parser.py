import datetime as dt

import pytest

from firmware_bridge.clock import ClockPolicy
from firmware_bridge.dsmr.mapping import telegram_to_reading
from firmware_bridge.dsmr.parser import parse_telegram, parse_timestamp
from firmware_bridge.errors import ParseError
from firmware_bridge.reading import ReadingFlag

from .telegrams import DSMR5_BODY, TELEGRAM_FLUVIUS, TELEGRAM_V4, TELEGRAM_V5, TELEGRAM_V22


def _utc(*args) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def _reading(telegram: bytes, received_s: float):
    return telegram_to_reading(parse_telegram(telegram), meter_id="m1", received_s=received_s)


def test_dsmr5_three_phase():
    meter_ts = _utc(2010, 12, 9, 10, 30, 20)  # 101209113020W = 11:30:20 CET
    r = _reading(TELEGRAM_V5, meter_ts + 2.0)
    assert r.ts_s == meter_ts and r.flags == ReadingFlag.NONE
    assert r.power_w == pytest.approx(1193.0)
    assert r.import_wh == pytest.approx(2 * 123456789.0)
    assert r.export_wh == pytest.approx(2 * 123456789.0)
    assert r.voltage_v == pytest.approx(220.1) and r.current_a == 1.0
    assert [p.voltage_v for p in r.phases] == pytest.approx([220.1, 220.2, 220.3])
    assert r.phases[1].power_w == pytest.approx(2222.0 - 5555.0)
    assert [p.current_a for p in r.phases] == [1.0, 2.0, 3.0]
    assert r.import_tariff_wh == (123456789.0, 123456789.0)
    assert r.extra["gas_m3"] == pytest.approx(12785.123)
    assert r.extra["gas_ts_s"] == _utc(2010, 12, 9, 10, 25, 0)
    assert r.extra["equipment_id"] == "K8EG004046395507"
    assert r.extra["tariff"] == 2.0 and r.tariff == 2
    assert (r.power_failures, r.long_power_failures) == (4, 2)
    assert [(f.end_ts_s, f.duration_s) for f in r.power_failure_log] == [
        (_utc(2010, 12, 8, 14, 24, 15), 240.0), (_utc(2010, 12, 8, 14, 10, 4), 301.0)]
    assert [(c.channel, c.device_type, c.unit) for c in r.mbus] == [(1, "gas", "m3")]
    assert r.warnings == () and ReadingFlag.PARTIAL not in r.flags
    assert r.extra["dsmr_version"] == "5.0" and r.extra["text_message"] == "0123456789:;<=>?"


def test_dsmr4_summer_time_sets_dst_flag():
    meter_ts = _utc(2016, 7, 23, 12, 15, 3)  # 160723141503S = 14:15:03 CEST
    r = _reading(TELEGRAM_V4, meter_ts)
    assert r.ts_s == meter_ts and ReadingFlag.DST in r.flags
    assert r.power_w == pytest.approx(287.0)
    assert r.import_wh == pytest.approx(441879.0 + 436166.0) and r.export_wh == pytest.approx(12.0)
    assert r.extra["dsmr_version"] == "4.2" and r.extra["gas_m3"] == pytest.approx(613.391)


def test_dsmr22_has_no_clock_so_receive_time_is_used():
    received_s = _utc(2016, 11, 7, 18, 30, 0)  # half an hour after the gas capture
    r = _reading(TELEGRAM_V22, received_s)
    assert r.ts_s == received_s and ReadingFlag.CLOCK_FALLBACK in r.flags
    assert r.power_w == pytest.approx(1010.0) and r.import_wh == pytest.approx(2002.0)
    assert r.extra["gas_m3"] == pytest.approx(1.001)  # value on the continuation line
    assert r.extra["gas_ts_s"] == _utc(2016, 11, 7, 18, 0, 0)  # no suffix: Europe/Amsterdam (CET)
    assert r.extra["dsmr_version"] == "2.2" and r.extra["limiter_threshold_w"] == 999000.0


def test_fluvius():
    meter_ts = _utc(2020, 5, 12, 11, 54, 9)
    r = _reading(TELEGRAM_FLUVIUS, meter_ts + 1)
    assert r.ts_s == meter_ts and ReadingFlag.DST in r.flags
    assert r.power_w == pytest.approx(502.0) and r.current_a == pytest.approx(2.14)
    assert r.import_wh == pytest.approx(34.0 + 15758.0) and r.export_wh == pytest.approx(11.0)
    assert r.extra["avg_demand_w"] == pytest.approx(2351.0)
    assert r.extra["max_demand_month_w"] == pytest.approx(2589.0)
    assert r.extra["gas_m3"] == pytest.approx(112.384)
    assert r.extra["gas_ts_s"] == _utc(2020, 5, 12, 11, 45, 58)
    assert r.extra["dsmr_version"] == "fluvius-50217"


def test_meter_clock_off_by_more_than_threshold_falls_back():
    tg = parse_telegram(TELEGRAM_V5)
    received_s = tg.timestamp.ts_s + 3600.0
    r = telegram_to_reading(tg, meter_id="m", received_s=received_s, clock=ClockPolicy(300.0))
    assert r.ts_s == received_s and ReadingFlag.CLOCK_FALLBACK in r.flags
    assert r.extra["meter_ts_s"] == tg.timestamp.ts_s  # the meter's own clock is kept for audit
    r_ok = telegram_to_reading(tg, meter_id="m", received_s=received_s, clock=ClockPolicy(7200.0))
    assert r_ok.ts_s == tg.timestamp.ts_s


def test_end_of_summer_time_repeated_hour_is_resolved_by_the_flag():
    # 2023-10-29 02:30 local happens twice: S (00:30 UTC) and W (01:30 UTC)
    assert parse_timestamp("231029023000S").ts_s == _utc(2023, 10, 29, 0, 30)
    assert parse_timestamp("231029023000W").ts_s == _utc(2023, 10, 29, 1, 30)


@pytest.mark.parametrize("bad", [
    b"/X\r\n\r\n1-0:1.7.0(01.193*kW\r\n!\r\n",  # unclosed group
    b"/X\r\n\r\n1-0:1.7.0(01.1x3*kW)\r\n!\r\n",  # bad number
    b"/X\r\n\r\n1-0:1.7.0(01.193*kWh)\r\n!\r\n",  # energy unit where power is expected
    b"/X\r\n\r\n0-0:96.14.0(0002)\r\n!\r\n",  # neither power nor energy
    b"/X\r\n\r\n1-0:1.7.0(01.193*kW)\xff\r\n!\r\n",  # non-ASCII
    b"X\r\n\r\n1-0:1.7.0(01.193*kW)\r\n!\r\n",  # no header
])
def test_a_telegram_without_a_usable_core_register_raises_parse_error(bad):
    """Each of these has one core line, and it is unreadable: nothing is left to report."""
    with pytest.raises(ParseError):
        parse_telegram(bad)


def test_water_and_gas_on_separate_mbus_channels():
    from firmware_bridge.dsmr.writer import with_crc

    body = DSMR5_BODY.replace(
        "0-1:24.1.0(003)\n0-1:96.1.0(3232323241424344313233343536373839)\n"
        "0-1:24.2.1(101209112500W)(12785.123*m3)\n",
        "0-1:24.1.0(007)\n0-1:24.2.1(101209112500W)(00042.500*m3)\n"
        "0-2:24.1.0(003)\n0-2:24.2.1(101209110000W)(00777.001*m3)\n")
    assert body != DSMR5_BODY
    r = _reading(with_crc(body), _utc(2010, 12, 9, 10, 30, 20))
    assert r.extra["water_m3"] == pytest.approx(42.5)
    assert r.extra["gas_m3"] == pytest.approx(777.001)
    assert r.extra["gas_ts_s"] == _utc(2010, 12, 9, 10, 0, 0)


def test_sagemcom_t210_registers_in_wh_and_varh():
    """Austrian Sagemcom T210-D-R plaintext: W/Wh/var/varh units, totals and tariff registers."""
    from .corpus import CORPUS_DIR

    data = (CORPUS_DIR / "dsmrparser-telegram-sagemcom-t210-d-r.p1").read_bytes()
    r = _reading(data, _utc(2022, 10, 6, 13, 50, 14))
    assert (r.power_w, r.import_wh, r.export_wh) == (286.0, 6545766.0, 58.0)
    assert r.import_tariff_wh == (5017120.0, 1528646.0) and r.export_tariff_wh == (0.0, 58.0)
    assert (r.reactive_import_varh, r.reactive_export_varh, r.reactive_var) == (747.0, 3897726.0,
                                                                               -166.0)
    assert r.extra["reactive_export_t1_varh"] == 2692848.0  # per-tariff reactive registers: extra
    assert "import_total_wh" not in r.extra and r.warnings == ()
