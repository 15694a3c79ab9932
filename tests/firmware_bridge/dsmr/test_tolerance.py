"""One bad or unexpected line drops its own object, never the telegram (each trigger as a kind).

Each test edits one line of a valid DSMR 5 telegram, recomputes the CRC (a meter wrote it so),
and checks that the telegram still gives a Reading with every other value, the dropped object
named in ``warnings`` and flagged ``PARTIAL``.
"""

import datetime as dt

import pytest

from firmware_bridge.dsmr.framing import FramerConfig, TelegramFramer
from firmware_bridge.dsmr.mapping import telegram_to_reading
from firmware_bridge.dsmr.parser import parse_telegram
from firmware_bridge.dsmr.source import DsmrConfig, DsmrSource
from firmware_bridge.dsmr.writer import with_crc
from firmware_bridge.errors import ParseError
from firmware_bridge.reading import ReadingFlag

from .telegrams import DSMR5_BODY

METER_TS_S = dt.datetime(2010, 12, 9, 10, 30, 20, tzinfo=dt.UTC).timestamp()
GAS_LINE = "0-1:24.2.1(101209112500W)(12785.123*m3)"


def _edit(old: str, new: str) -> bytes:
    assert old in DSMR5_BODY
    return with_crc(DSMR5_BODY.replace(old, new))


def _read(data: bytes):
    return telegram_to_reading(parse_telegram(data), meter_id="m", received_s=METER_TS_S + 1)


def _assert_rest_intact(r, *, power=True, energy=True, gas=True, clock=True):
    if power:
        assert r.power_w == pytest.approx(1193.0)
    if energy:
        assert r.import_wh == pytest.approx(2 * 123456789.0)
    if gas:
        assert r.extra["gas_m3"] == pytest.approx(12785.123)
    if clock:
        assert r.ts_s == METER_TS_S
    assert [p.voltage_v for p in r.phases] == pytest.approx([220.1, 220.2, 220.3])


def test_impossible_mbus_capture_time_drops_only_that_channel():
    r = _read(_edit(GAS_LINE, "0-1:24.2.1(632525252525W)(12785.123*m3)"))
    _assert_rest_intact(r, gas=False)
    assert "gas_m3" not in r.extra and r.mbus == ()
    assert ReadingFlag.PARTIAL in r.flags and "632525252525W" in r.warnings[0]


@pytest.mark.parametrize(("line", "key", "value"), [
    ("0-0:17.0.0(27.600*kVA)", "limiter_threshold_va", 27600.0),
    ("0-0:17.0.0(016*A)", "limiter_threshold_a", 16.0),
    ("0-0:17.0.0(999.9*kW)", "limiter_threshold_w", 999900.0),
])
def test_limiter_in_any_of_its_units_is_kept_under_a_key_naming_the_unit(line, key, value):
    r = _read(_edit("0-0:96.14.0(0002)", "0-0:96.14.0(0002)\n" + line))
    _assert_rest_intact(r)
    assert r.extra[key] == value and r.warnings == ()


def test_a_unit_the_object_does_not_take_drops_that_object():
    r = _read(_edit("1-0:32.7.0(220.1*V)", "1-0:32.7.0(220.1*kV)"))
    assert r.phases[0].voltage_v is None and r.voltage_v is None
    assert "unit 'kV'" in r.warnings[0] and ReadingFlag.PARTIAL in r.flags
    _assert_rest_intact_but_l1_voltage(r)


def _assert_rest_intact_but_l1_voltage(r):
    assert r.power_w == pytest.approx(1193.0) and r.extra["gas_m3"] == pytest.approx(12785.123)
    assert [p.voltage_v for p in r.phases[1:]] == pytest.approx([220.2, 220.3])


def test_heat_meter_in_gj_on_mbus_is_its_own_channel():
    r = _read(_edit("0-1:24.1.0(003)", "0-2:24.1.0(004)\n0-2:24.2.1(101209112500W)(240.860*GJ)\n"
                                       "0-1:24.1.0(003)"))
    _assert_rest_intact(r)
    heat = next(c for c in r.mbus if c.channel == 2)
    assert (heat.device_type, heat.value, heat.unit) == ("heat", 240.86, "GJ")


@pytest.mark.parametrize(("line", "tariff"), [("0-0:96.14.0(T1)", 1), ("0-0:96.14.0(TARIFF 1)", 1),
                                              ("0-0:96.14.0(5432)", 2)])
def test_tariff_as_text(line, tariff):
    r = _read(_edit("0-0:96.14.0(0002)", line))
    _assert_rest_intact(r)
    assert r.tariff == tariff and r.warnings == ()


def test_breaker_as_text_and_unreadable_text_drop_only_their_object():
    r = _read(_edit("0-0:96.14.0(0002)", "0-0:96.14.0(0002)\n0-0:96.3.10(ON)"))
    assert r.extra["breaker_state"] == 1.0 and r.warnings == ()
    r = _read(_edit("0-0:96.14.0(0002)", "0-0:96.14.0(PEAK)"))
    _assert_rest_intact(r)
    assert r.tariff is None and "tariff" in r.warnings[0]


def test_value_before_time_in_the_monthly_peak():
    r = _read(_edit("0-0:96.14.0(0002)", "0-0:96.14.0(0002)\n1-0:1.6.0(02.589*kW)(101209110000W)"))
    _assert_rest_intact(r)
    assert r.extra["max_demand_month_w"] == 2589.0 and r.warnings == ()
    assert r.extra["max_demand_month_ts_s"] == METER_TS_S - 30 * 60 - 20


def test_empty_mbus_lines_are_empty_channels_not_warnings():
    empty = "".join(f"0-{n}:24.1.0()\n0-{n}:96.1.0()\n0-{n}:24.2.1(0)\n" for n in (2, 3, 4))
    r = _read(_edit("0-1:24.1.0(003)", empty + "0-1:24.1.0(003)"))
    _assert_rest_intact(r)
    assert [c.channel for c in r.mbus] == [1] and r.warnings == ()


def test_cosem_hex_clock():
    r = _read(_edit("0-0:1.0.0(101209113020W)", "0-0:1.0.0(07DA0C09040B1E1400FFC400)"))
    _assert_rest_intact(r)  # 2010-12-09 11:30:20 local, deviation -60 min


def test_lower_case_dst_flag():
    r = _read(_edit("0-0:1.0.0(101209113020W)", "0-0:1.0.0(101209113020w)"))
    _assert_rest_intact(r)
    assert r.warnings == ()


def test_obis_with_a_255_billing_suffix():
    body = DSMR5_BODY.replace("1-0:1.7.0(", "1-0:1.7.0*255(").replace("1-0:1.8.1(", "1-0:1.8.1*255(")
    r = _read(with_crc(body))
    _assert_rest_intact(r)
    assert r.warnings == ()


def test_crc_with_fewer_than_four_hex_digits():
    framed = with_crc(DSMR5_BODY)
    crc = int(framed[-6:-2], 16)
    # find a body variant whose CRC has a leading zero, as the meter in the report wrote it
    for i in range(4000):
        framed = with_crc(DSMR5_BODY.replace("(303132333435363738393A3B3C3D3E3F)", f"({i:04X})"))
        crc = int(framed[-6:-2], 16)
        if crc < 0x1000:
            break
    short = framed[:-6] + f"{crc:X}".encode() + b"\r\n"
    assert len(short) < len(framed)
    frames = list(TelegramFramer(FramerConfig(crc="required")).feed(short))
    assert frames == [short]
    _assert_rest_intact(_read(frames[0]))
    broken = short[:-3] + b"\r\n"  # one hex digit lost: the CRC no longer matches
    assert not isinstance(next(iter(TelegramFramer(FramerConfig(crc="required")).feed(broken))), bytes)


def test_malformed_line_and_garbage_line_drop_only_themselves():
    r = _read(_edit("1-0:52.7.0(220.2*V)", "1-0:52.7.0(220.2*V"))
    assert r.phases[1].voltage_v is None and "malformed" in r.warnings[0]
    r = _read(_edit("1-0:52.7.0(220.2*V)", "#~ line noise ~#"))
    assert r.phases[1].voltage_v is None and "unreadable line" in r.warnings[0]
    assert r.power_w == pytest.approx(1193.0)


def test_an_unreadable_delivered_line_makes_net_power_unknown_not_wrong():
    r = _read(_edit("1-0:1.7.0(01.193*kW)", "1-0:1.7.0(01.1x3*kW)"))
    assert r.power_w is None  # not 0 - returned
    _assert_rest_intact(r, power=False)
    r = _read(_edit("1-0:1.8.2(123456.789*kWh)", "1-0:1.8.2(ERROR)"))
    assert r.import_wh is None and r.import_tariff_wh == (123456789.0, None)
    _assert_rest_intact(r, energy=False)


def test_conflicting_duplicates_drop_the_object_identical_ones_do_not():
    r = _read(_edit("1-0:1.7.0(01.193*kW)", "1-0:1.7.0(01.193*kW)\n1-0:1.7.0(01.193*kW)"))
    assert r.power_w == pytest.approx(1193.0) and r.warnings == ()
    r = _read(_edit("1-0:1.7.0(01.193*kW)", "1-0:1.7.0(01.193*kW)\n1-0:1.7.0(09.999*kW)"))
    assert r.power_w is None and "conflicting" in r.warnings[0]


def test_telegram_is_dropped_when_no_core_register_is_usable():
    body = "\n".join(line for line in DSMR5_BODY.splitlines()
                     if not line.startswith(("1-0:1.8", "1-0:1.7.0", "0-1:24.2.1")))
    with pytest.raises(ParseError, match="no usable"):
        parse_telegram(with_crc(body))


def test_the_source_counts_dropped_objects_and_frames():
    source = DsmrSource(DsmrConfig(port="-", version="5"))
    data = _edit("0-0:96.14.0(0002)", "0-0:96.14.0(PEAK)") * 3 + with_crc(DSMR5_BODY)
    readings = source.feed(data, METER_TS_S)
    assert len(readings) == 4 and source.stats.frames_corrupt == 0
    assert (source.stats.frames_partial, source.stats.objects_dropped) == (3, 3)
    assert "PEAK" in source.stats.last_warning
