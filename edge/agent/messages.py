"""MQTT topics, JSON payloads and Home Assistant discovery configs (pure functions, no I/O).

Topics (``base`` defaults to ``unimeter``)::

    <base>/<gateway>/status                  retained JSON {"state": "online"|"offline", ...} (LWT)
    <base>/<gateway>/event                   gateway events, e.g. {"event": "store_recovered", ...}
    <base>/<gateway>/<meter>/reading         retained, per stored reading (or a few, see
                                             reading_messages), with "seq_first".."seq"
    <base>/<gateway>/<meter>/quality         retained
    <base>/<gateway>/<meter>/anomaly         retained
    <base>/<gateway>/<meter>/appliances      retained
    <base>/<gateway>/<meter>/forecast        retained
    <base>/<gateway>/<meter>/report          retained
    <discovery_prefix>/<component>/unimeter_<gateway>_<meter>/<object>/config   retained

Payloads are JSON with units in the key names (``power_w``, ``import_wh``, ``energy_kwh``,
``resolution_s``), UTC timestamps as both ISO 8601 (``ts``) and epoch seconds (``ts_s``), and the
per-meter sequence number ``seq`` of the latest reading the message is based on, with the store
``epoch`` it counts in. ``(meter, epoch, seq)`` makes QoS 1 duplicates recognisable: a subscriber
drops a message whose ``(epoch, seq)`` it has seen; a new epoch is a new store (``seq`` restarts at
1), not a replay (edge.agent.store, "Store epoch").

The state topics are retained because Home Assistant reads an entity's state from the retained
message when it (re)starts; availability comes from the gateway status topic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge.agent.store import Message, StoredReading
from firmware_bridge.reading import Reading

TOPIC_KINDS = ("reading", "quality", "anomaly", "appliances", "forecast", "report")
SW_VERSION = "0.1.0"


def iso_utc(ts_s: float) -> str:
    """Epoch seconds -> ``2026-11-22T06:30:00.000Z``."""
    return datetime.fromtimestamp(ts_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def _finite(x: float | None, ndigits: int = 3) -> float | None:
    if x is None or x != x or x in (float("inf"), float("-inf")):
        return None
    return round(float(x), ndigits)


@dataclass(frozen=True)
class Topics:
    base: str
    gateway: str
    discovery_prefix: str = "homeassistant"
    qos: int = 1
    epoch: str = ""  # the store's epoch (edge.agent.store), carried by every meter message

    @property
    def status(self) -> str:
        return f"{self.base}/{self.gateway}/status"

    @property
    def event(self) -> str:
        return f"{self.base}/{self.gateway}/event"

    def event_message(self, body: Mapping) -> Message:
        """A gateway event (``body["event"]`` names it), retained so a late subscriber sees the last."""
        payload = {"gateway": self.gateway, "ts": iso_utc(_now()), **body}
        return Message(self.event, dumps(payload), self.qos, retain=True)

    def meter(self, meter_id: str, kind: str) -> str:
        if kind not in TOPIC_KINDS:
            raise ValueError(f"unknown topic kind {kind!r}; known: {TOPIC_KINDS}")
        return f"{self.base}/{self.gateway}/{meter_id}/{kind}"

    # --- messages -----------------------------------------------------------------------------

    def reading_messages(self, group: Sequence[StoredReading], max_per_message: int = 1) -> list[Message]:
        """Reading messages of one meter's readings from one commit, ``max_per_message`` at most each.

        One reading per message is what Home Assistant wants from a 1-10 s meter, and what a meter
        at those rates gets in any case (a commit holds 50 ms of readings). A high-rate meter (NILM
        at 10-50 Hz) or a backlog would cost one QoS 1 round trip per sample, which is where a Pi
        runs out of CPU; with ``max_per_message`` > 1 the message carries the latest reading in the
        usual fields (the HA state) plus every reading in ``samples`` (columnar: seq, ts_s,
        power_w), and ``seq_first``..``seq`` says which sequence numbers it holds. ``created_s`` is
        the receive time of the oldest reading in it, so latency is measured for the worst one.
        """
        out = []
        for i in range(0, len(group), max_per_message):
            chunk = group[i:i + max_per_message]
            m = self.reading_message(chunk[-1].reading, chunk[-1].seq, chunk[0].reading.received_s)
            if len(chunk) > 1:
                body = json.loads(m.payload)
                body["seq_first"] = chunk[0].seq
                body["samples"] = {"seq": [s.seq for s in chunk],
                                   "ts_s": [s.reading.ts_s for s in chunk],
                                   "power_w": [_finite(s.reading.power_w) for s in chunk]}
                m = Message(m.topic, dumps(body), m.qos, m.retain, created_s=m.created_s)
            out.append(m)
        return out

    def reading_message(self, r: Reading, seq: int, created_s: float | None = None) -> Message:
        payload = {
            "meter": r.meter_id, "epoch": self.epoch, "seq": seq, "seq_first": seq, "ts": iso_utc(r.ts_s),
            "ts_s": r.ts_s,
            "received_s": round(r.received_s, 3), "power_w": _finite(r.power_w),
            "reactive_var": _finite(r.reactive_var), "import_wh": _finite(r.import_wh),
            "export_wh": _finite(r.export_wh), "voltage_v": _finite(r.voltage_v),
            "current_a": _finite(r.current_a), "source": r.source, "flags": int(r.flags),
        }
        if r.import_wh is not None:
            payload["energy_kwh"] = _finite(r.import_wh / 1000.0, 4)
        return Message(self.meter(r.meter_id, "reading"), dumps(payload), self.qos, retain=True,
                       created_s=r.received_s if created_s is None else created_s)

    def meter_message(self, meter_id: str, kind: str, seq: int, ts_s: float, body: Mapping) -> Message:
        """A derived message (quality/anomaly/appliances/forecast/report) with the common header."""
        payload = {"meter": meter_id, "epoch": self.epoch, "seq": seq, "ts": iso_utc(ts_s), "ts_s": ts_s,
                   **body}
        return Message(self.meter(meter_id, kind), dumps(payload), self.qos, retain=True)

    def status_payload(self, state: str, **details: Any) -> bytes:
        return dumps({"state": state, "gateway": self.gateway, "ts": iso_utc(_now()), **details})

    # --- Home Assistant discovery -----------------------------------------------------------------

    def _device(self, meter_id: str, name: str, model_version: str) -> dict:
        return {
            "identifiers": [f"unimeter_{self.gateway}_{meter_id}"],
            "name": name or f"Meter {meter_id}",
            "manufacturer": "unimeter",
            "model": f"unimeter gateway {self.gateway}",
            "sw_version": f"{SW_VERSION} (model {model_version})" if model_version else SW_VERSION,
        }

    def _config(self, component: str, meter_id: str, obj: str, device: dict, **fields: Any) -> Message:
        uid = f"unimeter_{self.gateway}_{meter_id}_{obj}"
        cfg = {
            "unique_id": uid, "object_id": uid, "device": device,
            "availability_topic": self.status, "availability_template": "{{ value_json.state }}",
            "payload_available": "online", "payload_not_available": "offline",
            "origin": {"name": "unimeter", "sw_version": SW_VERSION},
            "qos": self.qos, **fields,
        }
        topic = f"{self.discovery_prefix}/{component}/unimeter_{self.gateway}_{meter_id}/{obj}/config"
        return Message(topic, dumps(cfg), self.qos, retain=True)

    def discovery(self, meter_id: str, name: str = "", appliances: Sequence[str] = (),
                  model_version: str = "", with_energy: bool = True) -> list[Message]:
        """All discovery configs of one meter: power, energy, quality, anomaly, appliances, forecast."""
        dev = self._device(meter_id, name, model_version)
        reading = self.meter(meter_id, "reading")
        msgs = [
            self._config("sensor", meter_id, "power", dev, name="Power", state_topic=reading,
                         value_template="{{ value_json.power_w }}", unit_of_measurement="W",
                         device_class="power", state_class="measurement"),
            self._config("sensor", meter_id, "quality", dev, name="Data coverage",
                         state_topic=self.meter(meter_id, "quality"),
                         value_template="{{ (value_json.coverage * 100) | round(1) }}",
                         unit_of_measurement="%", state_class="measurement",
                         entity_category="diagnostic",
                         json_attributes_topic=self.meter(meter_id, "quality")),
            self._config("binary_sensor", meter_id, "anomaly", dev, name="Anomaly",
                         state_topic=self.meter(meter_id, "anomaly"),
                         value_template="{{ 'ON' if value_json.anomaly else 'OFF' }}",
                         device_class="problem", json_attributes_topic=self.meter(meter_id, "anomaly")),
            self._config("sensor", meter_id, "forecast", dev, name="Forecast next half hour",
                         state_topic=self.meter(meter_id, "forecast"),
                         value_template="{{ value_json.day_ahead_w[0] }}", unit_of_measurement="W",
                         device_class="power", state_class="measurement",
                         json_attributes_topic=self.meter(meter_id, "forecast"),
                         json_attributes_template="{{ {'start': value_json.start, "
                         "'resolution_s': value_json.resolution_s, 'day_ahead_w': value_json.day_ahead_w} "
                         "| tojson }}"),
        ]
        if with_energy:
            msgs.append(self._config(
                "sensor", meter_id, "energy", dev, name="Energy imported", state_topic=reading,
                value_template="{{ value_json.energy_kwh }}", unit_of_measurement="kWh",
                device_class="energy", state_class="total_increasing"))
        for app in appliances:
            key = _slug(app)
            app_topic = self.meter(meter_id, "appliances")
            msgs.append(self._config(
                "binary_sensor", meter_id, f"appliance_{key}", dev, name=f"{app} running",
                state_topic=app_topic, device_class="power",
                value_template=f"{{{{ 'ON' if value_json.appliances['{app}'].on else 'OFF' }}}}"))
            msgs.append(self._config(
                "sensor", meter_id, f"appliance_{key}_power", dev, name=f"{app} power",
                state_topic=app_topic, unit_of_measurement="W", device_class="power",
                state_class="measurement",
                value_template=f"{{{{ value_json.appliances['{app}'].power_w }}}}"))
        return msgs


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_") or "appliance"


def _now() -> float:
    import time

    return time.time()
