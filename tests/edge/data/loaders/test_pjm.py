"""PJM hourly load: Data Miner and per-zone files. Fixture files in the real formats; malformed lines are named file:line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edge.data import loaders as L

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def _utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


def test_pjm_data_miner_and_zone_files():
    areas = L.load_pjm(FIX / "pjm" / "hrl_load_metered.csv")
    assert [s.meter_id for s in areas] == ["AECO", "BC"]
    assert areas[0].ts_s[0] == _utc(2024, 1, 1, 5) and areas[0].resolution_s == 3600
    assert areas[0].power_w[0] == pytest.approx(2571.006e6)
    (aep,) = L.load_pjm(FIX / "pjm" / "AEP_hourly.csv")
    assert aep.meter_id == "AEP" and aep.ts_s[0] == _utc(2004, 12, 31, 6)  # 01:00 EST
    with pytest.raises(L.LoaderError, match=r"AEP_bad\.csv:6: expected 2 columns"):
        L.load_pjm(FIX / "pjm" / "AEP_bad.csv")
