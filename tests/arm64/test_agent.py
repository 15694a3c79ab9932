"""The image's agent on aarch64 under emulation, ~90 s against a real Mosquitto on the host, with
a meter of every virtual kind the tree has (P1 over a pty, ZigBee on zigpy's test radio, Modbus
RTU over a pty bridge) and an in-process meter, each at 1 reading/s.

The agent is started as ``docker run`` starts the image: its entrypoint and command, user,
environment and working directory, the config at the command's path. The model windows are set
to 1 s bins (``schedule.*_resolution_s``) so that every task runs on live readings within the
run. The bundle is signed with a key made as on the workstation, and the agent refuses unsigned
ones. Expected: every meter publishes every kind of meter message the agent defines and keeps up
with its meter; the status reports no error, the log has none; the image's health check passes
while it runs; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import json
import time

from edge.agent.messages import TOPIC_KINDS
from edge.signing import sign_bundle
from tests.arm64.helpers import (
    FAST_SCHEDULE,
    GATEWAY,
    METERS,
    AgentProcess,
    agent_toml,
    readings_by_meter,
    signing_keys,
)
from tests.edge.agent.helpers import Recorder

RUN_S = 90.0
INTERVAL_S = 1.0


def test_agent_runs_every_meter_kind_and_task_on_aarch64(arm_root, check_bundle, mosquitto, tmp_path):
    # the bundle signed on the workstation; the gateway refuses anything not signed with its key
    bundle = arm_root.install_bundle(check_bundle)  # /var/lib/unimeter-bundles/current -> v1
    private_key, public_key = signing_keys(tmp_path / "keys")
    sign_bundle(arm_root.path / bundle.lstrip("/"), private_key)
    key_file = arm_root.put(public_key, "/etc/unimeter/bundle-signing.pub")
    meter_ids = [m for m, _ in METERS]
    rec = Recorder(mosquitto.port, ["unimeter/#", "homeassistant/#"], client_id="arm64-check")
    agent = AgentProcess.in_image(arm_root, agent_toml(mosquitto.port, bundle, interval_s=INTERVAL_S,
                                                       schedule=FAST_SCHEDULE, public_key_file=key_file))
    try:
        rec.wait_for(lambda: set(readings_by_meter(rec)) >= set(meter_ids) or not agent.alive, timeout_s=900)
        assert agent.alive and set(readings_by_meter(rec)) >= set(meter_ids), agent.log()
        t0 = time.time()
        while time.time() - t0 < RUN_S and agent.alive:
            time.sleep(1.0)
        assert agent.alive, f"the agent exited early:\n{agent.log()}"
        t1 = time.time()
        health = arm_root.run(arm_root.config["Healthcheck"]["Test"][1:], timeout=300)
    finally:
        stop_requested = time.strftime("%H:%M:%S", time.localtime())
        code = agent.stop()
        rec.wait_for(lambda: any(s.get("state") == "offline" for s in rec.json(f"/{GATEWAY}/status")), 10)
        rec.stop()
    log = agent.log()
    assert code == 0, log
    assert health.returncode == 0 and "healthy" in health.stdout, health.stdout + health.stderr

    # every meter published every kind of meter message the agent defines, and its discovery
    topics = rec.topics()
    missing = [f"{m}/{k}" for m in meter_ids for k in TOPIC_KINDS if f"unimeter/{GATEWAY}/{m}/{k}" not in topics]
    assert not missing, f"never published: {missing}\n{log[-3000:]}"
    for m in meter_ids:
        assert any(t.startswith("homeassistant/") and f"_{GATEWAY}_{m}/" in t for t in topics), m

    # the agent kept up with every meter: each reading a meter produced in the run was committed
    # and published (no hole in the sequence numbers), up to the run's end. The simulated meters
    # run inside the agent's process and sleep their interval after each telegram, so under
    # emulation on a busy host they produce somewhat less than 1/s; a real meter keeps its clock.
    readings = readings_by_meter(rec)
    kept = {}
    for m in meter_ids:
        inside = sorted(seq for seq, ts in readings[m].items() if t0 <= ts < t1)
        kept[m] = (len(inside), inside[-1] - inside[0] + 1 if inside else 0)
    print("readings per meter in the run (received, seq span):", kept, f"over {t1 - t0:.0f} s")
    for m, (n, span) in kept.items():
        assert n == span, f"{m}: sequence numbers missing in the run: {n} of {span}"
        assert n >= 0.5 * (t1 - t0) / INTERVAL_S, f"{m}: only {n} readings in {t1 - t0:.0f} s"
        assert max(readings[m].values()) >= t1 - 5 * INTERVAL_S, f"{m}: readings stopped before the end"

    # no error anywhere: status counters, model, log
    online = [s for s in rec.json(f"/{GATEWAY}/status") if s.get("state") == "online" and "errors" in s]
    assert online, sorted(topics)
    last = online[-1]
    assert last["errors"] == 0 and not last.get("model_error") and not last.get("last_error"), last
    assert str(last.get("model_backend", "")).startswith("onnxruntime"), last
    assert last["meters"] == len(METERS)
    assert last["outbox_rows"] <= 10 * len(METERS), last  # published as fast as produced
    lines = log.splitlines()
    bad = [i for i, line in enumerate(lines) if " ERROR " in line or "Traceback" in line or " CRITICAL " in line]
    context = ["\n".join(lines[max(0, i - 8):i + 3]) for i in bad[:5]]  # what led to it
    assert not bad, f"SIGTERM sent at {stop_requested}; errors in the log, with the lines before them:\n" + \
        "\n---\n".join(context)
    print("warnings:", [line for line in log.splitlines() if " WARNING " in line][:20])
    print(json.dumps({"run_s": round(t1 - t0, 1), "status": last}, indent=1))
