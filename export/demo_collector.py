"""The demo's MQTT subscriber: everything the gateway publishes, kept for the summary and the plots."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from export.demo_gateway import GATEWAY_ID, BrokerSettings


def _epoch_s(iso: str) -> float:
    """UTC epoch seconds of an ISO 8601 time as the agent writes it; -inf if it is not one."""
    try:
        return dt.datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return float("-inf")


@dataclass
class Collector:
    """Subscribes to everything the gateway publishes and keeps it (thread-safe)."""
    broker: BrokerSettings
    messages: list[tuple[float, str, dict | str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Collector:
        b = self.broker
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="unimeter-demo-sub")
        if b.username:
            self._client.username_pw_set(b.username, b.password or None)
        if b.tls:

            self._client.tls_set(ca_certs=b.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
            self._client.tls_insecure_set(b.tls_insecure)
        topics = [(f"unimeter/{GATEWAY_ID}/#", 1), ("homeassistant/#", 1)]
        self._client.on_connect = lambda c, *_a: c.subscribe(topics)
        self._client.on_message = self._on_message
        self._client.connect(b.host, b.port)
        self._client.loop_start()
        return self

    def _on_message(self, _client, _userdata, msg) -> None:
        if msg.topic.startswith("homeassistant/") and f"/unimeter_{GATEWAY_ID}" not in msg.topic:
            return  # another device's discovery config on a shared broker
        try:
            body: dict | str = json.loads(msg.payload) if msg.payload else ""
        except ValueError:
            body = msg.payload.decode(errors="replace")
        with self._lock:
            self.messages.append((time.time(), msg.topic, body))

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def gateway_online_since(self, since_s: float) -> bool:
        """The gateway said it is online at or after ``since_s`` (UTC epoch seconds; a status an
        earlier run left retained on a shared broker is older)."""
        status = f"unimeter/{GATEWAY_ID}/status"
        with self._lock:
            said = [b.get("ts", "") for _t, topic, b in self.messages
                    if topic == status and isinstance(b, dict) and b.get("state") == "online"]
        return any(_epoch_s(ts) >= since_s for ts in said)

    def by_kind(self) -> dict[str, dict[str, list[dict]]]:
        """meter -> kind -> payloads, for unimeter/<gateway>/<meter>/<kind> topics."""
        out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        with self._lock:
            for _t, topic, body in self.messages:
                parts = topic.split("/")
                if parts[0] == "unimeter" and len(parts) == 4 and isinstance(body, dict):
                    out[parts[2]][parts[3]].append(body)
        return out

    def availability(self, meter_id: str) -> list[tuple[float, str]]:
        """(received at, "online"/"offline") of a meter's availability topic."""
        topic = f"unimeter/{GATEWAY_ID}/{meter_id}/availability"
        with self._lock:
            return [(t, str(b)) for t, tp, b in self.messages if tp == topic]

    def discovery_topics(self) -> list[str]:
        with self._lock:
            return sorted({t for _ts, t, b in self.messages if t.startswith("homeassistant/") and b})
