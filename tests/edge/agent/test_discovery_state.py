"""What was announced to Home Assistant, across restarts: removed meters, values and appliances
have their configs deleted; an unreadable state file starts afresh, saying so."""

from __future__ import annotations

import logging

from edge.agent.discovery import Discovery, MeterInfo, ModelInfo
from edge.agent.discovery_state import DiscoveryState, discovery_messages
from edge.agent.messages import Topics

T = Topics("unimeter", "gw1")
MODEL = ModelInfo("v3", ("imputation", "anomaly", "forecast", "nilm"), ("fridge", "washing_machine", "tv"))


def test_removed_meters_and_appliances_are_deleted_with_empty_retained_configs(tmp_path):
    path = tmp_path / "discovery.json"
    state = DiscoveryState.load(path)
    d = Discovery(T)
    state.observe("old", ["power_w"])
    discovery_messages(d, state, [MeterInfo("p1"), MeterInfo("old")], MODEL)
    state.save()
    state = DiscoveryState.load(path)  # a restart with "old" gone from the config and a smaller model
    msgs = discovery_messages(d, state, [MeterInfo("p1")], ModelInfo("v4", ("nilm",), ("fridge",)))
    empty = {m.topic for m in msgs if m.payload == b"" and m.retain}
    assert "homeassistant/sensor/unimeter_gw1_old/power/config" in empty
    assert "homeassistant/binary_sensor/unimeter_gw1_p1/appliance_tv/config" in empty
    assert "homeassistant/binary_sensor/unimeter_gw1_p1/anomaly/config" in empty
    assert "unimeter/gw1/old/reading" in empty  # its retained state goes too
    offline = [m for m in msgs if m.topic == "unimeter/gw1/old/availability"]
    assert offline and offline[0].payload == b"offline" and offline[0].retain
    assert not any(m.topic.startswith("homeassistant/") and "unimeter_gw1_old" in m.topic and m.payload
                   for m in msgs)


def test_an_unreadable_state_file_starts_afresh_and_says_so(tmp_path, caplog):
    path = tmp_path / "discovery.json"
    path.write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="edge.agent.discovery_state"):
        state = DiscoveryState.load(path)
    assert state.announced == set() and state.path == path
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    state.observe("m1", ["power_w", "not_a_value"])
    assert state.values == {"m1": {"power_w"}}
