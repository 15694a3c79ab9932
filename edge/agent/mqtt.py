"""MQTT publishing (paho-mqtt 2.x) from the SQLite outbox: delete a message only on a good PUBACK.

paho runs its network loop in its own thread (``loop_start``); everything else (the outbox cursor,
the id bookkeeping, the store) lives in the agent's event loop. Acknowledgements cross over through
a lock-free deque, so there is no race between ``publish()`` returning a mid and its PUBACK.

While the broker is down nothing new is handed to paho (the outbox grows instead, bounded by the
store's policy). Messages already handed over stay in paho's session and are re-sent with the DUP
flag after the reconnect; if the process dies first they are still in the outbox and are sent
again after the restart. Either way a subscriber may see a message twice, never zero times.

Protocol
--------
``mqtt.protocol = "auto"`` (default) speaks MQTT 5 and falls back to 3.1.1 when the broker answers
the CONNECT with "unsupported protocol version" (a 3.1.1-only broker's CONNACK 0x01), or twice in a
row does not answer it at all (amqtt closes nothing and sends nothing: paho's keepalive ends the
attempt). The choice holds until the agent restarts; pin ``protocol = "5"`` to never fall back. Under MQTT 5
every PUBACK carries a reason code (MQTT 5.0 §3.4.2.1): one of 0x80 and above means the broker did
not accept the message (0x87 Not authorized: an ACL). Such a message is *not* deleted: it stays in
the outbox, held (``store.hold``), its topic is held too (later messages on it are kept without
being sent) and it is logged and reported in health. Every ``mqtt.refused_retry_s`` the oldest
held message of one topic is sent again as a probe; when the broker takes it, every held message
is released and sent.

What Mosquitto 2.0.11 (Debian bookworm) does with a publish its ACL denies (measured, see
tests/edge/agent/test_mqtt_faults.py): MQTT 5, QoS 1: PUBACK with reason code 0x87, then it closes
the connection. MQTT 3.1.1, QoS 1: a plain PUBACK (3.1.1 has no reason code, and [MQTT-3.3.5-2]
lets a broker acknowledge what it drops), then it closes the connection. QoS 0: nothing comes back
and the connection is closed. So under 3.1.1 a refused publish cannot be told from a delivered
one: the agent deletes it as delivered; all it sees is the broker closing the connection right
after, which is logged (``MQTT disconnected``) and counted (``mqtt.disconnects`` in health). The
reading itself stays in the store (``retention_days``). Use MQTT 5 where the broker speaks it.

Connection failures
-------------------
paho reports only *that* a connection attempt failed; ``_Client`` keeps the exception, and
:func:`classify_connect_error` turns it (or a refusing CONNACK) into a kind and one clear line:
an untrusted CA, a certificate for another host name, an expired certificate, a refused user
name or password, a firewall, an unknown host. The line is logged when the failure starts, when
it changes and every minute while it lasts, and it is in health. It never holds a secret.
"""

from __future__ import annotations

import collections
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edge.agent.config import MqttConfig
from edge.agent.health import MqttHealth
from edge.agent.messages import Topics
from edge.agent.store import Message
from edge.agent.supervise import FailureSpell

log = logging.getLogger(__name__)


class _CallbackErrorsOnly(logging.Filter):
    """Of paho's own log lines keep only "Caught exception in on_...": its connection chatter
    (one line every 2 s while the broker is down) would drown the one line a FailureSpell writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage().startswith("Caught exception")


_paho_log = logging.getLogger(f"{__name__}.paho")
_paho_log.addFilter(_CallbackErrorsOnly())

# Kinds of connection failure (health's mqtt.last_error_kind).
CONNECT_ERROR_KINDS = (
    "tls_untrusted_ca", "tls_hostname_mismatch", "tls_expired", "tls_verify", "tls_handshake",
    "auth_bad_credentials", "auth_not_authorized", "refused_by_broker", "unsupported_protocol",
    "connection_refused", "not_permitted", "dns", "timeout", "network", "no_connack",
)
# OpenSSL X509_V_ERR_* codes (x509_vfy.h) by what they mean to an operator.
_UNTRUSTED = {2, 18, 19, 20, 21, 27, 28}  # unknown issuer, self-signed, untrusted, rejected
_HOSTNAME = {62, 63, 64}  # host name, e-mail, IP address mismatch
_EXPIRED = {9, 10}  # not yet valid, expired
UNSUPPORTED_PROTOCOL = 0x84  # CONNACK reason code (3.1.1 return code 0x01 maps here)
PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


@dataclass(frozen=True, slots=True)
class Ack:
    outbox_id: int
    created_s: float  # when the reading was received (reading messages) or the message made
    acked_s: float
    reason_code: int = 0  # MQTT 5 PUBACK reason code; >= 0x80: refused (kept, not delivered)
    reason: str = ""
    topic: str = ""

    @property
    def refused(self) -> bool:
        return self.reason_code >= 0x80


class _Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed."""

    connect_error: BaseException | None = None
    connack_seen = True  # False from the start of an attempt until the broker answers it

    def reconnect(self) -> mqtt.MQTTErrorCode:
        self.connack_seen = False
        try:
            return super().reconnect()
        except OSError as e:
            self.connect_error = e
            raise


def classify_connect_error(error: BaseException, cfg: MqttConfig) -> tuple[str, str]:
    """(kind, one line) for a failed TCP/TLS connection attempt (no secret in the line)."""
    where = f"{cfg.host}:{cfg.port}"
    if isinstance(error, ssl.SSLCertVerificationError):
        code, text = error.verify_code, error.verify_message
        if code in _HOSTNAME:
            return "tls_hostname_mismatch", (
                f"TLS: the certificate of {where} is not valid for the host name {cfg.host!r} "
                f"({text}); set mqtt.host to a name the certificate lists")
        if code in _UNTRUSTED:
            return "tls_untrusted_ca", (
                f"TLS: the certificate of {where} is not signed by a CA in mqtt.ca_file "
                f"({cfg.ca_file or 'system default'}): {text}")
        if code in _EXPIRED:
            return "tls_expired", f"TLS: the certificate of {where} is outside its validity period: {text}"
        return "tls_verify", f"TLS: the certificate of {where} was refused: {text} (code {code})"
    if isinstance(error, ssl.SSLError):
        hint = " (is the port a TLS listener?)" if "WRONG_VERSION" in str(error).upper() else ""
        return "tls_handshake", f"TLS handshake with {where} failed: {error.reason or error}{hint}"
    if isinstance(error, ConnectionRefusedError):
        return "connection_refused", f"{where} refused the TCP connection (broker not running, or wrong port)"
    if isinstance(error, PermissionError):
        return "not_permitted", (f"connecting to {where} is not permitted: {error.strerror} (a firewall, "
                                 "or the service's IPAddressAllow= does not list the broker)")
    if isinstance(error, socket.gaierror):
        return "dns", f"cannot resolve the broker host {cfg.host!r}: {error.strerror}"
    if isinstance(error, TimeoutError | socket.timeout):
        return "timeout", f"no answer from {where} (timed out)"
    if isinstance(error, OSError):
        return "network", f"cannot reach {where}: {error.strerror or error}"
    return "network", f"cannot connect to {where}: {error}"  # pragma: no cover


def classify_connack(reason_code: int, reason: str, cfg: MqttConfig) -> tuple[str, str]:
    """(kind, one line) for a CONNACK that refused the connection."""
    where = f"{cfg.host}:{cfg.port}"
    user = f" (user {cfg.username!r})" if cfg.username else " (no user name configured)"
    if reason_code == 0x86:
        return "auth_bad_credentials", f"{where} refused the user name or password{user}"
    if reason_code == 0x87:  # Mosquitto 2.0 answers a wrong password with this, too
        return "auth_not_authorized", (f"{where} refused the connection: not authorized{user}: a bad "
                                       "password, or a user the broker does not let in")
    if reason_code == UNSUPPORTED_PROTOCOL:
        return "unsupported_protocol", f"{where} does not speak this MQTT version"
    return "refused_by_broker", f"{where} refused the connection: {reason} (reason code 0x{reason_code:02X})"


class MqttPublisher:
    """A paho client with LWT, TLS, auth, reason codes and outbox bookkeeping."""

    def __init__(self, cfg: MqttConfig, topics: Topics, client_id: str,
                 on_ha_online: Callable[[], None] | None = None):
        self.cfg, self.topics, self.client_id = cfg, topics, client_id
        self._acks: collections.deque[Ack] = collections.deque()
        self._inflight: dict[int, tuple[int, float, str]] = {}  # mid -> (outbox id, created_s, topic)
        self._direct: dict[int, str] = {}  # mid -> topic of messages outside the outbox (status)
        self._on_ha_online = on_ha_online
        self.wakeup: Callable[[], None] = lambda: None  # set by the agent (thread-safe wake)
        self.connected = threading.Event()
        self.connects = 0
        self.disconnects = 0
        self.last_error = ""
        self.last_error_kind = ""
        self.last_error_s: float | None = None
        self.disconnected_since_s: float | None = time.time()
        self.connect_spell = FailureSpell(f"MQTT connection to {cfg.host}:{cfg.port}", log)
        self.held: dict[str, str] = {}  # topic -> reason the broker gave (refused publishes)
        self._stopping = False  # stop() called: the disconnect that follows is ours, not a fault
        self.refused = 0
        self.published = 0
        self.protocol = "3.1.1" if cfg.protocol == "3.1.1" else "5"
        self._unanswered = 0  # CONNECTs in a row the broker never answered
        self.client = self._build_client()

    def _build_client(self) -> _Client:
        cfg = self.cfg
        if self.protocol == "5":
            c = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        else:
            c = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True,
                        protocol=mqtt.MQTTv311)
        c.will_set(self.topics.status, self.topics.status_payload("offline"), qos=1, retain=True)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password.reveal() or None)
        if cfg.tls:
            c.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None,
                      keyfile=cfg.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
            c.tls_insecure_set(cfg.tls_insecure)
        # an exception in one of our callbacks must not end paho's network thread (nothing would
        # reconnect or publish again): paho logs it (ERROR, logger edge.agent.mqtt.paho) and goes on
        c.suppress_exceptions = True
        c.enable_logger(_paho_log)
        c.max_inflight_messages_set(cfg.max_inflight)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, max(1, int(cfg.reconnect_max_s)))
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        return c

    # --- paho thread callbacks ------------------------------------------------------------------

    def _fail(self, kind: str, text: str) -> None:
        self.last_error, self.last_error_kind, self.last_error_s = text, kind, time.time()
        self.connect_spell.fail(text)

    def _on_connect_fail(self, client, _userdata) -> None:
        if client is not self.client:  # replaced by the fallback to 3.1.1
            return
        error = getattr(client, "connect_error", None)
        if error is not None:
            self._fail(*classify_connect_error(error, self.cfg))

    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        client.connack_seen = True
        if reason_code.is_failure:
            kind, text = classify_connack(reason_code.value, str(reason_code), self.cfg)
            if kind == "unsupported_protocol" and self.protocol == "5" and self.cfg.protocol == "auto":
                self._fall_back_to_311(client)
                return
            self._fail(kind, text)
            return
        self.connects += 1
        self._unanswered = 0
        self.connect_spell.ok()
        self.disconnected_since_s = None
        log.info("MQTT connected to %s:%d (MQTT %s)", self.cfg.host, self.cfg.port, self.protocol)
        info = client.publish(self.topics.status, self.topics.status_payload("online"), qos=1, retain=True)
        self._direct[info.mid] = self.topics.status
        if self.cfg.discovery:
            client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)
        self.connected.set()
        self.wakeup()

    def _fall_back_to_311(self, old: _Client) -> None:
        """The broker does not speak MQTT 5: rebuild the client for 3.1.1 (nothing is in flight
        yet: the agent hands messages to paho only once connected).

        Runs in the old client's thread, which goes on (its disconnect callback returns, its loop
        ends) while the new client may already be connected: from here on every callback of the old
        client is ignored, or its late disconnect would mark the new connection as down and nothing
        would be published again."""
        log.warning("MQTT broker %s:%d does not speak MQTT 5; falling back to 3.1.1, where a publish "
                    "the broker refuses cannot be detected (see deploy/README.md)", self.cfg.host,
                    self.cfg.port)
        old.loop_stop()  # from its own thread: only asks the loop to end
        self.protocol = "3.1.1"
        self.client = self._build_client()
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def _on_disconnect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if client is not self.client:  # replaced by the fallback to 3.1.1: the new one owns the state
            return
        if self._stopping:
            log.info("MQTT disconnected (%s)", reason_code)
        elif self.connected.is_set():
            self.disconnects += 1
            self.disconnected_since_s = time.time()
            log.warning("MQTT disconnected (%s); publishing from the outbox resumes on reconnect",
                        reason_code)
        elif not getattr(client, "connack_seen", True):  # the broker never answered the CONNECT
            self._unanswered += 1
            if self.protocol == "5" and self.cfg.protocol == "auto" and self._unanswered >= 2:
                self._fall_back_to_311(client)
                return  # the 3.1.1 client may be connected already: its state is not ours to clear
            self._fail("no_connack", f"{self.cfg.host}:{self.cfg.port} did not answer the MQTT "
                                     f"{self.protocol} CONNECT ({reason_code})")
        self.connected.clear()

    def _on_publish(self, _client, _userdata, mid, reason_code, _props) -> None:
        code = int(getattr(reason_code, "value", 0) or 0)
        # mid is resolved to an outbox id by drain_acks
        self._acks.append(Ack(mid, 0.0, time.time(), code, str(reason_code) if code else ""))
        self.wakeup()

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _props) -> None:
        for rc in reason_codes:
            if rc.is_failure:
                log.error("MQTT broker refused the subscription to %s/status (%s): Home Assistant "
                          "restarts will not trigger a discovery re-send", self.cfg.discovery_prefix, rc)

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
            self._inflight[-m.id] = (m.id, m.created_s, m.topic)
            return True
        self._inflight[info.mid] = (m.id, m.created_s, m.topic)
        return True

    def drain_acks(self) -> list[Ack]:
        """Acknowledgements since the last call, resolved to outbox ids (refused ones included,
        with their reason code: the caller keeps those, see ``Ack.refused``)."""
        out = []
        while self._acks:
            a = self._acks.popleft()
            entry = self._inflight.pop(a.outbox_id, None)
            if entry is None:  # QoS 0 marker, or a message outside the outbox (status)
                topic = self._direct.pop(a.outbox_id, "")
                if topic and a.refused:
                    log.error("MQTT broker refused the message on %s: %s", topic, a.reason)
                continue
            out.append(Ack(entry[0], entry[1], a.acked_s, a.reason_code, a.reason, entry[2]))
        for key in [k for k in self._inflight if k < 0]:  # QoS 0
            oid, created, topic = self._inflight.pop(key)
            out.append(Ack(oid, created, time.time(), topic=topic))
        for a in out:
            if a.refused:
                self._note_refused(a)
            else:
                self.published += 1
        return out

    def _note_refused(self, a: Ack) -> None:
        self.refused += 1
        if a.topic not in self.held:
            log.error("MQTT broker refused a publish on %s: %s (reason code 0x%02X); its messages stay "
                      "in the outbox, held, and are offered again every %.0f s", a.topic, a.reason,
                      a.reason_code, self.cfg.refused_retry_s)
        self.held[a.topic] = f"{a.reason} (0x{a.reason_code:02X})"

    def release(self, topic: str) -> None:
        """The broker took a message on ``topic`` again: stop holding it."""
        if self.held.pop(topic, None) is not None:
            log.warning("MQTT broker accepts publishes on %s again; releasing its held messages", topic)

    def forget_inflight(self) -> None:
        """The store was replaced: acknowledgements of what is in flight refer to nothing now."""
        self._inflight.clear()

    def publish_direct(self, topic: str, payload: bytes, retain: bool = True) -> None:
        """A message outside the outbox (status): best effort, QoS 1."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self._direct[info.mid] = topic

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish 'offline' (a clean disconnect does not fire the LWT) and disconnect."""
        self._stopping = True
        if self.connected.is_set():
            info = self.client.publish(self.topics.status, self.topics.status_payload("offline"),
                                       qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as e:
                log.warning("could not publish the offline status: %s", e)
        self.client.disconnect()
        stopper = threading.Thread(target=self.client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(timeout_s)
        if stopper.is_alive():  # never hold up the shutdown (systemd's TimeoutStopSec) for paho
            log.warning("the MQTT network thread did not stop within %.0f s; leaving it", timeout_s)

    # --- health -----------------------------------------------------------------------------

    def health(self) -> MqttHealth:
        return MqttHealth(
            enabled=True, protocol=self.protocol, connected=self.connected.is_set(),
            connects=self.connects, disconnects=self.disconnects,
            connect_failures=self.connect_spell.attempts, disconnected_since_s=self.disconnected_since_s,
            last_error=self.last_error, last_error_kind=self.last_error_kind,
            last_error_s=self.last_error_s, published=self.published, refused=self.refused,
            refused_topics=dict(self.held))

    def problems(self, grace_s: float = 60.0) -> list[str]:
        out = []
        since = self.disconnected_since_s
        if since is not None and time.time() - since > grace_s:
            why = f": {self.last_error}" if self.connect_spell.failing else ""
            out.append(f"MQTT not connected for {time.time() - since:.0f} s{why}")
        if self.held:
            topic, reason = next(iter(self.held.items()))
            out.append(f"the broker refuses publishes on {len(self.held)} topic(s), e.g. {topic}: {reason}")
        return out
