"""`unimeter demo` end to end on a real trained bundle: real broker, real agent process, real
simulated DSMR (pty) and ZigBee (zigpy virtual radio) meters. Training is skipped with --bundle
(the session's tiny bundle) so the test spends its time on the gateway side. The plot's NILM stack
is checked in test_demo_report.py, the agent config in test_demo_gateway.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import ConfigError
from export.demo import _parse_outage


def test_demo_publishes_every_kind_of_result(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--bundle", str(tiny_bundle), "--out", str(out),
         "--agent-seconds", "40", "--history-hours", "26"],
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
         "--agent-seconds", "65", "--history-hours", "2", "--mqtt-host", "127.0.0.1",
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


def test_the_outage_counts_from_the_agent_start() -> None:
    """`--meter-outage 20:30` is 20..50 s after the agent starts reading (a slow start-up does not
    move the outage before it); a malformed one is a configuration error."""
    assert _parse_outage("20:30") == (20.0, 50.0)
    assert _parse_outage(None) is None
    for bad in ("20", "a:b", "-1:5", "5:0"):
        with pytest.raises(ConfigError, match="--meter-outage"):
            _parse_outage(bad)
