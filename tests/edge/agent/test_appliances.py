"""Appliance uses, events and daily energy from decided NILM samples."""

import numpy as np
import pytest

from edge.agent.appliances import (
    ApplianceState,
    MeterAppliances,
    consistent_snapshot,
    decided_range,
    duration_text,
    names_in_order,
)
from edge.nilm_output import ApplianceCalibration, NilmCalibration, decide

NAMES = ("kettle", "oven")
CAL = NilmCalibration({
    "kettle": ApplianceCalibration(0.0, 1500, 3000, merge_gap_s=0, min_on_s=30),
    "oven": ApplianceCalibration(0.0, 1000, 3500, merge_gap_s=600, min_on_s=300),
}, decision_lag_s=60)
T0 = 1_700_000_000.0  # a UTC epoch second


def _decision(kettle_on, oven_on, load_w=None):
    """The graph sees a 300 W base plus the kettle's 2200 W and the oven's 2500 W where they are on
    (``load_w``: another aggregate)."""
    logit = np.stack([np.where(kettle_on, 3.0, -3.0), np.where(oven_on, 3.0, -3.0)])
    power = np.stack([np.full(len(kettle_on), 2200.0), np.full(len(oven_on), 2500.0)])
    if load_w is None:
        load_w = 300.0 + 2200.0 * np.asarray(kettle_on) + 2500.0 * np.asarray(oven_on)
    return decide(logit, power, np.broadcast_to(np.asarray(load_w, float), (len(kettle_on),)), NAMES, CAL)


def _tracker():
    t = MeterAppliances(NAMES, CAL, 10.0, {"kettle": "Kettle", "oven": "Oven"})
    t.add(T0 - 100, _decision(np.zeros(10, bool), np.zeros(10, bool)), 0, 10)  # warm-up window
    return t


def test_a_kettle_use_becomes_started_and_finished_with_duration_and_energy():
    t = _tracker()
    kettle = np.zeros(60, bool)
    kettle[6:24] = True  # 3 minutes at 10 s
    events = t.add(T0, _decision(kettle, np.zeros(60, bool)), 0, 60)
    assert [e.event_type for e in events] == ["started", "finished"]
    done = events[1].payload()
    assert done["duration_s"] == 180.0 and done["start_s"] == T0 + 60
    assert done["energy_kwh"] == round(2200 * 180 / 3.6e6, 4)
    assert "ran 3 min, 0.11 kWh" in done["text"] and done["text"].startswith("Kettle started ")
    snap = t.snapshot()
    assert snap["appliances"]["kettle"]["energy_today_kwh"] == round(2200 * 180 / 3.6e6, 4)
    assert snap["appliances"]["kettle"]["last_use"]["duration_s"] == 180.0


def test_thermostat_gaps_shorter_than_the_merge_gap_are_one_use():
    t = _tracker()
    oven = np.zeros(400, bool)
    for k in range(6):  # 2 min on, 3 min off, six times
        oven[30 * k: 30 * k + 12] = True
    events = t.add(T0, _decision(np.zeros(400, bool), oven), 0, 400)
    assert [e.event_type for e in events] == ["started", "finished"]
    assert events[1].duration_s == (150 + 12) * 10


def test_blips_shorter_than_min_on_are_no_event_and_samples_are_decided_once():
    t = _tracker()
    kettle = np.zeros(30, bool)
    kettle[5:7] = True  # 20 s: shorter than min_on_s = 30 s
    d = _decision(kettle, np.zeros(30, bool))
    assert t.add(T0, d, 0, 30) == []
    assert t.add(T0, d, 0, 30) == []  # the same samples again change nothing
    assert t.snapshot()["appliances"]["kettle"]["energy_today_kwh"] == round(2200 * 20 / 3.6e6, 4)


def test_the_first_window_after_a_start_only_sets_the_states():
    t = MeterAppliances(NAMES, CAL, 10.0)
    kettle = np.zeros(60, bool)
    kettle[6:24] = True
    assert t.add(T0, _decision(kettle, np.zeros(60, bool)), 0, 60) == []
    assert t.warm


def test_published_snapshots_keep_the_rules():
    t = _tracker()
    rng = np.random.default_rng(0)
    for w in range(20):
        logit = rng.normal(0, 3, (2, 12))
        d = decide(logit, rng.uniform(0, 4000, (2, 12)), rng.uniform(-200, 4000, 12), NAMES, CAL)
        t.add(T0 + 120 * w, d, 0, 12)
        assert consistent_snapshot(t.snapshot()) == []
    assert consistent_snapshot({"appliances": {"kettle": {"on": False, "power_w": 3.0}},
                                "aggregate_w": 10}) == ["kettle: off at 3.0 W"]


def test_todays_energy_survives_a_restart_without_counting_a_sample_twice(tmp_path, caplog):
    t = _tracker()
    kettle = np.zeros(60, bool)
    kettle[6:24] = True
    d = _decision(kettle, np.zeros(60, bool))
    t.add(T0, d, 0, 60)
    kwh = t.snapshot()["appliances"]["kettle"]["energy_today_kwh"]
    path = tmp_path / "store.appliances.json"
    ApplianceState.load(path).save({"p1": t})
    again = MeterAppliances(NAMES, CAL, 10.0, {"kettle": "Kettle", "oven": "Oven"})
    ApplianceState.load(path).restore("p1", again)
    assert again.add(T0, d, 0, 60) == []  # the same window after the restart: nothing new
    assert again.snapshot()["appliances"]["kettle"]["energy_today_kwh"] == kwh
    again.add(T0 + 2 * 86400, d, 0, 60)  # a later day starts at 0
    assert again.snapshot()["appliances"]["kettle"]["energy_today_kwh"] == kwh
    path.write_text("{broken")
    fresh = MeterAppliances(NAMES, CAL, 10.0)
    ApplianceState.load(path).restore("p1", fresh)
    assert fresh.decided_until_s == 0.0 and "unreadable" in caplog.text


def test_a_use_in_progress_at_a_restart_is_one_use_with_its_whole_energy(tmp_path):
    t = _tracker()
    kettle = np.zeros(60, bool)
    kettle[50:] = True  # boils from sample 50 ...
    assert [e.event_type for e in t.add(T0, _decision(kettle, np.zeros(60, bool)), 0, 60)] == ["started"]
    path = tmp_path / "store.appliances.json"
    ApplianceState.load(path).save({"p1": t})
    again = MeterAppliances(NAMES, CAL, 10.0, {"kettle": "Kettle", "oven": "Oven"})
    ApplianceState.load(path).restore("p1", again)
    after = np.zeros(60, bool)
    after[:8] = True  # ... and goes on for 8 samples after the restart
    events = again.add(T0 + 600, _decision(after, np.zeros(60, bool)), 0, 60)
    assert [e.event_type for e in events] == ["finished"]
    assert events[0].start_s == T0 + 500 and events[0].duration_s == 180.0
    assert events[0].energy_kwh == pytest.approx(2200 * 180 / 3.6e6)


def test_helpers():
    assert decided_range(720, 10.0, 125.0) == (0, 707)
    assert duration_text(40) == "40 s" and duration_text(180) == "3 min"
    assert duration_text(5100) == "1 h 25 min" and duration_text(7200) == "2 h"
    assert names_in_order(("kettle", "oven", "tv"), ["tv", "kettle"]) == ("kettle", "tv")
    assert names_in_order(("kettle", "oven"), []) == ("kettle", "oven")
