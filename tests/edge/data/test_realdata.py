"""Real series -> daily profiles and NILM windows, and the import-data command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.data import loaders as L
from edge.data import realdata as R
from edge.data.shards import iter_nilm_batches, iter_profile_batches

FIX = Path(__file__).resolve().parent / "fixtures"


def test_cer_profiles_in_local_time():
    s = L.load_cer(FIX / "cer" / "File1.txt")[0]
    prof = R.series_to_profiles(s, tz="Europe/Dublin")
    assert str(prof.dates[0]) == "2009-07-14" and prof.weekday[0] == 1  # a Tuesday
    np.testing.assert_allclose(prof.load_w[0], s.power_w[:48], rtol=1e-6)  # half-hours 1..48 of day 195
    np.testing.assert_allclose(prof.load_w[1], s.power_w[48:96], rtol=1e-6)
    assert np.isnan(prof.temperature_c).all()


def test_hourly_pjm_stays_hourly_unless_a_spread_is_asked_and_lcl_nulls_stay_missing():
    (aep,) = L.load_pjm(FIX / "pjm" / "AEP_hourly.csv")
    prof = R.series_to_profiles(aep, tz="America/New_York")
    assert prof.resolution_s == 3600 and prof.load_w.shape[1] == 24 and prof.notes == []
    spread = R.series_to_profiles(aep, tz="America/New_York", resolution_s=1800)
    day = spread.load_w[0]
    finite = np.isfinite(day)
    assert finite.sum() >= 46 and np.all(day[finite][::2] == day[finite][1::2])
    assert "spread each 3600 s sample over 2 slots" in spread.notes[0]
    lcl = L.load_lcl(FIX / "lcl" / "LCL-June2015v2_0.csv")[1]
    p = R.series_to_profiles(lcl, tz="Europe/London")
    # the first day starts at 00:30 (slot 0 unobserved); the Null reading is 05:30 (slot 11)
    assert np.flatnonzero(np.isnan(p.load_w[0])).tolist() == [0, 11]
    assert np.isfinite(p.load_w[1]).all()


def test_nilm_windows_alias_dataset_labels():
    s = L.load_redd_house(FIX / "redd" / "house_1", resolution_s=30)
    w = R.series_nilm_windows(s, window=8)
    names = list(R.ALL_APPLIANCES)
    assert w["owned"][names.index("fridge")] and w["owned"][names.index("lighting")] and w["owned"][names.index("oven")]
    assert w["owned"].sum() == 3
    k = int(np.searchsorted(s.ts_s, w["start_ts_s"][0]))
    np.testing.assert_allclose(w["appliance_w"][0, names.index("lighting")],
                               np.nan_to_num(s.appliances["lighting"][k : k + 8]), rtol=1e-6)
    np.testing.assert_array_equal(w["load_w"][0], s.power_w[k : k + 8].astype(np.float32))


def test_import_data_command(tmp_path, capsys):
    out = tmp_path / "cer"
    assert main(["import-data", "cer", str(FIX / "cer" / "File1.txt"), "--out", str(out),
                 "--tz", "Europe/Dublin", "--split", "train=0.5,test=0.5"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["meters"] == 2 and summary["profiles"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["household_split"]) == ["1392", "1951"]
    assert set(manifest["household_split"].values()) == {"train", "test"}
    rows = list(iter_profile_batches(out, batch_size=100))
    np.testing.assert_array_equal(rows[0]["observed"], np.isfinite(rows[0]["load_w"]).astype(np.uint8))
    red = tmp_path / "redd"
    assert main(["import-data", "redd", str(FIX / "redd" / "house_1"), "--out", str(red), "--nilm-window", "5",
                 "--split", "train=1"]) == 0
    assert sum(len(b["load_w"]) for b in iter_nilm_batches(red, "train", 4)) == 2


def test_import_data_reports_malformed_file(tmp_path, capsys):
    assert main(["import-data", "cer", str(FIX / "cer" / "File_bad.txt"), "--out", str(tmp_path)]) == 2
    assert "File_bad.txt:5" in capsys.readouterr().err


@pytest.mark.parametrize("label,name", [("refrigerator", "fridge"), ("washer_dryer", "washing_machine"),
                                        ("dishwaser", "dishwasher"), ("boiler", "water_heater")])
def test_aliases_point_at_simulator_names(label, name):
    assert R.APPLIANCE_ALIASES[label] == name and name in R.ALL_APPLIANCES
