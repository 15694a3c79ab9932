"""End to end: a simulated P1 meter on a pty and a simulated ZigBee meter (zigpy virtual radio)
-> agent (real store, real tiny model in onnxruntime) -> real Mosquitto -> subscriber.

The gateway has been running for a day: the store is seeded with a day of history from the same
household simulator, and on the P1 meter a false-data-injection attack (Cui et al. scaling,
lambda = 2) covers the last hours. The subscriber must see Home Assistant discovery configs, the
readings of both meters (continuing the stored sequence numbers), an anomaly flag for the attacked
meter, appliance states and a forecast.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np

from edge.agent.agent import Agent
from edge.agent.appliances import consistent_snapshot
from edge.agent.inference import open_model
from edge.agent.meters import attack_power_source, build_sources, household_power_source
from edge.agent.store import ReadingStore
from firmware_bridge.reading import Reading
from tests.edge.agent.helpers import Recorder, make_config

ATTACK_H = 8.0


def _seed_history(store_path, meter_id: str, seed: int, now_s: float, nilm_res_s: float,
                  nilm_len: int, attacked: bool) -> None:
    """A day at 60 s and the last NILM window at the NILM resolution, from the live simulator."""
    source = household_power_source(seed, now_s - 86400, {})  # the live meter's start_s: same counters
    if attacked:
        source = attack_power_source(source, "scaling", now_s - ATTACK_H * 3600, now_s + 3600, 2.0)
    recent_s = nilm_len * nilm_res_s
    ts = np.concatenate([np.arange(now_s - 86400, now_s - recent_s, 60.0),
                         np.arange(now_s - recent_s, now_s - 1, nilm_res_s)])
    readings = []
    for t in ts:
        v = source(float(t))
        readings.append(Reading(meter_id, float(t), float(t), v["power_w"], import_wh=v["import_wh"],
                                export_wh=v["export_wh"], source="history"))
    store = ReadingStore(store_path, synchronous="normal")
    store.commit_readings(readings)
    store.close()


async def test_meters_to_subscriber_end_to_end(tiny_bundle, mosquitto, tmp_path):
    model = open_model(tiny_bundle, "onnx", "int8", 1)
    nilm = model.tasks["nilm"]
    now_s = time.time()
    attack = {"kind": "scaling", "start_s": now_s - ATTACK_H * 3600, "end_s": now_s + 3600, "lam": 2.0}
    meters = [
        {"id": "p1", "kind": "virtual-dsmr", "name": "P1 meter", "appliances": ["kettle", "tv", "toaster"],
         "options": {"profile": "household", "seed": 11, "start_s": now_s - 86400, "interval_s": 1.0,
                     "attack": attack}},
        {"id": "zb1", "kind": "virtual-zigbee", "name": "ZigBee plug",
         "options": {"profile": "household", "seed": 12, "start_s": now_s - 86400, "report_interval_s": 1.0}},
    ]
    cfg = make_config(tmp_path / "state", mosquitto.port, meters,
                      model={"bundle": str(tiny_bundle), "backend": "onnx", "precision": "int8"},
                      schedule={"profile_every_s": 3.0, "nilm_every_s": 2.0, "forecast_every_s": 4.0,
                                "quality_every_s": 2.0, "report_every_s": 5.0, "status_every_s": 2.0})
    for m, seed, attacked in (("p1", 11, True), ("zb1", 12, False)):
        _seed_history(cfg.store_path, m, seed, now_s, nilm.resolution_s, nilm.length, attacked)
    rec = Recorder(mosquitto.port, ["unimeter/#", "homeassistant/#"], client_id="e2e-sub")
    agent = Agent(cfg, build_sources(cfg))
    task = asyncio.create_task(agent.run())

    def have_all() -> bool:
        return all(rec.json(f"/{m}/{k}") for m in ("p1", "zb1")
                   for k in ("reading", "anomaly", "appliances", "forecast", "quality", "report"))

    try:
        for _ in range(400):
            if have_all() and len(rec.json("/p1/reading")) >= 3 and len(rec.json("/zb1/reading")) >= 3:
                break
            await asyncio.sleep(0.1)
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)
        rec.stop()
    assert have_all(), sorted(rec.topics())

    # readings: both protocols, units, sequence numbers continuing the stored history
    for meter, source in (("p1", "virtual-dsmr"), ("zb1", "virtual-zigbee")):
        readings = rec.json(f"/{meter}/reading")
        assert {r["source"] for r in readings} == {source}
        assert min(r["seq"] for r in readings) > 1000  # history had seq 1..N
        assert all(r["power_w"] is not None and r["ts"].endswith("Z") for r in readings)
        assert all(r["energy_kwh"] > 0 for r in readings)

    # Home Assistant discovery
    configs = {t: json.loads(p) for t, p, _ in rec.messages if t.startswith("homeassistant/")}
    energy = configs["homeassistant/sensor/unimeter_gw1_p1/energy/config"]
    assert energy["state_class"] == "total_increasing" and energy["device_class"] == "energy"
    assert configs["homeassistant/binary_sensor/unimeter_gw1_zb1/anomaly/config"]["device_class"] == "problem"
    assert "homeassistant/sensor/unimeter_gw1_p1/forecast/config" in configs
    assert "toaster" not in model.appliances  # enrolled by signature (edge.nilm_enrol), announced too
    assert "homeassistant/binary_sensor/unimeter_gw1_p1/appliance_toaster/config" in configs
    for app in model.appliances:
        slug = "".join(c if c.isalnum() else "_" for c in app.lower()).strip("_")
        announced = f"homeassistant/binary_sensor/unimeter_gw1_p1/appliance_{slug}/config" in configs
        assert announced == (app in ("kettle", "tv"))
        assert f"homeassistant/binary_sensor/unimeter_gw1_zb1/appliance_{slug}/config" in configs

    # anomaly: the attacked meter's window is flagged. (How well the model separates attacked from
    # clean windows is the trainer's evaluation; the tiny test model flags most windows.)
    p1, zb1 = rec.json("/p1/anomaly")[-1], rec.json("/zb1/anomaly")[-1]
    assert p1["anomaly"] is True, p1
    assert 0.0 <= zb1["score"] <= 1.0 and isinstance(zb1["anomaly"], bool)
    assert p1["model_version"] == model.version and p1["resolution_s"] == 1800.0
    assert p1["window_end_s"] - p1["window_start_s"] == 1800.0 * model.tasks["anomaly"].length

    # appliances: one consistent answer in every message (off => 0 W, on => > 0 W, the sum never
    # above the aggregate the decision saw), only the appliances p1's config lists (the toaster
    # enrolled, its row after the model's)
    p1_names = ({"kettle", "tv"} & set(model.appliances)) | {"toaster"}
    for meter, names in (("p1", p1_names), ("zb1", set(model.appliances))):
        bodies = rec.json(f"/{meter}/appliances")
        for body in bodies:
            assert consistent_snapshot(body) == [], body
            assert set(body["appliances"]) == names
        assert all(a["energy_today_kwh"] >= 0 for b in bodies for a in b["appliances"].values())
    saved = json.loads(cfg.store_path.with_suffix(".appliances.json").read_text())
    assert set(saved) == {"p1", "zb1"} and set(saved["p1"]["appliances"]) <= {"kettle", "tv", "toaster"}
    events = [(t, json.loads(p)) for t, p, _ in rec.messages if t.startswith("unimeter/gw1/") and "/event/" in t]
    for topic, e in events:
        assert e["event_type"] in ("started", "finished") and topic.split("/")[2] == e["meter"], e
        assert e["event_type"] == "started" or (e["duration_s"] > 0 and e["energy_kwh"] >= 0), e
    fc = rec.json("/zb1/forecast")[-1]
    assert len(fc["day_ahead_w"]) == 48 and len(fc["hour_ahead_w"]) == 2
    assert all(np.isfinite(fc["day_ahead_w"]))
    assert "kWh" in rec.json("/p1/report")[-1]["text"]
    status = [s for s in rec.json("/gw1/status") if s["state"] == "online" and "model_version" in s]
    assert status and status[-1]["model_version"] == model.version
