"""The demo gateway's agent config: the meter outage counts from the agent start; the seeded
history covers the model's context."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.agent.config import load_config
from export import demo_gateway as gw
from export.demo_gateway import BrokerSettings, agent_config_text


def test_the_outage_is_written_relative_to_the_agent_start(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(agent_config_text(tmp_path, BrokerSettings(port=1883), tmp_path, 1.79e9, 3600.0, (20.0, 50.0)))
    zb1 = next(m for m in load_config(path).meters if m.id == "zb1")
    assert zb1.options["outages_after_start"] == [[20, 50]] and "outages" not in zb1.options


def test_older_seeded_history_is_coarser_and_the_last_hours_at_the_nilm_rate():
    now_s = 1.8e9
    t = gw.history_times(now_s, 3 * 86400.0)
    assert t[0] == now_s - 3 * 86400.0 and (np.diff(t) > 0).all()
    assert now_s - gw.HISTORY_END_GAP_S - gw.NATIVE_HISTORY_STEP_S <= t[-1] < now_s - gw.OFFLINE_AFTER_S
    native = t[t >= now_s - gw.NATIVE_HISTORY_S]
    assert set(np.diff(native)) == {gw.NATIVE_HISTORY_STEP_S} == {10.0}  # export.pipeline.NILM_RESOLUTION_S
    recent = t[(t >= now_s - gw.RECENT_HISTORY_S) & (t < now_s - gw.NATIVE_HISTORY_S)]
    assert set(np.diff(recent)) == {gw.HISTORY_STEP_S}
    assert set(np.diff(t[t < now_s - gw.RECENT_HISTORY_S])) == {gw.OLD_HISTORY_STEP_S}
    assert gw.default_history_s(7) >= 9 * 86400  # D days of context before the past day's input day
    assert gw.default_history_s(0) >= 2 * 86400  # the past day and the day before it
