"""Low Carbon London: meters, Null, London time, the half-hourly block variant. Fixture files in the real formats; malformed lines are named file:line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from edge.data import loaders as L

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def _utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


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


def test_lcl_halfhourly_block_variant():
    a, b = L.load_lcl(FIX / "lcl" / "block_0.csv")
    assert (a.meter_id, b.meter_id) == ("MAC000002", "MAC000003")
    np.testing.assert_array_equal(a.power_w[:2], [0.0, 500.0])
    assert np.isnan(a.power_w[2]) and b.power_w[0] == 1000.0
