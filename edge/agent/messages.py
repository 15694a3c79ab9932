"""MQTT topics and JSON payloads (pure functions, no I/O).

Topics (``base`` defaults to ``unimeter``)::

    <base>/<gateway>/status                  retained JSON {"state": "online"|"offline", ...} (LWT)
    <base>/<gateway>/event                   gateway events, e.g. {"event": "store_recovered", ...}
    <base>/<gateway>/<meter>/reading         retained, per stored reading (or a few, see
                                             reading_messages), with "seq_first".."seq"
    <base>/<gateway>/<meter>/availability    retained "online"|"offline" (edge.agent.availability)
    <base>/<gateway>/<meter>/quality         retained
    <base>/<gateway>/<meter>/anomaly         retained
    <base>/<gateway>/<meter>/appliances      retained
    <base>/<gateway>/<meter>/event/<app>     NOT retained: a use of an appliance started / finished
    <base>/<gateway>/<meter>/forecast        retained
    <base>/<gateway>/<meter>/report          retained
    <discovery_prefix>/<component>/unimeter_<gateway>[_<meter>]/<key>/config   (edge.agent.discovery)

Payloads are JSON with units in the key names (``power_w``, ``import_kwh``, ``gas_m3``,
``resolution_s``), UTC timestamps as both ISO 8601 (``ts``) and epoch seconds (``ts_s``), and the
per-meter sequence number ``seq`` of the latest reading the message is based on, with the store
``epoch`` it counts in. ``(meter, epoch, seq)`` makes QoS 1 duplicates recognisable: a subscriber
drops a message whose ``(epoch, seq)`` it has seen; a new epoch is a new store (``seq`` restarts at
1), not a replay (edge.agent.store, "Store epoch").

The state topics are retained because Home Assistant reads an entity's state from the retained
message when it (re)starts. Appliance events are not: a restart must not replay them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge.agent.store import Message, StoredReading
from firmware_bridge.guard import WITHHELD_SUFFIX
from firmware_bridge.reading import MbusChannel, PhaseValues, Reading

TOPIC_KINDS = ("reading", "quality", "anomaly", "appliances", "forecast", "report", "availability")
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

    def appliance_event(self, meter_id: str, appliance_key: str) -> str:
        """Not retained: a use of an appliance started or finished (Home Assistant event entity)."""
        return f"{self.base}/{self.gateway}/{meter_id}/event/{appliance_key}"

    def appliance_event_message(self, meter_id: str, appliance_key: str, ts_s: float, body: Mapping) -> Message:
        """An appliance event (``edge.agent.appliances.ApplianceEvent.payload``; ``event_type`` at
        the top, as Home Assistant's event entity reads it) with the meter header; not retained,
        so a restart or a new subscriber never replays it."""
        payload = {"meter": meter_id, "epoch": self.epoch, "ts": iso_utc(ts_s), "ts_s": ts_s, **body}
        return Message(self.appliance_event(meter_id, appliance_key), dumps(payload), self.qos, retain=False)

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
        payload = {"meter": r.meter_id, "epoch": self.epoch, "seq": seq, "seq_first": seq,
                   "ts": iso_utc(r.ts_s), "ts_s": r.ts_s, "received_s": round(r.received_s, 3),
                   **reading_values(r), "source": r.source, "flags": int(r.flags)}
        return Message(self.meter(r.meter_id, "reading"), dumps(payload), self.qos, retain=True,
                       created_s=r.received_s if created_s is None else created_s)

    def meter_message(self, meter_id: str, kind: str, seq: int, ts_s: float, body: Mapping) -> Message:
        """A derived message (quality/anomaly/appliances/forecast/report) with the common header."""
        payload = {"meter": meter_id, "epoch": self.epoch, "seq": seq, "ts": iso_utc(ts_s), "ts_s": ts_s,
                   **body}
        return Message(self.meter(meter_id, kind), dumps(payload), self.qos, retain=True)

    def status_payload(self, state: str, **details: Any) -> bytes:
        return dumps({"state": state, "gateway": self.gateway, "ts": iso_utc(_now()), **details})

def _now() -> float:
    return time.time()


# --- the values of a reading, flat ----------------------------------------------------------------

_CORE = ("power_w", "reactive_var", "import_wh", "export_wh", "voltage_v", "current_a")
_MBUS_UNITS = {"m3": "m3", "m³": "m3", "gj": "gj", "kwh": "kwh", "mwh": "mwh", "l": "l"}


def reading_values(r: Reading) -> dict[str, float | int | str | None]:
    """The measured values of one reading as one flat dict, units in the keys.

    Always: ``power_w``, ``reactive_var``, ``import_wh``, ``export_wh``, ``voltage_v``,
    ``current_a`` (``None`` where the meter does not send them) and, with a counter,
    ``import_kwh``/``export_kwh`` (``energy_kwh``: the import counter under its former name).
    When the meter sends them: per phase ``power_l1_w``, ``voltage_l1_v``, ``current_l1_a`` (l1..l3),
    per tariff register ``import_t1_kwh``..``export_t4_kwh``, ``tariff`` (1..4), reactive energy
    ``reactive_import_kvarh``/``reactive_export_kvarh``, the power-failure counters, and the
    M-Bus sub-meters as ``<kind>_<unit>`` (``gas_m3``, ``water_m3``, ``heat_gj``; a second
    channel of the same kind gets its channel number: ``water_2_m3``) with ``<kind>_ts_s`` (the
    sub-meter's capture time). Other numeric ``extra`` values of the protocol are passed through
    under their own (unit-suffixed) keys, except what the reading guard withheld (kept in the
    store, never published). Non-finite numbers become ``None`` (valid JSON).
    """
    out: dict[str, float | int | str | None] = {k: _finite(getattr(r, k)) for k in _CORE}
    extra = {k: v for k, v in r.extra.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
             and not k.endswith(WITHHELD_SUFFIX)}
    for k, v in extra.items():
        if k not in out and not k.endswith("_wh"):
            out[k] = _finite(v, 4)
    _counters_kwh(out, r, extra)
    _phases(out, r.phases)
    _mbus(out, r.mbus)
    tariff = r.tariff
    if tariff is None and "tariff" in r.extra:
        tariff = r.extra["tariff"]
    if tariff is not None:
        try:
            out["tariff"] = int(float(tariff))
        except (TypeError, ValueError):
            out.pop("tariff", None)
    for name, value in (("power_failures", r.power_failures),
                        ("long_power_failures", r.long_power_failures)):
        if value is not None:
            out[name] = int(value)
    return out


def _kwh(wh: float | None) -> float | None:
    return None if wh is None else _finite(wh / 1000.0, 4)


def _counters_kwh(out: dict, r: Reading, extra: dict) -> None:
    if r.import_wh is not None:
        out["import_kwh"] = out["energy_kwh"] = _kwh(r.import_wh)
    if r.export_wh is not None:
        out["export_kwh"] = _kwh(r.export_wh)
    for direction in ("import", "export"):
        registers = r.import_tariff_wh if direction == "import" else r.export_tariff_wh
        if not registers:
            registers = tuple(extra.get(f"{direction}_t{i}_wh") for i in range(1, 5))
        for i, wh in enumerate(registers, start=1):
            if wh is not None:
                out[f"{direction}_t{i}_kwh"] = _kwh(wh)
    for direction, varh in (("import", r.reactive_import_varh), ("export", r.reactive_export_varh)):
        if varh is not None:
            out[f"reactive_{direction}_kvarh"] = _kwh(varh)


def _phases(out: dict, phases: Sequence[PhaseValues]) -> None:
    for i, ph in enumerate(phases, start=1):
        for key, value in ((f"power_l{i}_w", ph.power_w), (f"voltage_l{i}_v", ph.voltage_v),
                           (f"current_l{i}_a", ph.current_a)):
            if value is not None:
                out[key] = _finite(value)


def _mbus(out: dict, channels: Sequence[MbusChannel]) -> None:
    kinds = [c.device_type for c in channels]
    for c in channels:
        unit = _MBUS_UNITS.get(str(c.unit).lower())
        if unit is None:
            continue
        name = c.device_type if kinds.count(c.device_type) == 1 else f"{c.device_type}_{c.channel}"
        out[f"{name}_{unit}"] = _finite(c.value, 4)
        if c.capture_ts_s is not None:
            out[f"{name}_ts_s"] = c.capture_ts_s
