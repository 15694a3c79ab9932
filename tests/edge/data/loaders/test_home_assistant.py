"""Home Assistant history exports: power and energy sensors, bad lines. Fixture files in the real formats; malformed lines are named file:line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from edge.data import loaders as L

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def _utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


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
