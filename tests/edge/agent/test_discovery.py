"""Home Assistant discovery: entities per meter kind and task, availability, removal, events.

The configs are checked against Home Assistant's own schemas in test_homeassistant_schemas.py;
here: what is announced when, and the agent publishing it through a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

from edge.agent.agent import Agent
from edge.agent.availability import AvailabilityTracker
from edge.agent.discovery import Discovery, MeterInfo, ModelInfo
from edge.agent.discovery_state import DiscoveryState, GatewayDiscovery, discovery_messages
from edge.agent.messages import Topics, reading_values
from edge.agent.meters import InProcessMeter, sine_power_source
from firmware_bridge.reading import Reading
from tests.edge.agent.helpers import Recorder, make_config

T = Topics("unimeter", "gw1")
MODEL = ModelInfo("v3", ("imputation", "anomaly", "forecast", "nilm"), ("fridge", "washing_machine", "tv"))


def _configs(msgs) -> dict[str, dict]:
    return {m.topic: json.loads(m.payload) for m in msgs if m.payload and m.topic.endswith("/config")}


def _by_uid(msgs) -> dict[str, dict]:
    return {c["unique_id"]: c for c in _configs(msgs).values()}


def test_a_meter_without_a_counter_has_no_energy_entity_until_it_sends_one():
    ha = GatewayDiscovery(T, [MeterInfo("zb1", "Plug", "zigbee")], None, AvailabilityTracker())
    ha.note_reading(Reading("zb1", 1.8e9, 1.8e9, 40.0))
    first = _by_uid(ha.messages(None))
    assert "unimeter_gw1_zb1_power" in first and "unimeter_gw1_zb1_energy" not in first
    assert not ha.pending
    ha.note_reading(Reading("zb1", 1.8e9 + 1, 1.8e9 + 1, 41.0, import_wh=5000.0))
    assert ha.pending  # a new value: announce again
    energy = _by_uid(ha.messages(None))["unimeter_gw1_zb1_energy"]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy", "total_increasing", "kWh")
    assert "value_json.get(\"energy_kwh\")" in energy["value_template"]  # no warning if absent


def test_dsmr_values_become_energy_dashboard_entities():
    extra = {"import_t1_wh": 1.0e6, "import_t2_wh": 2.0e6, "export_t1_wh": 1.0e5, "export_t2_wh": 2.0e5,
             "tariff": 2.0, "power_l1_w": 300.0, "voltage_l1_v": 230.1, "current_l1_a": 1.3,
             "gas_m3": 1523.2, "water_m3": 88.1}
    r = Reading("p1", 1.8e9, 1.8e9, 300.0, import_wh=3.0e6, export_wh=3.0e5, voltage_v=230.1,
                current_a=1.3, extra=extra)
    state = DiscoveryState(None)
    state.observe("p1", [k for k, v in reading_values(r).items() if v is not None])
    cfgs = _by_uid(discovery_messages(Discovery(T), state, [MeterInfo("p1", "Smart meter", "dsmr")], MODEL))
    expect = {"energy": ("energy", "kWh"), "export": ("energy", "kWh"), "import_t1": ("energy", "kWh"),
              "export_t2": ("energy", "kWh"), "gas": ("gas", "m³"), "water": ("water", "m³"),
              "power_l1": ("power", "W"), "voltage_l1": ("voltage", "V"), "current_l1": ("current", "A")}
    for key, (device_class, unit) in expect.items():
        c = cfgs[f"unimeter_gw1_p1_{key}"]
        assert (c["device_class"], c["unit_of_measurement"]) == (device_class, unit), key
        assert "suggested_display_precision" in c
    assert cfgs["unimeter_gw1_p1_gas"]["state_class"] == "total_increasing"
    assert cfgs["unimeter_gw1_p1_export"]["name"] == "Energy export"
    assert cfgs["unimeter_gw1_p1_tariff"]["name"] == "Active tariff"
    assert cfgs["unimeter_gw1_p1_last_reading"]["entity_category"] == "diagnostic"


def test_every_config_names_device_gateway_availability_origin_and_entity_id():
    state = DiscoveryState(None)
    state.observe("p1", ["power_w", "energy_kwh"])
    msgs = discovery_messages(Discovery(T), state, [MeterInfo("p1", "Smart meter", "dsmr")], MODEL)
    cfgs = _configs(msgs)
    for topic, c in cfgs.items():
        component = topic.split("/")[1]
        assert c["default_entity_id"] == f"{component}.{c['unique_id']}"
        assert c["object_id"] == c["unique_id"] and c["origin"]["name"] == "unimeter"
        if c["unique_id"].startswith("unimeter_gw1_p1_"):
            assert c["device"]["via_device"] == "unimeter_gw1"
            assert [a["topic"] for a in c["availability"]] == ["unimeter/gw1/status",
                                                               "unimeter/gw1/p1/availability"]
            assert c["availability_mode"] == "all"
        else:
            assert c["device"]["identifiers"] == ["unimeter_gw1"]
    uids = {c["unique_id"] for c in cfgs.values()}
    for gateway_key in ("connection", "problem", "outbox", "dropped", "withheld", "latency_p50",
                        "model_version", "last_error", "started"):
        assert f"unimeter_gw1_{gateway_key}" in uids
    names = {c["name"] for c in cfgs.values()}
    assert {"Washing machine", "TV", "Fridge power", "Forecast next hour",
            "Energy forecast next 24 h", "Daily report"} <= names
    assert not any("_" in n for n in names)  # no raw keys in the UI
    events = [c for t, c in cfgs.items() if t.startswith("homeassistant/event/")]
    assert len(events) == 3 and events[0]["event_types"] == ["started", "finished"]


def test_no_model_means_no_model_entities():
    state = DiscoveryState(None)
    uids = set(_by_uid(discovery_messages(Discovery(T), state, [MeterInfo("p1")], None)))
    assert not any(k.endswith(("_anomaly", "_forecast")) or "appliance" in k for k in uids)
    assert "unimeter_gw1_p1_report" in uids and "unimeter_gw1_p1_quality" in uids


def test_an_appliance_use_becomes_a_non_retained_event_with_the_meter_header():
    from edge.agent.appliances import ApplianceEvent

    event = ApplianceEvent("washing_machine", "Washing machine", "finished", 1000.0, 5500.0, 0.93)
    msg = T.appliance_event_message("p1", "washing_machine", 5600.0, event.payload())
    body = json.loads(msg.payload)
    assert msg.topic == "unimeter/gw1/p1/event/washing_machine" and not msg.retain
    assert body["event_type"] == "finished" and body["meter"] == "p1"
    assert body["duration_s"] == 4500.0 and "ran 1 h 15 min, 0.93 kWh" in body["text"]


def test_only_the_appliances_the_home_has_are_announced_each_with_its_energy_today():
    model = ModelInfo("v1", ("nilm",), ("kettle", "oven", "tv"))
    ha = GatewayDiscovery(T, [MeterInfo("p1", appliances=("tv", "kettle"))], None, AvailabilityTracker())
    configs = _configs(ha.messages(model))
    announced = {t.split("/")[-2] for t in configs if "appliance_" in t}
    assert announced == {f"appliance_{k}{s}" for k in ("kettle", "tv")
                         for s in ("", "_power", "_energy_today", "_event")}
    energy = configs["homeassistant/sensor/unimeter_gw1_p1/appliance_kettle_energy_today/config"]
    assert energy["device_class"] == "energy" and energy["state_class"] == "total_increasing"
    assert energy["name"] == "Kettle energy today"
    event = configs["homeassistant/event/unimeter_gw1_p1/appliance_kettle_event/config"]
    assert event["event_types"] == ["started", "finished"]


def test_an_appliance_the_model_does_not_know_is_announced_when_it_can_be_enrolled():
    model = ModelInfo("v1", ("nilm",), ("kettle", "oven", "tv"))
    meter = MeterInfo("p1", appliances=("kettle", "toaster", "dishwasher"))  # toaster: ON/OFF, enrolled
    configs = _configs(GatewayDiscovery(T, [meter], None, AvailabilityTracker()).messages(model))
    announced = {t.split("/")[-2] for t in configs if "appliance_" in t and t.endswith("_event/config")}
    assert announced == {"appliance_kettle_event", "appliance_toaster_event"}  # a dishwasher needs a model
    assert configs["homeassistant/sensor/unimeter_gw1_p1/appliance_toaster_power/config"]["name"] == "Toaster power"


def test_an_appliance_dropped_from_the_config_loses_its_entities(tmp_path):
    path = tmp_path / "discovery.json"
    model = ModelInfo("v1", ("nilm",), ("kettle", "oven", "tv"))
    state = DiscoveryState.load(path)
    discovery_messages(Discovery(T), state, [MeterInfo("p1", appliances=("kettle", "oven"))], model)
    state.save()
    state = DiscoveryState.load(path)  # a restart after "oven" was taken out of meters.appliances
    msgs = discovery_messages(Discovery(T), state, [MeterInfo("p1", appliances=("kettle",))], model)
    empty = {m.topic.split("/")[-2] for m in msgs if m.payload == b"" and m.retain}
    assert empty == {f"appliance_oven{s}" for s in ("", "_power", "_energy_today", "_event")}
    assert "homeassistant/sensor/unimeter_gw1_p1/appliance_kettle_energy_today/config" in _configs(msgs)


def test_availability_learns_the_interval_and_goes_offline_after_missed_readings():
    tr = AvailabilityTracker(missed=3, grace_s=1.0)
    tr.add("fast")
    tr.add("fixed", offline_after_s=60.0)
    for i in range(10):
        tr.note("fast", 100.0 + 2.0 * i)  # every 2 s, last at 118
        tr.note("fixed", 100.0 + 2.0 * i)
    assert tr.timeout_s("fast") == 7.0 and tr.timeout_s("fixed") == 60.0
    assert sorted(tr.changes(120.0)) == [("fast", True), ("fixed", True)]
    assert tr.changes(124.0) == []
    assert tr.changes(125.5) == [("fast", False)]
    tr.note("fast", 126.0)
    assert tr.changes(126.1) == [("fast", True)]


class _DroppingSource:
    """A meter whose cable drops after ``n`` readings: the source stays open, nothing arrives."""

    def __init__(self, meter_id: str, n: int, interval_s: float):
        self.meter_id, self.n, self.interval_s = meter_id, n, interval_s

    async def readings(self) -> AsyncIterator[Reading]:
        for _ in range(self.n):
            now = time.time()
            yield Reading(self.meter_id, now, now, 100.0)
            await asyncio.sleep(self.interval_s)
        await asyncio.Event().wait()


async def test_agent_marks_a_silent_meter_offline_and_removes_a_deleted_one(mosquitto, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge.agent.mqtt")
    meters = [{"id": "a", "kind": "virtual", "name": "Meter A"}, {"id": "b", "kind": "virtual", "name": "Meter B"},
              {"id": "old", "kind": "virtual"}]
    cfg = make_config(tmp_path / "state", mosquitto.port, meters, mqtt={"offline_after_missed": 3})
    cfg.store_path.parent.mkdir(parents=True)
    # a previous run announced meter "old"
    state = DiscoveryState.load(cfg.store_path.with_suffix(".discovery.json"))
    discovery_messages(Discovery(Topics("unimeter", "gw1")), state,
                       [MeterInfo(m["id"]) for m in meters], None)
    state.save()
    cfg.meters = cfg.meters[:2]
    rec = Recorder(mosquitto.port, ["unimeter/#", "homeassistant/#"], client_id="avail-sub")
    sources = {"a": InProcessMeter("a", sine_power_source(), 0.2), "b": _DroppingSource("b", 5, 0.2)}
    agent = Agent(cfg, sources)
    task = asyncio.create_task(agent.run())

    def availability(meter: str) -> list[bytes]:
        with rec.lock:
            return [p for t, p, _ in rec.messages if t == f"unimeter/gw1/{meter}/availability"]

    try:
        for _ in range(150):
            if b"offline" in availability("b") and availability("old"):
                break
            await asyncio.sleep(0.1)
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)
        rec.stop()
    assert availability("a") == [b"online"]
    assert availability("b") == [b"online", b"offline"]  # 3 missed 0.2 s readings + grace
    assert availability("old") == [b"offline"]
    with rec.lock:
        cleared = {t for t, p, _ in rec.messages if p == b""}
    assert "homeassistant/sensor/unimeter_gw1_old/last_reading/config" in cleared
    configs = {t for t, p, _ in rec.messages if p and t.startswith("homeassistant/")}
    assert "homeassistant/sensor/unimeter_gw1_a/power/config" in configs
    stop_warnings = [r.getMessage() for r in caplog.records
                     if r.name == "edge.agent.mqtt" and r.levelno >= logging.WARNING]
    assert not stop_warnings  # a clean stop is not a fault ("MQTT disconnected" is INFO then)
    assert any("MQTT disconnected" in r.getMessage() for r in caplog.records if r.name == "edge.agent.mqtt")
