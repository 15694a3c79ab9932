"""A user's own CSV/Parquet: units, separators, decimal commas, registers, repeated rows, offsets, notes. Fixture files in the real formats; malformed lines are named file:line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from edge.data import loaders as L

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def _utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


def test_generic_csv_parquet_power_and_energy():
    kitchen, garage = sorted(L.load_generic(FIX / "generic" / "meters.csv"), key=lambda s: s.meter_id)[::-1]
    assert kitchen.meter_id == "kitchen" and kitchen.power_w[3] == 130
    assert kitchen.ts_s[0] == _utc(2024, 3, 1) and kitchen.resolution_s == 300
    m1, m2 = L.load_generic(FIX / "generic" / "energy.parquet")
    assert m1.meter_id == "m1"
    np.testing.assert_allclose(m1.power_w, [500, 250, 1000, np.nan, 125, 750])  # Wh per hour = W
    with pytest.raises(L.LoaderError, match=r"bad\.csv:5: power_w '12O'"):
        L.load_generic(FIX / "generic" / "bad.csv")


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
