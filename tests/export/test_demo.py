"""`unimeter demo` end to end on a real trained bundle: real broker, real agent process, real
simulated DSMR (pty) and ZigBee (zigpy virtual radio) meters. Training is skipped with --bundle
(the session's tiny bundle) so the test spends its time on the gateway side. The plot's NILM stack
is checked on its own (the agent's decision rules, the simulator's truth beside it)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge.agent.config import load_config
from edge.agent.inference import open_model
from edge.agent.store import ReadingStore
from edge.nilm_output import check_consistent
from export import demo


def test_demo_publishes_every_kind_of_result(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--bundle", str(tiny_bundle), "--out", str(out),
         "--agent-seconds", "50", "--history-hours", "26"],
        capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["agent_exit_code"] == 0
    assert summary["discovery_configs"] >= 10  # power, energy, anomaly, forecast, appliances per meter
    for meter_id in ("p1", "zb1"):
        m = summary["meters"][meter_id]
        assert m["live_readings"] >= 5, (meter_id, m)
        assert m["seq_gaps"] == 0, (meter_id, m)
        for kind in ("reading", "anomaly", "appliances", "forecast", "quality"):
            assert m["messages"].get(kind, 0) >= 1, (meter_id, kind, m["messages"])
        assert len(m["forecast_next_hour_w"]) == 2
    for name in ("demo.png", "report.md", "agent.toml", "agent.log"):
        assert (out / name).stat().st_size > 0, name


def test_demo_publishes_into_an_existing_broker_with_a_meter_outage(tiny_bundle: Path, tmp_path: Path,
                                                                     mosquitto) -> None:
    """`--mqtt-host`: the demo starts no broker of its own; the cut-off ZigBee meter goes offline
    (offline_after_s = 20 s in the demo's config) and comes back when its readings resume."""
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--bundle", str(tiny_bundle), "--out", str(out),
         "--agent-seconds", "70", "--history-hours", "2", "--mqtt-host", "127.0.0.1",
         "--mqtt-port", str(mosquitto.port), "--meter-outage", "20:30"],
        capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["broker"] == "existing broker 127.0.0.1"
    zb1, p1 = summary["meters"]["zb1"]["availability"], summary["meters"]["p1"]["availability"]
    first_online = zb1.index("online")  # before its first reading a meter may start offline
    assert zb1[first_online:] == ["online", "offline", "online"], zb1
    assert p1[p1.index("online"):] == ["online"], p1
    assert 'host = "127.0.0.1"' in (out / "agent.toml").read_text()


def test_the_demo_plots_the_agents_nilm_decisions_beside_the_simulators_truth(tiny_bundle: Path,
                                                                              tmp_path: Path) -> None:
    now_s = time.time()
    (tmp_path / "agent.toml").write_text(demo.agent_config_text(tmp_path, 1883, tiny_bundle, now_s, 4 * 3600))
    cfg = load_config(tmp_path / "agent.toml")
    cfg.store_path.parent.mkdir(parents=True, exist_ok=True)
    demo.seed_history(cfg, now_s, 4 * 3600)
    model = open_model(tiny_bundle, "onnx", "int8", 1)
    store = ReadingStore(cfg.store_path)
    try:
        nilm = demo.disaggregate_history(model, store, "zb1", now_s, demo.NILM_PLOT_HOURS)
    finally:
        store.close()
    res, n = model.tasks["nilm"].resolution_s, model.tasks["nilm"].length
    assert nilm.power_w.shape == (len(model.appliances), len(nilm.ts_s))
    assert len(nilm.ts_s) == int(demo.NILM_PLOT_HOURS * 3600 // (res * n)) * n
    assert check_consistent(nilm.power_w > 0, nilm.power_w, nilm.load_w) == []
    truth = demo.true_appliance_power(cfg.meters[1], nilm)
    assert truth.shape == (len(model.appliances) + 1, len(nilm.ts_s)) and (truth >= 0).all()
    assert truth.sum() > 0 and np.isfinite(truth).all()
    png = demo.plot_demo(cfg.store_path, demo.Collector(demo.BrokerSettings()), tmp_path / "demo.png",
                         now_s, tiny_bundle, cfg.meters)
    assert png.stat().st_size > 0


def test_the_outage_counts_from_the_agent_start_and_the_run_from_the_gateway_online(tmp_path: Path) -> None:
    """`--meter-outage 20:30` is 20..50 s after the agent starts reading (a slow start-up does not
    move the outage before it); the run's seconds count from the gateway's own online status, not
    from a status an earlier run left retained."""
    from edge.agent.config import load_config
    from export.demo import BrokerSettings, Collector, _parse_outage, agent_config_text

    outage = _parse_outage("20:30")
    assert outage == (20.0, 50.0)
    path = tmp_path / "agent.toml"
    path.write_text(agent_config_text(tmp_path, BrokerSettings(port=1883), tmp_path, 1.79e9, 3600.0, outage))
    zb1 = next(m for m in load_config(path).meters if m.id == "zb1")
    assert zb1.options["outages_after_start"] == [[20, 50]] and "outages" not in zb1.options
    collector = Collector(BrokerSettings())
    collector.messages += [(0.0, "unimeter/demo/status", {"state": "online", "ts": "2026-01-01T00:00:00.000Z"}),
                           (0.0, "unimeter/demo/p1/reading", {"ts": "2026-11-30T12:00:01.000Z"})]
    noon = 1796040000.0  # 2026-11-30T12:00:00Z
    assert not collector.gateway_online_since(noon)  # only an old, retained "online"
    collector.messages.append((0.0, "unimeter/demo/status", {"state": "online", "ts": "2026-11-30T12:00:02.000Z"}))
    assert collector.gateway_online_since(noon)
