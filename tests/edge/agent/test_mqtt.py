"""The outbox publisher against a real Mosquitto: a message is acknowledged by its outbox id only
after the broker's PUBACK, the subscriber gets it, QoS 0 counts as sent, the last will says
offline, and connection failures become one clear line."""

from __future__ import annotations

import time

from edge.agent.config import MqttConfig
from edge.agent.messages import Topics
from edge.agent.mqtt import MqttPublisher, classify_connect_error
from edge.agent.store import Message
from tests.edge.agent.helpers import Recorder, wait_for, wait_subscribed

TOPICS = Topics("unimeter", "gw1")


def _publisher(port: int, **options) -> MqttPublisher:
    cfg = MqttConfig(host="127.0.0.1", port=port, keepalive_s=5, reconnect_max_s=1.0, **options)
    pub = MqttPublisher(cfg, TOPICS, client_id="unimeter-test")
    pub.start()
    assert pub.connected.wait(15), pub.last_error
    return pub


def test_acks_resolve_to_outbox_ids_after_the_broker_took_them(mosquitto):
    rec = Recorder(mosquitto.port, topics=("unimeter/#",))
    pub = _publisher(mosquitto.port)
    try:
        assert wait_subscribed(rec, pub)
        sent = [Message("unimeter/gw1/m1/reading", f'{{"seq": {i}}}'.encode(), 1, False, 100 + i, time.time())
                for i in range(3)]
        assert all(pub.publish(m) for m in sent)
        assert 0 < pub.inflight <= 3
        acks: list = []
        assert wait_for(lambda: acks.extend(pub.drain_acks()) or len(acks) == 3)
        assert sorted(a.outbox_id for a in acks) == [100, 101, 102]
        assert not any(a.refused for a in acks) and pub.inflight == 0 and pub.published == 3
        assert rec.wait_for(lambda: len(rec.json("/m1/reading")) == 3, 10)
        assert [m["seq"] for m in rec.json("/m1/reading")] == [0, 1, 2]
        # QoS 0: nothing will come back, so handing it over is all there is
        assert pub.publish(Message("unimeter/gw1/m1/quality", b"{}", 0, False, 200, time.time()))
        assert [a.outbox_id for a in pub.drain_acks()] == [200]
    finally:
        pub.stop()
        rec.stop()


def test_the_last_will_says_offline_when_the_connection_dies(mosquitto):
    rec = Recorder(mosquitto.port, topics=("unimeter/gw1/status", "unimeter/gw1/probe"))
    pub = _publisher(mosquitto.port)
    assert wait_subscribed(rec, pub)
    pub.client.socket().close()  # the connection drops without a DISCONNECT: the broker sends the will
    assert rec.wait_for(lambda: any(p.get("state") == "offline" for p in rec.json("/status")), 20)
    pub.stop()
    rec.stop()


def test_a_closed_port_is_one_clear_line_and_health_says_so():
    from tests.conftest import free_port

    cfg = MqttConfig(host="127.0.0.1", port=free_port(), keepalive_s=5, reconnect_max_s=1.0)
    kind, text = classify_connect_error(ConnectionRefusedError(111, "Connection refused"), cfg)
    assert kind and "127.0.0.1" in text and "\n" not in text
    pub = MqttPublisher(cfg, TOPICS, client_id="unimeter-test")
    pub.start()
    try:
        assert wait_for(lambda: bool(pub.last_error), 15) and not pub.connected.is_set()
        assert pub.last_error_kind and pub.problems(grace_s=0)
    finally:
        pub.stop()
