"""Every discovery payload the agent publishes passes Home Assistant's own discovery schemas.

Home Assistant needs Python >= 3.13.2 and cannot share this environment: it lives in
``.venv-homeassistant`` (``scripts/setup.sh`` builds it, a pinned release that knows
``default_entity_id``). ``ha_validate.py`` runs there and validates each config with the MQTT
integration's own ``DISCOVERY_SCHEMA`` of its platform, after the same preprocessing discovery
applies (abbreviations, device and origin schemas); it also reports keys the schema would drop
silently (a misspelt option) and Home Assistant's own checks of device class, state class and
unit. A missing side environment fails the test: it is an install step, not an optional extra.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edge.agent.agent import Agent
from edge.agent.discovery import Discovery, MeterInfo, ModelInfo
from edge.agent.discovery_state import DiscoveryState, discovery_messages
from edge.agent.inference import open_model
from edge.agent.messages import Topics, reading_values
from edge.agent.meters import build_sources
from firmware_bridge.reading import Reading
from tests.edge.agent.helpers import Recorder, make_config
from tests.edge.agent.test_e2e import _seed_history

ROOT = Path(__file__).resolve().parents[3]
HA_PYTHON = ROOT / ".venv-homeassistant" / "bin" / "python"
VALIDATOR = Path(__file__).with_name("ha_validate.py")
ALL_TASKS = ("imputation", "anomaly", "forecast", "nilm")


@pytest.fixture(scope="module")
def ha_python() -> Path:
    if not HA_PYTHON.exists():
        pytest.fail(f"{HA_PYTHON} is missing: run `bash scripts/setup.sh` (it builds the Home Assistant "
                    "side environment, and the Python 3.13 it needs if absent)")
    return HA_PYTHON


def validate(ha_python: Path, configs: dict[str, bytes], tmp_path: Path,
             states: dict[str, list[bytes]] | None = None) -> dict[str, dict]:
    """topic -> {"ok", "errors", "dropped", "warnings", "render"} from Home Assistant's own code;
    ``states``: payloads per state topic the templates are rendered over."""
    src = tmp_path / "configs.json"
    src.write_text(json.dumps({"configs": {t: p.decode() for t, p in configs.items()},
                               "states": {t: [p.decode() for p in ps] for t, ps in (states or {}).items()}}))
    done = subprocess.run([str(ha_python), str(VALIDATOR), str(src)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _assert_all_valid(results: dict[str, dict], configs: dict[str, bytes]) -> None:
    assert set(results) == set(configs)
    bad = {t: r for t, r in results.items() if not r["ok"] or r["dropped"] or r["warnings"] or r["render"]}
    assert not bad, json.dumps(bad, indent=1)[:4000]


def _dsmr_reading() -> Reading:
    """A three-phase P1 meter with tariffs, gas and water on its M-Bus, as the parser reports it."""
    extra = {"import_t1_wh": 1.2e6, "import_t2_wh": 2.3e6, "export_t1_wh": 1.0e5, "export_t2_wh": 2.0e5,
             "tariff": 2.0, "gas_m3": 1523.2, "gas_ts_s": 1.8e9, "water_m3": 88.1, "dsmr_version": "5"}
    for i in (1, 2, 3):
        extra |= {f"power_l{i}_w": 100.0 * i, f"voltage_l{i}_v": 230.0 + i, f"current_l{i}_a": 0.5 * i}
    return Reading("p1", 1.8e9, 1.8e9, 600.0, reactive_var=20.0, import_wh=3.5e6, export_wh=3.0e5,
                   voltage_v=231.0, current_a=0.5, source="dsmr", extra=extra)


def _all_values() -> list[str]:
    """Every key the reading payload can carry, including the typed groups of newer bridges."""
    keys = [k for k, v in reading_values(_dsmr_reading()).items() if v is not None]
    keys += ["export_t3_kwh", "import_t4_kwh", "reactive_import_kvarh", "reactive_export_kvarh",
             "power_failures", "long_power_failures", "heat_gj", "heat_2_kwh", "cooling_mwh",
             "water_2_m3", "water_l", "electricity_kwh"]
    return keys


def test_every_entity_kind_passes_home_assistants_schemas(ha_python, tmp_path):
    from edge.sim.specs import ALL_APPLIANCES

    d = Discovery(Topics("unimeter", "gw1"))
    configs: dict[str, bytes] = {}
    model = ModelInfo("v1", ALL_TASKS, ALL_APPLIANCES)
    cases = [  # (meter, values it sends, model)
        (MeterInfo("p1", "Smart meter", "dsmr"), _all_values(), model),
        (MeterInfo("sdm", "Heat pump", "modbus"), ["power_w", "energy_kwh", "export_kwh", "voltage_l1_v",
                                                    "current_l2_a", "power_l3_w", "reactive_var"], model),
        (MeterInfo("zb", "", "zigbee"), ["power_w"], ModelInfo("v2", ("forecast",))),
        (MeterInfo("sim", "Garage", "virtual"), ["power_w", "energy_kwh", "export_kwh"], None),
        (MeterInfo("hidden", "Sub-meter", "dsmr", hide_energy=True), ["power_w", "energy_kwh"], model),
    ]
    for meter, values, mi in cases:
        state = DiscoveryState(None)
        state.observe(meter.id, values)
        for m in discovery_messages(d, state, [meter], mi):
            configs[m.topic] = m.payload
    assert len(configs) > 150
    components = {t.split("/")[1] for t in configs}
    assert components == {"sensor", "binary_sensor", "event"}
    _assert_all_valid(validate(ha_python, configs, tmp_path, _state_payloads()), configs)


def _state_payloads() -> dict[str, list[bytes]]:
    """Messages as the agent builds them, including the ones that lack fields (a reading of a
    meter that sends no counter, the short status published on connect)."""
    from edge.agent.inference import forecast_body

    t = Topics("unimeter", "gw1")
    states: dict[str, list[bytes]] = {}
    for meter in ("p1", "sdm", "zb", "sim", "hidden"):
        full = t.reading_message(_dsmr_reading(), 7).payload
        bare = t.reading_message(Reading(meter, 1.8e9, 1.8e9, 40.0), 8).payload
        states[t.meter(meter, "reading")] = [full, bare]
        states[t.meter(meter, "availability")] = [b"online", b"offline"]
        fc = forecast_body(1.8e9, np.full(48, 500.0), np.array([400.0, 420.0]), "none", "v1")
        states[t.meter(meter, "forecast")] = [t.meter_message(meter, "forecast", 7, 1.8e9, fc).payload]
    health = {"ok": False, "problems": ["task writer is not running"], "warnings": [],
              "readings_guarded": {"invalid_values": 2, "implausible": 1, "counter_withheld": 0}}
    states[t.status] = [t.status_payload("online"), t.status_payload("offline"),
                        t.status_payload("online", outbox_rows=3, outbox_dropped=0, committed=10,
                                         latency_p50_ms=12.5, latency_p99_ms=80.0, errors=0,
                                         model_version="v1", last_error=None, started="2027-01-15T08:00:00Z",
                                         health=health)]
    states.update(_appliance_payloads(t))
    return states


def _appliance_payloads(t: Topics) -> dict[str, list[bytes]]:
    """The ``appliances`` bodies and the events of a kettle use, as the agent builds them."""
    from edge.agent.appliances import MeterAppliances
    from edge.nilm_output import NilmCalibration, decide
    from edge.sim.specs import ALL_APPLIANCES

    states: dict[str, list[bytes]] = {}
    for meter in ("p1", "sdm", "hidden"):
        tracker = MeterAppliances(ALL_APPLIANCES, NilmCalibration(), 10.0)
        on = np.zeros((len(ALL_APPLIANCES), 60), bool)
        on[ALL_APPLIANCES.index("kettle"), 10:28] = True
        logit = np.where(on, 3.0, -3.0)
        for start_s in (1.8e9, 1.8e9 + 600):
            decision = decide(logit, np.full(on.shape, 2000.0), np.full(60, 2500.0), ALL_APPLIANCES,
                              NilmCalibration())
            events = tracker.add(start_s, decision, 0, 60)
            body = {**tracker.snapshot(), "model_version": "v1"}
            states.setdefault(t.meter(meter, "appliances"), []).append(
                t.meter_message(meter, "appliances", 7, start_s, body).payload)
            for e in events:
                msg = t.appliance_event_message(meter, e.appliance, start_s, e.payload())
                states.setdefault(msg.topic, []).append(msg.payload)
    assert any("/event/kettle" in topic for topic in states)
    return states


def test_the_check_finds_what_home_assistant_would_refuse_or_warn_about(ha_python, tmp_path):
    """The validator can fail: a unit the device class does not allow, a misspelt option, and a
    template over a field the message lacks (Home Assistant's "Template variable warning")."""
    base = {"state_topic": "t/reading", "unique_id": "x1", "name": "Gas"}
    configs = {
        "homeassistant/sensor/n/bad_unit/config": dict(base, device_class="gas", unit_of_measurement="m3",
                                                       state_class="total_increasing"),
        "homeassistant/sensor/n/misspelt/config": dict(base, unit_of_measurment="kWh"),
        "homeassistant/sensor/n/template/config": dict(base, value_template="{{ value_json.energy_kwh }}"),
        "homeassistant/sensor/n/good/config": dict(base, device_class="gas", unit_of_measurement="m³",
                                                   state_class="total_increasing"),
    }
    configs["homeassistant/event/n/event/config"] = dict(base, state_topic="t/event",
                                                         event_types=["started", "finished"])
    results = validate(ha_python, {t: json.dumps(c).encode() for t, c in configs.items()}, tmp_path,
                       {"t/reading": [b'{"power_w": 5}'], "t/event": [b'{"event_type": "switched_on"}']})
    assert any("switched_on" in r for r in results["homeassistant/event/n/event/config"]["render"])
    assert not results["homeassistant/sensor/n/bad_unit/config"]["ok"]
    assert results["homeassistant/sensor/n/misspelt/config"]["dropped"] == ["unit_of_measurment"]
    assert any("energy_kwh" in w for w in results["homeassistant/sensor/n/template/config"]["render"])
    good = results["homeassistant/sensor/n/good/config"]
    assert good["ok"] and not good["dropped"] and not good["warnings"] and not good["render"]


async def test_every_config_the_agent_publishes_passes(ha_python, tiny_bundle, mosquitto, tmp_path):
    """The real agent with a meter of every kind and the real model: all retained configs."""
    now_s = time.time()
    meters = [
        {"id": "p1", "kind": "virtual-dsmr", "name": "P1 meter",
         "options": {"seed": 1, "start_s": now_s - 86400, "interval_s": 1.0, "phases": 3}},
        {"id": "sdm", "kind": "virtual-modbus", "name": "Heat pump",
         "options": {"seed": 2, "start_s": now_s - 86400, "interval_s": 1.0, "model": "sdm630"}},
        {"id": "zb1", "kind": "virtual-zigbee", "options": {"seed": 3, "start_s": now_s - 86400,
                                                         "report_interval_s": 1.0}},
        {"id": "s1", "kind": "virtual", "name": "Garage", "options": {"profile": "sine", "interval_s": 0.5}},
    ]
    cfg = make_config(tmp_path / "state", mosquitto.port, meters,
                      model={"bundle": str(tiny_bundle), "backend": "onnx", "precision": "int8"},
                      schedule={"profile_every_s": 3.0, "nilm_every_s": 2.0, "forecast_every_s": 3.0,
                                "quality_every_s": 2.0, "report_every_s": 3.0, "status_every_s": 2.0})
    kinds = ("reading", "quality", "anomaly", "appliances", "forecast", "report", "availability")
    nilm = open_model(tiny_bundle, "onnx", "int8", 1).tasks["nilm"]
    _seed_history(cfg.store_path, "p1", 1, now_s, nilm.resolution_s, nilm.length, attacked=False)

    def seen_all() -> bool:
        """Every meter read twice, its values observed, every kind of p1 and the status published,
        and no discovery config waiting to be sent."""
        topics, seqs = live.topics(), live.seqs()
        observed = agent.ha.state.values if agent.ha else {}
        return (all(len(seqs.get(m["id"], ())) >= 2 and observed.get(m["id"]) for m in meters)
                and all(any(t.endswith(f"/p1/{k}") for t in topics) for k in kinds)
                and any(t.endswith("/status") for t in topics) and not agent.ha.pending)

    live = Recorder(mosquitto.port, ["unimeter/#"], client_id="states-sub")  # what templates render
    agent = Agent(cfg, build_sources(cfg))
    task = asyncio.create_task(agent.run())
    try:
        for _ in range(1200):
            if seen_all():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"after 120 s the agent had not published every kind: {sorted(live.topics())}")
        await asyncio.sleep(2.0)  # the discovery round for the last new values
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 60)
    with live.lock:
        states: dict[str, list[bytes]] = {}
        for t, p, _ in live.messages:
            if not t.startswith("homeassistant/") and p:
                states.setdefault(t, []).append(p)
    live.stop()
    rec = Recorder(mosquitto.port, ["homeassistant/#"], client_id="schema-sub")  # retained configs
    assert rec.wait_for(lambda: len(rec.topics()) > 40, 10)
    time.sleep(0.5)
    rec.stop()
    with rec.lock:
        configs = {t: p for t, p, retained in rec.messages if p and retained}
    for meter in ("p1", "sdm", "zb1", "s1"):
        assert f"homeassistant/sensor/unimeter_gw1_{meter}/power/config" in configs, meter
    assert "homeassistant/sensor/unimeter_gw1_p1/gas/config" in configs
    assert "homeassistant/event/unimeter_gw1_p1/appliance_fridge_event/config" in configs or any(
        "/event/" in t for t in configs)
    for kind in kinds:
        assert any(t.endswith(f"/p1/{kind}") for t in states), kind
    _assert_all_valid(validate(ha_python, configs, tmp_path, states), configs)
