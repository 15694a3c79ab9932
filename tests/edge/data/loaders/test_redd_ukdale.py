"""REDD and UK-DALE houses: mains summed, circuits binned as appliances. Fixture files in the real formats; malformed lines are named file:line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.data import loaders as L

FIX = Path(__file__).resolve().parent.parent / "fixtures"


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
