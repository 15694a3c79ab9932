"""TLS and username/password against a real mosquitto (TLS listener, password file, own CA)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading

import paho.mqtt.client as mqtt

from edge.agent.agent import Agent
from edge.agent.meters import build_sources
from tests.conftest import Mosquitto
from tests.edge.agent.helpers import make_config, write_pki


async def test_agent_publishes_over_tls_with_password(tmp_path, monkeypatch):
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    write_pki(broker_dir)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(broker_dir / "passwd"), "gateway", "pa55-w0rd"],
                   check=True, capture_output=True)
    broker = Mosquitto(broker_dir, anonymous=False, extra_conf=(
        f"cafile {broker_dir}/ca.pem\ncertfile {broker_dir}/server.pem\nkeyfile {broker_dir}/server.key\n"
        f"password_file {broker_dir}/passwd\n")).start()
    got: list[bytes] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-sub")
    sub.username_pw_set("gateway", "pa55-w0rd")
    sub.tls_set(ca_certs=str(broker_dir / "ca.pem"))
    subscribed = threading.Event()
    sub.on_connect = lambda c, *_: c.subscribe("unimeter/gw1/t1/reading", qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda _c, _u, m: got.append(m.payload)
    sub.connect("localhost", broker.port)
    sub.loop_start()
    assert subscribed.wait(60), "the test subscriber did not get its subscription"
    monkeypatch.setenv("UNIMETER_TEST_MQTT_PW", "pa55-w0rd")
    meters = [{"id": "t1", "kind": "virtual", "options": {"profile": "sine", "interval_s": 0.2}}]
    try:
        for password_env, expect in (("UNIMETER_TEST_MQTT_PW", True), ("UNIMETER_TEST_WRONG", False)):
            monkeypatch.setenv("UNIMETER_TEST_WRONG", "wrong")
            got.clear()
            cfg = make_config(tmp_path / f"state-{expect}", broker.port, meters, mqtt={
                "host": "localhost", "tls": True, "ca_file": str(broker_dir / "ca.pem"),
                "username": "gateway", "password_env": password_env})
            agent = Agent(cfg, build_sources(cfg))
            task = asyncio.create_task(agent.run())
            for _ in range(600):  # a condition with a generous ceiling (TLS start-up under load)
                if got if expect else (agent.publisher is not None and agent.publisher.last_error):
                    break
                await asyncio.sleep(0.1)
            error = agent.publisher.last_error
            agent.request_stop()
            await asyncio.wait_for(task, 30)
            if expect:
                assert got and json.loads(got[0])["meter"] == "t1"
            else:
                assert not got and "refused" in error  # wrong password: the broker says no
                assert "wrong" not in error
    finally:
        sub.loop_stop()
        broker.stop()
