"""MQTT publishing (paho-mqtt 2.x) from the SQLite outbox: delete a message only on its PUBACK.

paho runs its network loop in its own thread (``loop_start``); everything else (the outbox cursor,
the id bookkeeping, the store) lives in the agent's event loop. Acknowledgements cross over through
a lock-free deque, so there is no race between ``publish()`` returning a mid and its PUBACK.

While the broker is down nothing new is handed to paho (the outbox grows instead, bounded by the
store's policy). Messages already handed over stay in paho's session and are re-sent with the DUP
flag after the reconnect; if the process dies first they are still in the outbox and are sent
again after the restart. Either way a subscriber may see a message twice, never zero times.
"""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edge.agent.config import MqttConfig
from edge.agent.messages import Topics
from edge.agent.store import Message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ack:
    outbox_id: int
    created_s: float  # when the reading was received (reading messages) or the message made
    acked_s: float


class MqttPublisher:
    """A paho client with LWT, TLS, auth and outbox bookkeeping."""

    def __init__(self, cfg: MqttConfig, topics: Topics, client_id: str,
                 on_ha_online: Callable[[], None] | None = None):
        self.cfg, self.topics = cfg, topics
        self._acks: collections.deque[Ack] = collections.deque()
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (outbox id, created_s)
        self._on_ha_online = on_ha_online
        self.wakeup: Callable[[], None] = lambda: None  # set by the agent (thread-safe wake)
        self.connected = threading.Event()
        self.connects = 0
        self.last_error = ""
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                        protocol=mqtt.MQTTv311)
        c.will_set(topics.status, topics.status_payload("offline"), qos=1, retain=True)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password.reveal() or None)
        if cfg.tls:
            c.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None,
                      keyfile=cfg.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
            c.tls_insecure_set(cfg.tls_insecure)
        c.max_inflight_messages_set(cfg.max_inflight)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, max(1, int(cfg.reconnect_max_s)))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c

    # --- paho thread callbacks ------------------------------------------------------------------

    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            self.last_error = f"connect refused: {reason_code}"
            log.error("MQTT broker %s:%d refused the connection: %s", self.cfg.host, self.cfg.port,
                      reason_code)
            return
        self.connects += 1
        log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)
        client.publish(self.topics.status, self.topics.status_payload("online"), qos=1, retain=True)
        if self.cfg.discovery:
            client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)
        self.connected.set()
        self.wakeup()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        if self.connected.is_set():
            log.warning("MQTT disconnected (%s); publishing from the outbox resumes on reconnect",
                        reason_code)
        self.connected.clear()

    def _on_publish(self, _client, _userdata, mid, _reason_code, _props) -> None:
        self._acks.append(Ack(mid, 0.0, time.time()))  # mid resolved to an outbox id by drain_acks
        self.wakeup()

    def _on_message(self, _client, _userdata, msg) -> None:
        if msg.topic.endswith("/status") and msg.payload == b"online" and self._on_ha_online:
            log.info("Home Assistant came online: re-sending discovery")
            self._on_ha_online()

    # --- agent side --------------------------------------------------------------------------

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def publish(self, m: Message) -> bool:
        """Hand an outbox message to paho; False if paho refused it (it stays in the outbox)."""
        info = self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return False
        if m.qos == 0:  # no PUBACK will come: sent is as good as it gets
            self._acks.append(Ack(-1, m.created_s, time.time()))
            self._inflight[-m.id] = (m.id, m.created_s)
            return True
        self._inflight[info.mid] = (m.id, m.created_s)
        return True

    def drain_acks(self) -> list[Ack]:
        out = []
        while self._acks:
            a = self._acks.popleft()
            key = a.outbox_id
            entry = self._inflight.pop(key, None)
            if entry is None:  # QoS 0 marker or a PUBACK for a non-outbox message (status)
                continue
            out.append(Ack(entry[0], entry[1], a.acked_s))
        for key in [k for k in self._inflight if k < 0]:  # QoS 0
            oid, created = self._inflight.pop(key)
            out.append(Ack(oid, created, time.time()))
        return out

    def publish_direct(self, topic: str, payload: bytes, retain: bool = True) -> None:
        """A message outside the outbox (status): best effort, QoS 1."""
        self.client.publish(topic, payload, qos=1, retain=retain)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish 'offline' (a clean disconnect does not fire the LWT) and disconnect."""
        if self.connected.is_set():
            info = self.client.publish(self.topics.status, self.topics.status_payload("offline"),
                                       qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as e:
                log.warning("could not publish the offline status: %s", e)
        self.client.disconnect()
        self.client.loop_stop()
