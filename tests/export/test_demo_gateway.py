"""The demo gateway's agent config: the meter outage counts from the agent start."""

from __future__ import annotations

from pathlib import Path

from edge.agent.config import load_config
from export.demo_gateway import BrokerSettings, agent_config_text


def test_the_outage_is_written_relative_to_the_agent_start(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(agent_config_text(tmp_path, BrokerSettings(port=1883), tmp_path, 1.79e9, 3600.0, (20.0, 50.0)))
    zb1 = next(m for m in load_config(path).meters if m.id == "zb1")
    assert zb1.options["outages_after_start"] == [[20, 50]] and "outages" not in zb1.options
