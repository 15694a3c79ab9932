"""What the agent says about itself before and while anything fails: status details and health."""

from __future__ import annotations

from edge.agent.agent import Agent
from edge.agent.status import agent_health, last_error, status_details
from tests.edge.agent.helpers import make_config


def _agent(tmp_path) -> Agent:
    cfg = make_config(tmp_path / "state", 1883, [{"id": "m1", "kind": "virtual"}], mqtt={"enabled": False})
    return Agent(cfg, {})


def test_health_of_an_agent_not_yet_running_names_its_store_and_no_broker(tmp_path):
    agent = _agent(tmp_path)
    health = agent_health(agent)
    assert health.ok and health.problems == [] and health.state == "running"
    assert health.store.path == str(agent.cfg.store_path) and health.store.readings_waiting == 0
    assert not health.mqtt.enabled and health.model.version is None
    assert not agent_health(agent, "stopped").ok  # only a running agent is healthy


def test_a_failing_store_write_is_a_problem_and_the_latest_error_wins(tmp_path):
    agent = _agent(tmp_path)
    agent.write_spell.fail("disk I/O error", "3 readings waiting in memory")
    health = agent_health(agent)
    assert not health.ok and any("disk I/O error" in p for p in health.problems)
    assert last_error(agent) == ""
    agent.stats.note_error("m1: anomaly inference failed: bad window")
    assert last_error(agent) == "m1: anomaly inference failed: bad window"


def test_status_details_give_latency_percentiles_in_ms(tmp_path):
    agent = _agent(tmp_path)
    assert status_details(agent)["latency_p50_ms"] is None
    for lat_s in (0.010, 0.020, 0.030):
        agent.stats.note_latency(lat_s)
    details = status_details(agent)
    assert details["latency_p50_ms"] == 20.0 and details["latency_p99_ms"] == 29.8
    assert details["outbox_rows"] == 0 and details["model_version"] is None
