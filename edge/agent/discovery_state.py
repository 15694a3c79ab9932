"""The agent's side of Home Assistant discovery: what was announced (kept across restarts), the
values each meter has sent, and the messages that announce what is there now and delete what is
gone (``edge.agent.discovery`` builds the configs themselves)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.agent.discovery import Discovery, MeterInfo, ModelInfo
from edge.agent.entities import value_spec
from edge.agent.messages import Topics, dumps, reading_values
from edge.agent.store import Message
from firmware_bridge.reading import Reading

log = logging.getLogger(__name__)


# --- what was announced, across restarts ---------------------------------------------------------

@dataclass
class DiscoveryState:
    """Announced config topics and the reading values each meter has sent (a small JSON file).

    With it the agent (a) announces after a restart at once what a meter had before, (b) deletes
    the configs of meters, values and appliances that are gone, even when Home Assistant or the
    broker were away when the change happened.
    """

    path: Path | None
    announced: set[str] = field(default_factory=set)
    values: dict[str, set[str]] = field(default_factory=dict)
    meters: set[str] = field(default_factory=set)  # meters with an availability topic

    @classmethod
    def load(cls, path: str | Path | None) -> DiscoveryState:
        if path is None:
            return cls(None)
        p = Path(path)
        try:
            data = json.loads(p.read_text())
            return cls(p, set(data.get("announced", [])),
                       {m: set(v) for m, v in data.get("values", {}).items()}, set(data.get("meters", [])))
        except FileNotFoundError:
            return cls(p)
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.error("discovery state %s unreadable (%s): starting afresh; configs of removed meters "
                      "may stay in Home Assistant until deleted there", p, e)
            return cls(p)

    def save(self) -> None:
        if self.path is None:
            return
        data = {"announced": sorted(self.announced), "meters": sorted(self.meters),
                "values": {m: sorted(v) for m, v in sorted(self.values.items())}}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def observe(self, meter_id: str, keys: Iterable[str]) -> bool:
        """Note the keys a reading had (non-None values); True if one is new for this meter."""
        known = self.values.setdefault(meter_id, set())
        new = {k for k in keys if k not in known and value_spec(k) is not None}
        known |= new
        return bool(new)


def present_keys(values: Mapping[str, Any]) -> list[str]:
    return [k for k, v in values.items() if v is not None]


STATE_KINDS = ("reading", "quality", "anomaly", "appliances", "forecast", "report")


def discovery_messages(d: Discovery, state: DiscoveryState, meters: Sequence[MeterInfo],
                       model: ModelInfo | None) -> list[Message]:
    """All configs now, plus an empty retained payload for every config announced before that is
    gone, and ``offline`` on the availability topic of every meter no longer configured.
    Updates ``state`` (the caller saves it once the messages are in the outbox)."""
    configs = d.gateway_configs(model)
    for m in meters:
        configs.update(d.meter_configs(m, state.values.get(m.id, ()), model))
    qos = d.t.qos
    msgs = [Message(topic, dumps(cfg), qos, retain=True) for topic, cfg in configs.items()]
    gone = sorted(state.announced - set(configs))
    msgs += [Message(topic, b"", qos, retain=True) for topic in gone]
    configured = {m.id for m in meters}
    for meter_id in sorted(state.meters - configured):  # removed from the config
        msgs.append(Message(d.t.meter(meter_id, "availability"), b"offline", qos, retain=True))
        msgs += [Message(d.t.meter(meter_id, kind), b"", qos, retain=True) for kind in STATE_KINDS]
        state.values.pop(meter_id, None)
    if gone:
        log.info("Home Assistant discovery: deleting %d configs no longer announced", len(gone))
    state.announced = set(configs)
    state.meters = configured
    return msgs


# --- the agent's side: state across readings, events, availability ---------------------------------

def reading_signature(r: Reading) -> tuple:
    """Which values a reading carries (cheap, per reading): when it changes, the keys are computed."""
    return (r.power_w is None, r.reactive_var is None, r.import_wh is None, r.export_wh is None,
            r.voltage_v is None, r.current_a is None, tuple(r.extra),
            tuple((p.power_w is None, p.voltage_v is None, p.current_a is None) for p in r.phases),
            tuple((c.device_type, c.unit, c.channel) for c in r.mbus),
            tuple(x is None for x in r.import_tariff_wh), tuple(x is None for x in r.export_tariff_wh),
            r.tariff is None, r.power_failures is None, r.long_power_failures is None,
            r.reactive_import_varh is None, r.reactive_export_varh is None)


class GatewayDiscovery:
    """What the agent keeps for Home Assistant: announced configs, the values each meter has sent,
    and per-meter availability (appliance events come from ``edge.agent.appliances``).

    ``meters`` are the configured meters; ``state_path`` the JSON file of ``DiscoveryState``.
    """

    def __init__(self, topics: Topics, meters: Sequence[MeterInfo], state_path: str | Path | None,
                 tracker: Any):
        self.topics = topics
        self.builder = Discovery(topics)
        self.meters = list(meters)
        self.state = DiscoveryState.load(state_path)
        self.tracker = tracker
        self._signatures: dict[str, tuple] = {}
        self.pending = False  # a meter sent a new value: announce again

    def note_reading(self, r: Reading) -> None:
        """Per committed reading (event loop): availability and new values."""
        self.tracker.note(r.meter_id, r.received_s)
        sig = reading_signature(r)
        if self._signatures.get(r.meter_id) == sig:
            return
        self._signatures[r.meter_id] = sig
        if self.state.observe(r.meter_id, present_keys(reading_values(r))):
            self.pending = True

    def messages(self, model: ModelInfo | None) -> list[Message]:
        self.pending = False
        return discovery_messages(self.builder, self.state, self.meters, model)

    def availability_messages(self, now_s: float) -> list[Message]:
        return [Message(self.topics.meter(mid, "availability"), b"online" if online else b"offline",
                        self.topics.qos, retain=True)
                for mid, online in self.tracker.changes(now_s)]

