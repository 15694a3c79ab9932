"""The demo's local broker: both kinds really accept an MQTT round trip."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from export.broker import LocalBroker


def _round_trip(port: int) -> bytes:
    got: list[bytes] = []
    done = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = lambda _c, _u, msg: (got.append(msg.payload), done.set())
    sub.connect("127.0.0.1", port)
    sub.subscribe("unimeter/test", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        for _ in range(50):  # the subscription may not be active yet: republish until it lands
            pub.publish("unimeter/test", b"hello", qos=1).wait_for_publish(2)
            if done.wait(0.2):
                break
    finally:
        pub.loop_stop()
        sub.loop_stop()
        pub.disconnect()
        sub.disconnect()
    return got[0] if got else b""


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_local_broker_round_trip(kind: str) -> None:
    with LocalBroker(kind=kind) as broker:
        assert broker.kind_used == kind
        assert _round_trip(broker.port) == b"hello"
