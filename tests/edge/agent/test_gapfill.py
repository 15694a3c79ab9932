"""Energy-exact gap filling on the gateway: resampler counters, the window fill, and the agent's
quality message (real Mosquitto, real SQLite store)."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest

from edge.agent.agent import Agent
from edge.agent.gapfill import METHOD_ENERGY, METHOD_LINEAR, fill_window
from edge.agent.resample import Resampler
from edge.agent.store import ReadingStore
from firmware_bridge.reading import Reading
from tests.edge.agent.helpers import Recorder, make_config
from tests.edge.agent.test_guards import running, wait_until

BASE_W, KETTLE_W = 300.0, 2000.0


class Household:
    """Power 300 W, plus a 2 kW kettle during [kettle_from_s, kettle_to_s); the exact counter."""

    def __init__(self, t0_s: float, kettle_from_s: float, kettle_to_s: float, c0_wh: float = 1e6):
        self.t0_s, self.k0, self.k1, self.c0_wh = t0_s, kettle_from_s, kettle_to_s, c0_wh

    def power_w(self, t_s: float) -> float:
        return BASE_W + (KETTLE_W if self.k0 <= t_s < self.k1 else 0.0)

    def counter_wh(self, t_s: float) -> float:
        kettle_s = max(0.0, min(t_s, self.k1) - self.k0)
        return self.c0_wh + (BASE_W * (t_s - self.t0_s) + KETTLE_W * kettle_s) / 3600.0

    def energy_wh(self, a_s: float, b_s: float) -> float:
        return self.counter_wh(b_s) - self.counter_wh(a_s)


def _resampled(house: Household, t0: int, n: int, gap: range, res_s: float = 1.0) -> Resampler:
    rs = Resampler(res_s, n + 4)
    for j in range(n + 1):  # the reading at t0 + n opens bin n: the window is bins 0..n-1
        if j in gap:
            continue
        t = float(t0 + j)
        rs.add(t, house.power_w(t), house.counter_wh(t))
    return rs


def test_a_gap_bracketed_by_counters_gets_exactly_the_counted_energy():
    t0, n, gap = 1_700_000_000, 120, range(40, 100)  # the link is down for 60 s
    house = Household(t0, t0 + 50.0, t0 + 80.0)  # the kettle runs 30 s of it, unseen
    rs = _resampled(house, t0, n, gap)
    start_s, window, _ = rs.window(n)
    assert start_s == t0 and np.isnan(window[40:100]).all() and np.isfinite(window[:40]).all()
    fill = fill_window(window, start_s, 1.0, rs.counters(n))
    filled_wh = float(fill.filled_w[40:100].sum()) / 3600.0
    assert filled_wh == pytest.approx(house.energy_wh(t0 + 40, t0 + 100), rel=1e-9)
    assert fill.samples_energy_exact == 60 and fill.gaps == 1
    assert fill.energy_filled_wh == pytest.approx(filled_wh, rel=1e-12)
    linear = fill_window(window, start_s, 1.0).filled_w  # without counters: the kettle is lost
    assert float(linear[40:100].sum()) / 3600.0 == pytest.approx(BASE_W * 60 / 3600.0)


def test_gaps_without_counters_on_both_sides_stay_linear():
    t0, n = 1_700_000_000, 60
    house = Household(t0, 0.0, 0.0)
    rs = Resampler(1.0, n + 4)
    for j in list(range(0, 20)) + [60]:  # a gap running to the end of the window (bin 60 is open)
        rs.add(float(t0 + j), house.power_w(t0 + j), house.counter_wh(t0 + j))
    start_s, window, _ = rs.window(n)
    fill = fill_window(window, start_s, 1.0, rs.counters(n))
    assert fill.samples_filled == 40 and fill.samples_energy_exact == 0
    np.testing.assert_allclose(fill.filled_w, BASE_W)


def test_a_counter_that_went_backwards_across_a_gap_is_not_used():
    t0, n = 1_700_000_000, 30
    rs = Resampler(1.0, n + 4)
    for j in list(range(0, 10)) + list(range(20, 31)):
        rs.add(float(t0 + j), 500.0, 1e6 if j < 10 else 5.0)  # the meter was reset in the gap
    start_s, window, _ = rs.window(n)
    fill = fill_window(window, start_s, 1.0, rs.counters(n))
    assert fill.samples_energy_exact == 0
    np.testing.assert_allclose(fill.filled_w, 500.0)


def _seed(store_path, house: Household, t_from: int, t_to: int, gap: range) -> None:
    store = ReadingStore(store_path, synchronous="normal")
    store.commit_readings([Reading("m1", float(t), float(t), house.power_w(t), import_wh=house.counter_wh(t),
                                   export_wh=0.0, source="history")
                           for t in range(t_from, t_to) if t not in gap])
    store.close()


async def test_agent_fills_a_gap_with_the_counted_energy_and_says_so(mosquitto, tmp_path):
    now = math.floor(time.time())
    gap = range(now - 200, now - 140)  # 60 s without readings, a kettle ran 40 s of it
    house = Household(now - 1000, now - 190.0, now - 150.0)
    schedule = {"nilm_resolution_s": 1.0, "quality_every_s": 1.0, "status_every_s": 60.0,
                "report_every_s": 3600.0, "profile_every_s": 3600.0, "forecast_every_s": 3600.0,
                "nilm_every_s": 3600.0}
    cfg = make_config(tmp_path / "state", mosquitto.port, [{"id": "m1", "kind": "virtual"}], schedule=schedule)
    _seed(cfg.store_path, house, now - 600, now, gap)

    class Live:  # the meter after the seeded history: same household, same counter
        async def readings(self):
            t = float(now)
            while t < time.time():  # what the meter sent while the agent started: no second gap
                yield Reading("m1", t, time.time(), house.power_w(t), import_wh=house.counter_wh(t),
                              export_wh=0.0)
                t += 1.0
            while True:
                t = time.time()
                yield Reading("m1", t, t, house.power_w(t), import_wh=house.counter_wh(t), export_wh=0.0)
                await asyncio.sleep(0.2)

    rec = Recorder(mosquitto.port, ["unimeter/gw1/m1/quality"], client_id="gapfill-quality")
    try:
        async with running(Agent(cfg, {"m1": Live()})):
            await wait_until(lambda: any(q.get("gap_fill", {}).get("samples_energy_exact")
                                         for q in rec.json("/m1/quality")))
    finally:
        rec.stop()
    q = [q for q in rec.json("/m1/quality") if q["gap_fill"]["samples_energy_exact"]][-1]
    fill = q["gap_fill"]
    assert fill["resolution_s"] == 1.0 and fill["method"] == METHOD_ENERGY
    # a loaded machine may miss a live bin now and then: such extra gaps hold the base load only
    assert fill["samples_energy_exact"] >= len(gap) and fill["gaps"] >= 1
    true_wh = house.energy_wh(gap.start, gap.stop)  # what the meter counted across the gap
    extra_exact = fill["samples_energy_exact"] - len(gap)
    extra_filled = fill["samples_filled"] - len(gap)
    assert fill["energy_counted_wh"] == pytest.approx(true_wh + BASE_W * extra_exact / 3600.0, abs=2e-3)
    assert fill["energy_filled_wh"] == pytest.approx(true_wh + BASE_W * extra_filled / 3600.0, abs=2e-3)
    assert true_wh > 2 * BASE_W * len(gap) / 3600.0  # the kettle is in it: linear would miss it
    assert METHOD_LINEAR != METHOD_ENERGY


def test_profile_step_rescales_the_models_fill_to_the_counted_energy(tiny_bundle):
    """The profile path (imputation model, then anomaly) keeps the counted energy of a gap too."""
    from edge.agent.inference import ModelHost, open_model, profile_step

    host = ModelHost(lambda path: open_model(path, "onnx", "int8", 1))
    assert host.try_load(tiny_bundle)
    res_s, n, start_s = 1800.0, host.current.tasks["anomaly"].length, 1_700_000_000.0
    true_w = 400.0 + 300.0 * np.sin(np.arange(n) * 2 * np.pi / n)
    true_w[20:30] += 3000.0  # a heater ran while the link was down
    counter_wh = 1e6 + np.cumsum(true_w) * res_s / 3600.0  # at each bin's end
    window = true_w.astype(np.float32)
    window[20:30] = np.nan
    counters = counter_wh.copy()
    counters[20:30] = np.nan  # no readings: no counter either
    _, load = profile_step(host, window, start_s, res_s, counter_wh=counters)
    filled_wh = float(load[20:30].astype(np.float64).sum()) * res_s / 3600.0
    assert filled_wh == pytest.approx(float(true_w[20:30].sum()) * res_s / 3600.0, rel=1e-5)
    np.testing.assert_array_equal(load[:20], window[:20])  # known bins untouched
