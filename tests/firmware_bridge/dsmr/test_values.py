import datetime as dt

import pytest

from firmware_bridge.dsmr.obis import ENERGY, LIMIT
from firmware_bridge.dsmr.values import (
    decode_hex_text,
    dsmr_year,
    parse_breaker,
    parse_quantity,
    parse_tariff,
    parse_timestamp,
)
from firmware_bridge.errors import ParseError


def _utc(*args) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(("yy", "year"), [(0, 2000), (24, 2024), (69, 2069), (70, 1970), (99, 1999)])
def test_two_digit_years_follow_the_dsmr_rule(yy, year):
    assert dsmr_year(yy) == year


def test_lower_case_dst_flags_are_read_like_upper_case():
    assert parse_timestamp("230701120000s") == parse_timestamp("230701120000S")
    assert parse_timestamp("231201120000w").ts_s == _utc(2023, 12, 1, 11, 0, 0)


def test_cosem_hex_date_time_uses_its_deviation_and_status():
    # 2024-06-28 10:43:43 local, deviation -120 min (CEST), status 0x80 = summer time
    t = parse_timestamp("07E8061C050A2B2B00FF8880")
    assert t.ts_s == _utc(2024, 6, 28, 8, 43, 43) and t.dst
    # deviation "not specified" (0x8000): the CET/CEST offset from the status bit
    t = parse_timestamp("07E8010F010C000000800000")
    assert t.ts_s == _utc(2024, 1, 15, 11, 0, 0) and not t.dst


@pytest.mark.parametrize("bad", ["632525252525W", "000000000000W", "2401011200W", "07E80D01FF0C000000FF8880",
                                 "abcdefabcdef", ""])
def test_impossible_times_raise(bad):
    with pytest.raises(ParseError):
        parse_timestamp(bad)


def test_quantities_take_only_their_units_and_name_the_suffix():
    assert parse_quantity("000557.193*kWh", ENERGY) == (557193.0, "wh")
    assert parse_quantity("27.600*kVA", LIMIT) == (27600.0, "va")
    assert parse_quantity("016*A", LIMIT) == (16.0, "a")
    with pytest.raises(ParseError, match="unit 'GJ'"):
        parse_quantity("240.860*GJ", ENERGY)
    with pytest.raises(ParseError, match="no unit"):
        parse_quantity("00000000", ENERGY)
    for bad in ("nan*kWh", "1e5*kWh", "ON*kWh", "*kWh"):
        with pytest.raises(ParseError):
            parse_quantity(bad, ENERGY)


@pytest.mark.parametrize(("text", "tariff"), [("0002", 2), ("1", 1), ("5431", 1), ("T2", 2),
                                              ("TARIFF 1", 1), ("5441524946462032", 2)])
def test_tariff_in_every_form_seen(text, tariff):
    assert parse_tariff(text) == tariff


@pytest.mark.parametrize("bad", ["", "XX", "0010", "T"])
def test_unreadable_tariff_raises(bad):
    with pytest.raises(ParseError):
        parse_tariff(bad)


def test_breaker_numbers_and_words():
    assert [parse_breaker(t) for t in ("1", "0", "2", "ON", "off", "4F4E")] == [1, 0, 2, 1, 0, 1]
    with pytest.raises(ParseError):
        parse_breaker("MAYBE")


def test_hex_text_falls_back_to_plain_text():
    assert decode_hex_text("4B384547") == "K8EG"
    assert decode_hex_text("1ESY1313002565") == "1ESY1313002565"  # not hex
    assert decode_hex_text("0001") == "0001"  # hex, but not printable text
