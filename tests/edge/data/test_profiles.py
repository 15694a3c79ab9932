"""User files -> daily profiles: clock changes, units, resolutions, gaps, optional temperature."""

from __future__ import annotations

import datetime as dt
import json
import logging
import zoneinfo

import numpy as np
import pytest

from edge.cli import main
from edge.data import loaders as L
from edge.data.labels import label_profiles, load_labels
from edge.data.profiles import ProfileError, choose_resolution, to_profiles
from edge.data.shards import iter_profile_batches, read_manifest
from edge.features import CovariateSpec
from tests.edge.data import userfiles as U

TZ = "Europe/London"


@pytest.fixture(scope="module")
def spring():
    """15-min household across the 2024-03-31 clock change (Europe/London)."""
    return U.household(days=14, resolution_s=900, tz=TZ, start="2024-03-25")


@pytest.fixture(scope="module")
def autumn():
    return U.household(days=7, resolution_s=900, tz=TZ, start="2024-10-24")


def _local_day_means(trace, tz, date: str, res: int) -> np.ndarray:
    """Slot means of the trace for one local date, computed the slow obvious way."""
    zone = zoneinfo.ZoneInfo(tz)
    out = np.full(86400 // res, np.nan)
    sums: dict[int, list[float]] = {}
    for t, p in zip(trace.ts_s, trace.power_w, strict=True):
        local = dt.datetime.fromtimestamp(int(t), zone)
        if local.date().isoformat() == date:
            sums.setdefault((local.hour * 3600 + local.minute * 60) // res, []).append(float(p))
    for k, v in sums.items():
        out[k] = np.mean(v)
    return out


def test_naive_local_times_across_spring_forward(tmp_path, spring):
    path = U.write_generic(tmp_path / "spring.csv", spring, unit="kW", tz=TZ)
    (s,) = L.load_generic(path, tz=TZ)
    np.testing.assert_array_equal(s.ts_s, spring.ts_s)  # every local time back to its UTC instant
    np.testing.assert_allclose(s.power_w, spring.power_w, rtol=1e-5)  # kW -> W
    prof = to_profiles(s, TZ)
    assert prof.resolution_s == 900 and prof.load_w.shape[1] == 96
    row = int(np.flatnonzero(prof.dates == np.datetime64("2024-03-31"))[0])
    assert np.flatnonzero(np.isnan(prof.load_w[row])).tolist() == [4, 5, 6, 7]  # 01:00-02:00 never happened
    np.testing.assert_allclose(prof.load_w[row], _local_day_means(spring, TZ, "2024-03-31", 900), rtol=1e-5)
    assert any("2024-03-31 has 23 h" in n for n in prof.notes)


def test_naive_local_times_across_fall_back(tmp_path, autumn):
    path = U.write_generic(tmp_path / "autumn.csv", autumn, tz=TZ)
    (s,) = L.load_generic(path, tz=TZ)
    np.testing.assert_array_equal(s.ts_s, autumn.ts_s)  # the repeated hour: first BST, then GMT
    prof = to_profiles(s, TZ)
    row = int(np.flatnonzero(prof.dates == np.datetime64("2024-10-27"))[0])
    expect = _local_day_means(autumn, TZ, "2024-10-27", 900)  # 01:00-02:00: mean of both occurrences
    np.testing.assert_allclose(prof.load_w[row], expect, rtol=1e-5)
    assert np.isfinite(prof.load_w[row]).all() and any("25 h" in n for n in prof.notes)


def test_nonexistent_local_time_is_an_error_naming_the_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("timestamp,power_w\n2024-03-31T00:45:00,100\n2024-03-31T01:00:00,100\n")
    with pytest.raises(L.LoaderError, match=r"bad\.csv:3: 2024-03-31T01:00:00 does not exist"):
        L.load_generic(p, tz=TZ)


def test_units_by_column_name_or_given_and_implausible_w_is_logged(tmp_path, spring, caplog):
    kw = U.write_generic(tmp_path / "kw.csv", spring, unit="kW", tz=None)
    (a,) = L.load_generic(kw)
    (w,) = L.load_generic(U.write_generic(tmp_path / "w.csv", spring, unit="W", tz=None))
    np.testing.assert_allclose(a.power_w, w.power_w, rtol=1e-5)
    plain = tmp_path / "plain.csv"
    plain.write_text(kw.read_text().replace("power_kw", "value"))
    (b,) = L.load_generic(plain, unit="kW")
    np.testing.assert_allclose(b.power_w, w.power_w, rtol=1e-5)
    with pytest.raises(L.LoaderError, match="does not say its unit"):
        L.load_generic(plain)
    with pytest.raises(L.LoaderError, match="contradicts unit 'W'"):
        L.load_generic(kw, unit="W")
    mislabelled = tmp_path / "mislabelled.csv"
    mislabelled.write_text(kw.read_text().replace("power_kw", "power_w"))
    with caplog.at_level(logging.WARNING, logger="edge.data.loaders"):
        L.load_generic(mislabelled)
    assert "looks like kW" in caplog.text


@pytest.mark.parametrize("every,res,points", [(1, 900, 96), (2, 1800, 48), (4, 3600, 24)])
def test_15min_30min_and_hourly_files_keep_their_resolution(tmp_path, spring, every, res, points):
    (s,) = L.load_generic(U.write_generic(tmp_path / "f.csv", spring, every=every, tz=TZ), tz=TZ)
    prof = to_profiles(s, TZ)
    assert (prof.resolution_s, prof.load_w.shape[1], prof.notes[:1]) == (res, points, prof.notes[:1])
    assert not any("resampled" in n or "spread" in n for n in prof.notes)
    day = _local_day_means(spring, TZ, "2024-03-27", 900).reshape(points, -1).mean(axis=1)
    row = int(np.flatnonzero(prof.dates == np.datetime64("2024-03-27"))[0])
    np.testing.assert_allclose(prof.load_w[row], day, rtol=1e-4)


def test_resolution_choice_is_explicit():
    assert choose_resolution(900) == (900, "")
    assert choose_resolution(60)[0] == 1800 and "resampled 60 s -> 1800 s" in choose_resolution(60)[1]
    assert choose_resolution(60, 900)[0] == 900
    assert "spread" in choose_resolution(3600, 1800)[1]
    with pytest.raises(ProfileError, match="7200 s"):
        choose_resolution(7200)
    with pytest.raises(ProfileError, match="600 s is not one of"):
        choose_resolution(60, 600)


def test_gaps_missing_rows_and_blank_cells_become_missing_slots(tmp_path, spring):
    path = U.write_generic(tmp_path / "gaps.csv", spring, tz=TZ, gaps=[slice(96 * 2 + 8, 96 * 2 + 20)],
                           blank=[96 * 4 + 40])
    (s,) = L.load_generic(path, tz=TZ)
    prof = to_profiles(s, TZ)
    assert np.flatnonzero(np.isnan(prof.load_w[2])).tolist() == list(range(8, 20))
    assert np.flatnonzero(np.isnan(prof.load_w[4])).tolist() == [40]


def test_temperature_column_is_optional(tmp_path, spring):
    (without,) = L.load_generic(U.write_generic(tmp_path / "a.csv", spring, tz=TZ), tz=TZ)
    (with_t,) = L.load_generic(U.write_generic(tmp_path / "b.csv", spring, tz=TZ, temperature=True), tz=TZ)
    assert without.temperature_c is None and not to_profiles(without, TZ).has_temperature
    prof = to_profiles(with_t, TZ)
    assert prof.has_temperature and np.isfinite(prof.temperature_c[1]).all()
    np.testing.assert_allclose(with_t.temperature_c, spring.temperature_c, atol=0.006)


def test_home_assistant_export_power_gaps_and_temperature_entity(tmp_path):
    trace = U.household(days=3, resolution_s=60, tz=TZ, start="2024-05-01")
    path = U.write_home_assistant(tmp_path / "history.csv", trace, unavailable=[slice(600, 660)])
    (s,) = L.load_home_assistant(path, resolution_s=60)
    assert s.meter_id == "sensor.house_power" and s.extra["temperature_entity"] == "sensor.outdoor_temperature"
    ok = np.isfinite(s.power_w)
    np.testing.assert_allclose(s.power_w[ok], np.round(trace.power_w[: len(s)][ok]), atol=0.5)
    assert np.isnan(s.power_w[600:660]).all() and np.isfinite(s.temperature_c).mean() > 0.95
    prof = to_profiles(s, TZ)
    assert prof.resolution_s == 1800 and "resampled 60 s -> 1800 s" in prof.notes[0]
    assert prof.has_temperature
    (kw,) = L.load_home_assistant(path, resolution_s=60, unit="kW", temperature_entity=None)
    np.testing.assert_allclose(kw.power_w[ok], 1000 * s.power_w[ok])
    assert kw.temperature_c is None
    with pytest.raises(L.LoaderError, match="no entity 'sensor.nope'"):
        L.load_home_assistant(path, entity="sensor.nope")


def test_missing_required_columns_are_named(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("timestamp,temperature_c\n2024-01-01T00:00:00Z,4\n")
    with pytest.raises(L.LoaderError, match=r"m\.csv:1: missing the value column"):
        L.load_generic(p)
    with pytest.raises(L.LoaderError, match="missing the value column 'kwh_in'"):
        L.load_generic(p, value_column="kwh_in")
    with pytest.raises(L.LoaderError, match="format 'cer' takes no option unit"):
        L.load(p, "cer", unit="kW")


def test_labels_mark_the_slots_of_their_meter(tmp_path, spring):
    (s,) = L.load_generic(U.write_generic(tmp_path / "f.csv", spring, tz=TZ, meter_id="house"), tz=TZ)
    prof = to_profiles(s, TZ)
    path = U.write_labels(tmp_path / "labels.csv", [("2024-03-27T18:00:00", "2024-03-27T19:00:00")], "house")
    with open(path, "a") as f:
        f.write("2024-03-29,2024-03-30,,fault\n2024-03-28T00:00,2024-03-28T01:00,other,x\n")
    labels = load_labels(path, tz=TZ)
    assert [iv.meter_id for iv in labels] == ["house", None, "other"]
    points = label_profiles(labels, prof)
    by_date = {str(d): points[i] for i, d in enumerate(prof.dates)}
    assert np.flatnonzero(by_date["2024-03-27"]).tolist() == [72, 73, 74, 75]
    assert by_date["2024-03-29"].all() and not by_date["2024-03-28"].any()
    bad = tmp_path / "bad_labels.csv"
    bad.write_text("start,end\n2024-03-27T18:00,2024-03-27T17:00\n")
    with pytest.raises(L.LoaderError, match=r"bad_labels\.csv:2: end"):
        load_labels(bad)


def test_import_data_records_resolution_zone_and_holidays(tmp_path, spring, capsys):
    path = U.write_generic(tmp_path / "house.csv", spring, unit="kW", tz=TZ, every=4)
    out = tmp_path / "shards"
    assert main(["import-data", "generic", str(path), "--out", str(out), "--tz", TZ, "--country", "GB",
                 "--subdiv", "ENG", "--split", "train=1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["resolution_s"], summary["L"]) == (3600, 24)
    manifest = read_manifest(out)
    assert manifest["profiles"]["L"] == 24 and manifest["tz"] == TZ and manifest["country"] == "GB"
    assert any("23 h" in n for n in manifest["import_notes"]["house"])
    rows = next(iter_profile_batches(out, "train", batch_size=100))
    assert rows["load_w"].shape[1] == 24
    easter_monday = rows["is_holiday"][rows["date"] == np.datetime64("2024-04-01")]
    assert easter_monday.tolist() == [True]
    assert main(["import-data", "generic", str(path), "--out", str(tmp_path / "x"), "--resolution", "900",
                 "--tz", TZ]) == 0
    assert "spread each 3600 s sample over 4 slots" in capsys.readouterr().err


def test_holiday_callable_from_the_spec(spring):
    spec = CovariateSpec(tz=TZ, country="GB", subdiv="ENG")
    from edge.data.loaders import MeterSeries

    s = MeterSeries("m", spring.ts_s, spring.power_w.astype(float), resolution_s=900)
    prof = to_profiles(s, TZ, holidays=spec.is_holiday)
    assert prof.dates[prof.is_holiday].astype(str).tolist() == ["2024-03-29", "2024-04-01"]


def test_profiles_back_from_shards_keep_days_consecutive(tmp_path, spring):
    from edge.data.realdata import meter_profiles_from_shards

    path = U.write_generic(tmp_path / "house.csv", spring, tz=TZ, gaps=[slice(96 * 3, 96 * 4)])
    out = tmp_path / "shards"
    assert main(["import-data", "generic", str(path), "--out", str(out), "--tz", TZ, "--split", "train=1"]) == 0
    (s,) = L.load_generic(path, tz=TZ)
    direct = to_profiles(s, TZ)
    (back,) = meter_profiles_from_shards(out)
    assert back.resolution_s == 900 and back.tz == TZ and len(back.dates) == len(direct.dates)
    np.testing.assert_array_equal(back.load_w, direct.load_w)  # the missing day comes back as NaN
    assert np.isnan(back.load_w[3]).all()


def test_a_simulated_household_takes_the_same_road(spring):
    from edge.data.profiles import trace_series

    hourly = to_profiles(trace_series(spring), TZ, 3600)
    assert hourly.load_w.shape[1] == 24 and hourly.has_temperature and hourly.resolution_s == 3600
    assert "resampled 900 s -> 3600 s" in hourly.notes[0]


def test_unit_suffixed_column_and_a_time_format(tmp_path):
    p = tmp_path / "AEP_hourly.csv"
    p.write_text("Datetime,AEP_MW\n31/12/2004 01:00,13478\n31/12/2004 02:00,12865\n")
    (s,) = L.load_generic(p, tz="America/New_York", time_format="%d/%m/%Y %H:%M")
    assert s.power_w[0] == 13478e6 and s.extra["unit"] == "mw"
    assert s.ts_s[0] == int(dt.datetime(2004, 12, 31, 6, tzinfo=dt.UTC).timestamp())
    with pytest.raises(L.LoaderError, match=r"AEP_hourly\.csv:2: bad timestamp '31/12/2004 01:00' \(ISO 8601"):
        L.load_generic(p)


def test_import_data_keeps_the_loaders_notes_and_takes_a_time_column(tmp_path, capsys):
    """A ``;``-separated file with a ``Zeitstempel`` column: the loader's notes reach the manifest."""
    path = tmp_path / "de.csv"
    path.write_text("Zeitstempel;power_w\n" + "".join(f"2024-03-01T{h:02d}:{m:02d}:00Z;{h}00,5\n"
                                                     for h in range(6) for m in (0, 30) if (h, m) != (2, 30)))
    out = tmp_path / "shards"
    assert main(["import-data", "generic", str(path), "--out", str(out), "--time-column", "Zeitstempel",
                 "--split", "train=1"]) == 0
    notes = read_manifest(out)["import_notes"]["de"]
    assert any("';'-separated" in n for n in notes) and any("1 of 12 intervals of 1800 s missing" in n for n in notes)
    assert "de: 1 of 12 intervals" in capsys.readouterr().err
