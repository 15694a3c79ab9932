"""Test helpers: a real paho subscriber that records everything, config builders, a test PKI."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import threading
import time
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.agent.config import AgentConfig, parse_config


class Recorder:
    """Subscribes to ``topics`` (QoS 1); ``persistent=True`` keeps its session across broker restarts."""

    def __init__(self, port: int, topics=("#",), client_id: str = "recorder", persistent: bool = False):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not persistent)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: [c.subscribe(t, qos=1) for t in topics]
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def json(self, suffix: str) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix) and p]

    def topics(self) -> set[str]:
        with self.lock:
            return {t for t, _, _ in self.messages}

    def seqs(self) -> dict[str, list[int]]:
        """Sequence numbers received per meter (a message holds seq_first..seq)."""
        out: dict[str, list[int]] = defaultdict(list)
        for m in self.json("/reading"):
            out[m["meter"]].extend(range(m["seq_first"], m["seq"] + 1))
        return out

    def samples(self) -> dict[tuple[str, int], tuple[float, float]]:
        """(meter, seq) -> (ts_s, power_w) of every reading received."""
        out = {}
        for m in self.json("/reading"):
            s = m.get("samples") or {"seq": [m["seq"]], "ts_s": [m["ts_s"]], "power_w": [m["power_w"]]}
            for seq, ts, p in zip(s["seq"], s["ts_s"], s["power_w"], strict=True):
                out[(m["meter"], seq)] = (ts, p)
        return out

    def wait_for(self, predicate, timeout_s: float, poll_s: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(poll_s)
        return predicate()


def wait_for(predicate, timeout_s: float = 15.0) -> bool:
    """Poll ``predicate`` every 50 ms until it holds or ``timeout_s`` passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


async def until(predicate, polls: int = 3000) -> bool:
    """In a coroutine: poll ``predicate`` every 10 ms, at most ``polls`` times (a condition with a
    generous ceiling, not a time); its last value."""
    for _ in range(polls):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def wait_subscribed(rec: Recorder, pub, probe_topic: str = "unimeter/gw1/probe") -> bool:
    """Until the recorder's subscription is live: it sees a probe ``pub`` (an MqttPublisher) sends."""
    def seen() -> bool:
        pub.publish_direct(probe_topic, b"{}", retain=False)
        return rec.wait_for(lambda: probe_topic in rec.topics(), 0.5)
    return wait_for(seen, 15)


def make_config(state_dir: Path, port: int, meters: list[dict], **sections) -> AgentConfig:
    data = {
        "gateway": {"id": "gw1", "state_dir": str(state_dir)},
        "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 5, "reconnect_max_s": 1.0},
        "store": {"batch_interval_s": 0.02, "synchronous": "normal"},
        "meters": meters,
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return parse_config(data)


def toml_text(state_dir: Path, port: int, meters: list[dict], extra: str = "") -> str:
    lines = [f'[gateway]\nid = "gw1"\nstate_dir = "{state_dir}"\n',
             f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nkeepalive_s = 5\nreconnect_max_s = 1.0\n',
             '[store]\nbatch_interval_s = 0.02\nsynchronous = "normal"\n', extra]
    for m in meters:
        lines.append(f'[[meters]]\nid = "{m["id"]}"\nkind = "{m["kind"]}"\n[meters.options]\n')
        for k, v in m.get("options", {}).items():
            lines.append(f"{k} = {json.dumps(v)}\n")
    return "\n".join(lines)


def write_pki(d: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1"), prefix: str = "") -> None:
    """A CA and a server certificate for ``names`` (DNS names or IP addresses), PEM files in ``d``:
    ``<prefix>ca.pem``, ``<prefix>server.pem``, ``<prefix>server.key``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"unimeter test CA {prefix}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    sans = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / f"{prefix}ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / f"{prefix}server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{prefix}server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
