"""The demo's plot: the agent's NILM decisions over the seeded history (its decision rules hold)
beside the simulator's truth, on a real trained bundle."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge.agent.config import load_config
from edge.agent.inference import open_model
from edge.agent.store import ReadingStore
from edge.nilm_output import check_consistent
from export.demo_collector import Collector
from export.demo_gateway import (
    ATTACKED_METER,
    OUTAGE_METER,
    BrokerSettings,
    agent_config_text,
    seed_history,
)
from export.demo_report import (
    NILM_PLOT_HOURS,
    anomaly_check,
    disaggregate_history,
    plot_demo,
    true_appliance_power,
)


def test_the_demo_plots_the_agents_nilm_decisions_beside_the_simulators_truth(tiny_bundle: Path,
                                                                              tmp_path: Path) -> None:
    now_s = time.time()
    (tmp_path / "agent.toml").write_text(agent_config_text(tmp_path, 1883, tiny_bundle, now_s, 4 * 3600))
    cfg = load_config(tmp_path / "agent.toml")
    cfg.store_path.parent.mkdir(parents=True, exist_ok=True)
    seed_history(cfg, now_s, 4 * 3600)
    model = open_model(tiny_bundle, "onnx", "int8", 1)
    store = ReadingStore(cfg.store_path)
    try:
        nilm = disaggregate_history(model, store, "zb1", now_s, NILM_PLOT_HOURS)
    finally:
        store.close()
    res, n = model.tasks["nilm"].resolution_s, model.tasks["nilm"].length
    assert nilm.power_w.shape == (len(model.appliances), len(nilm.ts_s))
    assert len(nilm.ts_s) == int(NILM_PLOT_HOURS * 3600 // (res * n)) * n
    assert check_consistent(nilm.power_w > 0, nilm.power_w, nilm.load_w) == []
    truth = true_appliance_power(cfg.meters[1], nilm)
    assert truth.shape == (len(model.appliances) + 1, len(nilm.ts_s)) and (truth >= 0).all()
    assert truth.sum() > 0 and np.isfinite(truth).all()
    png = plot_demo(cfg.store_path, Collector(BrokerSettings()), tmp_path / "demo.png",
                         now_s, tiny_bundle, cfg.meters)
    assert png.stat().st_size > 0


def test_the_anomaly_check_wants_the_attacked_meter_flagged_and_no_other():
    def meters(attacked: int, clean: int) -> dict:
        return {ATTACKED_METER: {"anomaly_flags": attacked}, OUTAGE_METER: {"anomaly_flags": clean}}

    assert anomaly_check(meters(3, 0))["passed"]
    assert not anomaly_check(meters(0, 0))["passed"]
    missed_clean = anomaly_check(meters(3, 1))
    assert not missed_clean["passed"] and missed_clean["clean_meters_flagged"] == [OUTAGE_METER]
