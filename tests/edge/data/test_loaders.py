"""Loaders parse fixture files in the real formats and reject malformed lines naming file:line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from edge.data import loaders as L

FIX = Path(__file__).resolve().parent / "fixtures"


def _utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


def test_cer_parses_meters_days_and_dst_half_hours():
    series = L.load_cer(FIX / "cer" / "File1.txt")
    assert [s.meter_id for s in series] == ["1392", "1951"]
    s = series[0]
    assert len(s) == 2 * 48 + 4 and s.source == "cer" and s.resolution_s == 1800
    # day 195 = 2009-07-14, Irish summer time: local midnight is 23:00 UTC the day before
    assert s.ts_s[0] == _utc(2009, 7, 13, 23, 0)
    assert np.all(np.diff(s.ts_s) > 0)
    # day 298 = 2009-10-25: 50 half-hours; half-hour 50 starts at 23:30 GMT (local midnight was IST)
    assert s.ts_s[-1] == _utc(2009, 10, 24, 23) + 49 * 1800 == _utc(2009, 10, 25, 23, 30)
    first_line = next(ln for ln in (FIX / "cer" / "File1.txt").read_text().splitlines() if ln.startswith("1392 19501 "))
    assert s.power_w[0] == pytest.approx(float(first_line.split()[2]) * 2000)


def test_cer_rejects_bad_value_naming_file_and_line():
    with pytest.raises(L.LoaderError, match=r"File_bad\.txt:5: kWh '0\.2x1'"):
        L.load_cer(FIX / "cer" / "File_bad.txt")


def test_lcl_parses_meters_nulls_and_london_time():
    series = L.load_lcl(FIX / "lcl" / "LCL-June2015v2_0.csv")
    assert [s.meter_id for s in series] == ["MAC000002", "MAC000246"]
    a, b = series
    assert a.ts_s[0] == _utc(2012, 10, 11, 23, 30)  # 00:30 BST
    assert a.power_w[0] == pytest.approx(0.314 * 2000)
    assert np.isnan(b.power_w[10]) and np.isfinite(b.power_w[[9, 11]]).all()
    assert b.extra["tariff"] == "ToU" and len(a) == 96


def test_lcl_rejects_short_line():
    with pytest.raises(L.LoaderError, match=r"LCL_bad\.csv:8: expected at least 4 columns"):
        L.load_lcl(FIX / "lcl" / "LCL_bad.csv")


def test_redd_sums_mains_and_bins_channels():
    s = L.load_redd_house(FIX / "redd" / "house_1", resolution_s=60)
    assert s.source == "redd" and s.resolution_s == 60
    assert set(s.appliances) == {"oven", "refrigerator", "lighting"}
    t1, p1 = L.read_channel(FIX / "redd" / "house_1" / "channel_1.dat")
    t2, p2 = L.read_channel(FIX / "redd" / "house_1" / "channel_2.dat")
    first = s.ts_s[0]
    expect = p1[(t1 >= first) & (t1 < first + 60)].mean() + p2[(t2 >= first) & (t2 < first + 60)].mean()
    assert s.power_w[0] == pytest.approx(expect)
    t5, p5 = L.read_channel(FIX / "redd" / "house_1" / "channel_5.dat")
    t6, p6 = L.read_channel(FIX / "redd" / "house_1" / "channel_6.dat")
    lit = p5[(t5 >= first) & (t5 < first + 60)].mean() + p6[(t6 >= first) & (t6 < first + 60)].mean()
    assert s.appliances["lighting"][0] == pytest.approx(lit)
    assert s.appliances["oven"].max() > 1900


def test_redd_rejects_bad_power_line():
    with pytest.raises(L.LoaderError, match=r"channel_1\.dat:3: power 'oops'"):
        L.load_redd_house(FIX / "redd" / "bad_house")


def test_ukdale_aggregate_and_appliances():
    s = L.load_ukdale_house(FIX / "ukdale" / "house_1", resolution_s=30)
    assert set(s.appliances) == {"boiler", "kettle", "fridge"}
    assert s.resolution_s == 30 and np.isfinite(s.power_w).mean() > 0.9
    assert s.meter_id == "ukdale_house_1"


def test_pjm_data_miner_and_zone_files():
    areas = L.load_pjm(FIX / "pjm" / "hrl_load_metered.csv")
    assert [s.meter_id for s in areas] == ["AECO", "BC"]
    assert areas[0].ts_s[0] == _utc(2024, 1, 1, 5) and areas[0].resolution_s == 3600
    assert areas[0].power_w[0] == pytest.approx(2571.006e6)
    (aep,) = L.load_pjm(FIX / "pjm" / "AEP_hourly.csv")
    assert aep.meter_id == "AEP" and aep.ts_s[0] == _utc(2004, 12, 31, 6)  # 01:00 EST
    with pytest.raises(L.LoaderError, match=r"AEP_bad\.csv:6: expected 2 columns"):
        L.load_pjm(FIX / "pjm" / "AEP_bad.csv")


def test_generic_csv_parquet_power_and_energy():
    kitchen, garage = sorted(L.load_generic(FIX / "generic" / "meters.csv"), key=lambda s: s.meter_id)[::-1]
    assert kitchen.meter_id == "kitchen" and kitchen.power_w[3] == 130
    assert kitchen.ts_s[0] == _utc(2024, 3, 1) and kitchen.resolution_s == 300
    m1, m2 = L.load_generic(FIX / "generic" / "energy.parquet")
    assert m1.meter_id == "m1"
    np.testing.assert_allclose(m1.power_w, [500, 250, 1000, np.nan, 125, 750])  # Wh per hour = W
    with pytest.raises(L.LoaderError, match=r"bad\.csv:5: power_w '12O'"):
        L.load_generic(FIX / "generic" / "bad.csv")


def test_missing_file_and_unknown_format_are_loader_errors(tmp_path):
    with pytest.raises(L.LoaderError, match="cannot read"):
        L.load_cer(tmp_path / "nope.txt")
    with pytest.raises(L.LoaderError, match="unknown format"):
        L.load(tmp_path, "xml")
    (tmp_path / "x.csv").write_text("when,value\n1,2\n")
    with pytest.raises(L.LoaderError, match=r"x\.csv:1: missing the time column"):
        L.load_generic(tmp_path / "x.csv")


def test_cer_fast_and_line_parsers_agree(tmp_path):
    import zoneinfo

    fast = L._load_cer_fast(FIX / "cer" / "File1.txt", zoneinfo.ZoneInfo("Europe/Dublin"))
    slow = L._load_cer_lines(FIX / "cer" / "File1.txt", zoneinfo.ZoneInfo("Europe/Dublin"))
    assert fast is not None and [s.meter_id for s in fast] == [s.meter_id for s in slow]
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a.ts_s, b.ts_s)
        np.testing.assert_allclose(a.power_w, b.power_w)
    # a bad half-hour code passes pyarrow's parsing but not the fast path's checks: the line parser names it
    bad = tmp_path / "File9.txt"
    bad.write_text("1000 19501 0.5\n1000 19551 0.5\n")
    with pytest.raises(L.LoaderError, match=r"File9\.txt:2: day code 19551"):
        L.load_cer(bad)


def test_lcl_halfhourly_block_variant():
    a, b = L.load_lcl(FIX / "lcl" / "block_0.csv")
    assert (a.meter_id, b.meter_id) == ("MAC000002", "MAC000003")
    np.testing.assert_array_equal(a.power_w[:2], [0.0, 500.0])
    assert np.isnan(a.power_w[2]) and b.power_w[0] == 1000.0


def test_home_assistant_history_power_and_energy():
    energy, power = L.load_home_assistant(FIX / "homeassistant" / "history.csv", resolution_s=60)
    assert power.meter_id == "sensor.house_power" and power.extra["kind"] == "power"
    assert power.ts_s[0] == _utc(2024, 1, 1) and power.resolution_s == 60
    # minute 0: 400 W for 30 s then 1000 W for 30 s -> 700 W; minute 1: 1000 W
    np.testing.assert_allclose(power.power_w[:2], [700.0, 1000.0])
    assert np.isnan(power.power_w[2]) and np.isnan(power.power_w[3])  # unavailable
    np.testing.assert_allclose(power.power_w[4], 250.5)
    # minute 5: 250.5 W for 15 s, then 300 W for 45 s (held to the end of the grid)
    np.testing.assert_allclose(power.power_w[5], (250.5 * 15 + 300 * 45) / 60)
    # energy: 10 Wh in the first minute = 600 W, 20 Wh in the second = 1200 W, reset -> NaN
    assert energy.extra["kind"] == "energy_kwh"
    np.testing.assert_allclose(energy.power_w[:3], [600.0, 1200.0, 1200.0])
    assert np.isnan(energy.power_w[3])
    np.testing.assert_allclose(energy.power_w[4], 480.0)


def test_home_assistant_rejects_bad_lines(tmp_path):
    text = (FIX / "homeassistant" / "history.csv").read_text().splitlines()
    text[3] = "sensor.house_power,12,5kW,2024-01-01T00:02:00.000Z"
    p = tmp_path / "ha.csv"
    p.write_text("\n".join(text) + "\n")
    with pytest.raises(L.LoaderError, match=r"ha\.csv:4: bad timestamp '5kW'"):
        L.load_home_assistant(p)
    text[3] = "sensor.house_power,lots,2024-01-01T00:02:00.000Z"
    p.write_text("\n".join(text) + "\n")
    with pytest.raises(L.LoaderError, match=r"ha\.csv:4: state 'lots' is not a number"):
        L.load_home_assistant(p)


def test_generic_csv_separated_by_semicolons_with_decimal_commas(tmp_path, caplog):
    """A European export (Excel, utility portals): ``;`` between fields, ``,`` before the decimals."""
    path = tmp_path / "house.csv"
    path.write_text("timestamp;power_kw;temperature_c\n"
                    "2024-03-01 00:00:00+01:00;0,5;-1,5\n"
                    "2024-03-01 00:30:00+01:00;1,25;2\n"
                    "2024-03-01 01:00:00+01:00;;3,0\n")
    with caplog.at_level("WARNING"):
        (s,) = L.load_generic(path)
    assert "';'-separated; numbers with a decimal comma (1,5) are read as 1.5" in caplog.text
    np.testing.assert_allclose(s.power_w, [500, 1250, np.nan])
    np.testing.assert_allclose(s.temperature_c, [-1.5, 2, 3])
    assert s.ts_s[0] == _utc(2024, 2, 29, 23) and s.resolution_s == 1800
    tabbed = tmp_path / "tabbed.csv"
    tabbed.write_text("timestamp\tpower_w\n2024-03-01T00:00:00Z\t1,5\n2024-03-01T00:30:00Z\t2\n")
    np.testing.assert_allclose(L.load_generic(tabbed)[0].power_w, [1.5, 2])
    # a comma-separated file keeps its meaning: "1,5" there is two fields
    (tmp_path / "c.csv").write_text("timestamp,power_w\n2024-03-01T00:00:00Z,1,5\n")
    with pytest.raises(L.LoaderError, match=r"c\.csv:2: expected 2 columns, got 3"):
        L.load_generic(tmp_path / "c.csv")


def test_generic_energy_register_and_duplicated_rows(tmp_path, caplog):
    """A meter-reading export: a kWh register (not energy per interval), a row repeated, one missing."""
    path = tmp_path / "register.csv"
    path.write_text("timestamp,energy_kwh\n"
                    "2024-03-01T00:00:00Z,12345.000\n"
                    "2024-03-01T00:30:00Z,12345.250\n"
                    "2024-03-01T00:30:00Z,12345.250\n"
                    "2024-03-01T01:00:00Z,12345.750\n"
                    "2024-03-01T02:00:00Z,12346.750\n"
                    "2024-03-01T02:30:00Z,12347.000\n")
    with caplog.at_level("WARNING"):
        (s,) = L.load_generic(path)
    assert "1 duplicated row(s) dropped" in caplog.text and "cumulative meter counter" in caplog.text
    assert s.extra["counter"] and s.resolution_s == 1800
    np.testing.assert_array_equal(s.ts_s - s.ts_s[0], [0, 1800, 3600, 7200, 9000])
    np.testing.assert_allclose(s.power_w, [500, 1000, 1000, 500, np.nan])  # kWh over each interval -> W
    # energy per interval stays what it was: it goes up and down
    (tmp_path / "interval.csv").write_text("timestamp,energy_wh\n2024-03-01T00:00:00Z,250\n"
                                           "2024-03-01T00:30:00Z,500\n2024-03-01T01:00:00Z,250\n")
    np.testing.assert_allclose(L.load_generic(tmp_path / "interval.csv")[0].power_w, [500, 1000, 500])
    # a repeated timestamp whose energies disagree is refused, naming when and what to do
    path.write_text("timestamp,energy_wh\n2024-03-01T00:00:00Z,250\n2024-03-01T00:00:00Z,300\n"
                    "2024-03-01T00:30:00Z,200\n")
    with pytest.raises(L.LoaderError, match=r"1 timestamp\(s\) repeated with different values, the first at "
                                            r"2024-03-01T00:00:00\+00:00.*keep one row per timestamp"):
        L.load_generic(path)
    # local times read without a zone: the autumn hour repeats, and the error says to give --tz
    path.write_text("timestamp,energy_wh\n2023-10-29 02:00,250\n2023-10-29 02:30,300\n2023-10-29 02:00,200\n"
                    "2023-10-29 02:30,210\n2023-10-29 03:00,220\n")
    with pytest.raises(L.LoaderError, match=r"repeated with different values.*give --tz"):
        L.load_generic(path)
    assert len(L.load_generic(path, tz="Europe/Amsterdam")[0].ts_s) == 5
    path.write_text("timestamp;power_w\n31.03.2024 02:30;1,5\n")
    with pytest.raises(L.LoaderError, match=r"bad timestamp '31.03.2024 02:30' .*--time-format"):
        L.load_generic(path)
    path.write_text("timestamp;Zählerstand (kWh)\n2024-03-01 00:00;1,5\n")
    with pytest.raises(L.LoaderError, match=r"missing the value column.*--value-column.*--unit"):
        L.load_generic(path)


def test_a_misspelt_time_zone_is_a_loader_error_with_suggestions(tmp_path):
    path = tmp_path / "house.csv"
    path.write_text("timestamp,power_w\n2024-03-01 00:00,500\n")
    with pytest.raises(L.LoaderError, match=r"unknown time zone 'Europe/Amsterdm'.*did you mean Europe/Amsterdam"):
        L.load(path, "generic", tz="Europe/Amsterdm")
    with pytest.raises(L.LoaderError, match=r"unknown time zone '../etc'"):
        L.load(path, "generic", tz="../etc")
    assert len(L.load(path, "generic", tz="Europe/Amsterdam")[0].ts_s) == 1


def test_generic_time_column_by_name(tmp_path):
    """A time column under another name (a German export's ``Zeitstempel``) is named, or the error says how."""
    path = tmp_path / "de.csv"
    path.write_text("Zeitstempel;energy_kwh\n2024-03-01 00:00;0,25\n2024-03-01 00:30;0,5\n")
    with pytest.raises(L.LoaderError, match=r"missing the time column \(one of timestamp.*--time-column\)"):
        L.load_generic(path)
    (s,) = L.load_generic(path, time_column="zeitstempel")
    assert s.ts_s[0] == _utc(2024, 3, 1) and s.resolution_s == 1800
    np.testing.assert_allclose(s.power_w, [500, 1000])
    with pytest.raises(L.LoaderError, match=r"missing the time column 'Zeit'"):
        L.load(path, "generic", time_column="Zeit")


def test_generic_utc_offset_column_places_the_repeated_autumn_hour(tmp_path):
    """``timestamp;utc_offset``: naive local times with their offset; the repeated hour is two hours."""
    path = tmp_path / "offsets.csv"
    rows = [("2023-10-29 01:30", "+0200"), ("2023-10-29 02:00", "+02:00"), ("2023-10-29 02:30", "120"),
            ("2023-10-29 02:00", "+01:00"), ("2023-10-29 02:30", "+0100"), ("2023-10-29 03:00", "60")]
    path.write_text("timestamp;utc_offset;power_w\n" + "".join(f"{t};{o};{i}00\n" for i, (t, o) in enumerate(rows)))
    (s,) = L.load_generic(path, tz="Europe/Amsterdam")
    np.testing.assert_array_equal(s.ts_s - _utc(2023, 10, 28, 23, 30), 1800 * np.arange(6))
    np.testing.assert_allclose(s.power_w, [0, 100, 200, 300, 400, 500])  # nothing averaged, nothing dropped
    assert any("placed by the column 'utc_offset'" in n for n in s.extra["notes"])
    assert L.parse_utc_offset(path, 2, "-05:30") == -(5 * 3600 + 1800) and L.parse_utc_offset(path, 2, "Z") == 0
    with pytest.raises(L.LoaderError, match=r"offsets\.csv:3: bad UTC offset 'CET'"):
        L.parse_utc_offset(path, 3, "CET")


def test_generic_notes_say_what_the_loader_did(tmp_path):
    """Separator, counter, dropped duplicates and missing intervals are kept as notes, not only logged."""
    path = tmp_path / "register.csv"
    path.write_text("timestamp;energy_kwh\n2024-03-01T00:00:00Z;12345,0\n2024-03-01T00:30:00Z;12345,25\n"
                    "2024-03-01T00:30:00Z;12345,25\n2024-03-01T02:00:00Z;12346,75\n2024-03-01T02:30:00Z;12347,0\n"
                    "2024-03-01T03:00:00Z;12347,5\n")
    (s,) = L.load_generic(path)
    notes = "\n".join(s.extra["notes"])
    assert "';'-separated" in notes and "cumulative meter counter" in notes
    assert "1 duplicated row(s) dropped" in notes
    assert "2 of 7 intervals of 1800 s missing" in notes
