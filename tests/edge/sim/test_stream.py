"""The live simulated meter is deterministic, matches the batch simulator and keeps counters monotonic."""

from __future__ import annotations

import numpy as np
import pytest

from edge.sim import HouseholdConfig, SimulationError, simulate_household
from edge.sim.stream import HouseholdPowerSource

DAY0 = 1_704_067_200  # 2024-01-01 00:00 UTC
CFG = HouseholdConfig(pv_kwp=3.0, initial_import_wh=5_000.0, initial_export_wh=100.0)


@pytest.fixture(scope="module")
def source():
    return HouseholdPowerSource(CFG, seed=12, start_s=DAY0, resolution_s=10)


def test_matches_batch_simulation(source):
    batch = simulate_household(CFG, 2, "10s", seed=12, start=DAY0)
    for i in (0, 1234, 8639, 8640, 12000, 17279):
        r = source(float(batch.ts_s[i]) + 3.0)
        assert r["power_w"] == batch.power_w[i]
        assert r["reactive_var"] == batch.reactive_var[i]
        # counters at the end of sample i equal the batch counters
        end = source(float(batch.ts_s[i]) + 10.0 - 1e-9)
        assert end["import_wh"] == pytest.approx(batch.import_wh[i], abs=1e-6)
        assert end["export_wh"] == pytest.approx(batch.export_wh[i], abs=1e-6)


def test_deterministic_and_monotonic_across_midnight(source):
    other = HouseholdPowerSource(CFG, seed=12, start_s=DAY0 + 3600, resolution_s=10)
    ts = DAY0 + 86400 - 300 + np.arange(0, 600, 1.7)
    readings = [source(float(t)) for t in ts]
    assert readings == [other(float(t)) for t in ts]
    imp = np.array([r["import_wh"] for r in readings])
    exp_ = np.array([r["export_wh"] for r in readings])
    assert np.all(np.diff(imp) >= 0) and np.all(np.diff(exp_) >= 0)
    assert imp[0] > CFG.initial_import_wh


def test_electrical_quantities_plausible(source):
    r = source(DAY0 + 19.5 * 3600)
    assert 215 < r["voltage_v"] < 245
    assert r["current_a"] == pytest.approx(np.hypot(r["power_w"], r["reactive_var"]) / r["voltage_v"], rel=1e-2)


def test_rejects_times_before_start_and_nan(source):
    with pytest.raises(SimulationError, match="before"):
        source(DAY0 - 1.0)
    with pytest.raises(SimulationError, match="finite"):
        source(float("nan"))


def test_first_reading_days_after_start_with_a_small_cache():
    """The demo's case at midnight: the first call lands more days after ``start_s`` than the cache
    holds, so filling in the earlier days' counters evicts days; the answer must still come out, and
    equal that of a source that walked there day by day."""
    ts = DAY0 + 4 * 86400 + 7 * 3600.0
    jumped = HouseholdPowerSource(CFG, seed=12, start_s=DAY0, resolution_s=60, cache_days=1)(ts)
    walker = HouseholdPowerSource(CFG, seed=12, start_s=DAY0, resolution_s=60, cache_days=1)
    for day in range(4):
        walker(DAY0 + day * 86400 + 60.0)
    assert jumped == walker(ts)
