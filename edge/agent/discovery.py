"""Home Assistant MQTT discovery: the gateway device, its meters and their entities (no I/O).

Here the configs are built; what each value is as an entity (names, classes, units) is in
``edge.agent.entities``, what was announced and the messages that announce or delete in
``edge.agent.discovery_state``.

Follows Home Assistant's MQTT discovery documentation (components sensor, binary_sensor, event)
and Zigbee2MQTT's conventions:

* One device per meter and one for the gateway; meters name the gateway in ``via_device``.
* Per-meter availability: every meter entity is available only while the gateway is online
  (``<base>/<gw>/status``, JSON, LWT) **and** the meter is (``<base>/<gw>/<meter>/availability``,
  ``online``/``offline``, retained; see ``edge.agent.availability``): ``availability_mode: all``.
* Entity names are short and read well after the device name ("Smart meter Energy import",
  "Smart meter Washing machine"); appliances go by display name, never the model's raw key.
* ``unique_id`` and the entity id are ``unimeter_<gw>_<meter>_<key>``; the entity id is given as
  ``default_entity_id`` (Home Assistant >= 2025.10) and as ``object_id`` (older releases; newer
  ones use ``default_entity_id`` when both are present).
* Only what a meter really sends is announced: a reading value becomes an entity once a reading
  carried it (``discovery_state.DiscoveryState.observe``), so a meter without a counter has no energy entity and
  Home Assistant never renders a template over a value that is not there.
* Counters carry the device class, state class and unit the Energy dashboard accepts: energy
  (import/export, per tariff) in kWh, gas in m³, water in m³, heat in GJ or kWh, all
  ``total_increasing`` (the counters are validated upstream: they only fall on a flagged reset).
* An entity that is no longer announced (a meter removed from the config, an appliance the new
  model does not know) has its config deleted with an empty retained payload.

References: https://www.home-assistant.io/integrations/mqtt/ (discovery, availability, origin),
https://www.home-assistant.io/integrations/sensor/ (device classes, units, state classes),
https://developers.home-assistant.io/docs/core/entity/sensor/ and
https://www.home-assistant.io/docs/energy/faq/ (what the Energy dashboard accepts).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge.agent.appliances import EVENT_TYPES, tracked
from edge.agent.entities import (
    READING_SPECS,
    ValueSpec,
    appliance_name,
    entity_key,
    slug,
    value_spec,
)
from edge.agent.messages import SW_VERSION, Topics
from edge.agent.meters import meter_kind

ORIGIN = {"name": "unimeter", "sw_version": SW_VERSION}


# --- entities -------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeterInfo:
    """What discovery needs to know about one configured meter."""

    id: str
    name: str = ""
    kind: str = ""
    hide_energy: bool = False  # meters.options.energy = false
    appliances: tuple[str, ...] = ()  # meters.appliances: the NILM appliances the home has (empty: all)


@dataclass(frozen=True)
class ModelInfo:
    """What discovery needs to know about the live model (None: no model)."""

    version: str
    tasks: tuple[str, ...]
    appliances: tuple[str, ...] = ()


KIND_MODELS = {"dsmr": "DSMR P1 meter", "modbus": "Modbus meter", "zigbee": "ZigBee meter",
               "virtual": "Virtual meter", "virtual-dsmr": "DSMR P1 meter (virtual)",
               "virtual-modbus": "Modbus meter (virtual)", "virtual-zigbee": "ZigBee meter (virtual)"}


class Discovery:
    """Builds every discovery config of one gateway from what it knows now (pure, no I/O)."""

    def __init__(self, topics: Topics):
        self.t = topics

    # --- devices and common fields ------------------------------------------------------------

    @property
    def gateway_id(self) -> str:
        return f"unimeter_{self.t.gateway}"

    def gateway_device(self, model: ModelInfo | None) -> dict:
        return {"identifiers": [self.gateway_id], "name": f"unimeter gateway {self.t.gateway}",
                "manufacturer": "unimeter", "model": "Edge gateway",
                "sw_version": f"{SW_VERSION} (model {model.version})" if model else SW_VERSION}

    def meter_device(self, meter: MeterInfo) -> dict:
        return {"identifiers": [f"{self.gateway_id}_{meter.id}"], "name": meter.name or f"Meter {meter.id}",
                "model": KIND_MODELS.get(meter_kind(meter.kind), meter.kind or "Meter"),
                "via_device": self.gateway_id}

    def _availability(self, meter_id: str | None) -> dict:
        gateway = {"topic": self.t.status, "value_template": "{{ value_json.state }}"}
        if meter_id is None:
            return {"availability": [gateway]}
        return {"availability": [gateway, {"topic": self.t.meter(meter_id, "availability")}],
                "availability_mode": "all"}

    def _config(self, component: str, node: str, key: str, device: dict, meter_id: str | None,
                always_available: bool = False, **fields: Any) -> tuple[str, dict]:
        uid = f"{node}_{key}"
        cfg = {"unique_id": uid, "default_entity_id": f"{component}.{uid}", "object_id": uid,
               "device": device, "origin": ORIGIN, "qos": self.t.qos,
               **({} if always_available else self._availability(meter_id))}
        cfg.update({k: v for k, v in fields.items() if v is not None})
        return f"{self.t.discovery_prefix}/{component}/{node}/{key}/config", cfg

    # --- gateway ----------------------------------------------------------------------------

    def gateway_configs(self, model: ModelInfo | None) -> dict[str, dict]:
        """The gateway device: connection and diagnostics from its status topic."""
        dev, node, status = self.gateway_device(model), self.gateway_id, self.t.status
        out = dict([
            self._config("binary_sensor", node, "connection", dev, None, name="Connection",
                         state_topic=status, value_template="{{ value_json.state }}",
                         payload_on="online", payload_off="offline", device_class="connectivity",
                         entity_category="diagnostic", always_available=True),
        ])
        diagnostics = (
            # key, name, status field, device class, unit, state class, precision, icon
            ("outbox", "Outbox", "outbox_rows", None, "messages", "measurement", 0, "mdi:tray-full"),
            ("dropped", "Messages dropped", "outbox_dropped", None, "messages", "total_increasing", 0,
             "mdi:delete-alert"),
            ("readings", "Readings stored", "committed", None, "readings", "total_increasing", 0,
             "mdi:database"),
            ("latency_p50", "Publish latency", "latency_p50_ms", "duration", "ms", "measurement", 0, None),
            ("latency_p99", "Publish latency p99", "latency_p99_ms", "duration", "ms", "measurement", 0, None),
            ("errors", "Errors", "errors", None, None, "total_increasing", 0, "mdi:alert-circle"),
        )
        for key, name, src, dc, unit, sc, prec, icon in diagnostics:
            out.update([self._config(
                "sensor", node, key, dev, None, name=name, state_topic=status,
                value_template=_value(src), device_class=dc, unit_of_measurement=unit, state_class=sc,
                suggested_display_precision=prec, entity_category="diagnostic", icon=icon)])
        health = "value_json.get('health')"
        out.update([
            self._config("binary_sensor", node, "problem", dev, None, name="Problem", state_topic=status,
                         value_template=f"{{% if {health} %}}{{{{ 'OFF' if {health}.ok else 'ON' }}}}{{% endif %}}",
                         device_class="problem", entity_category="diagnostic", json_attributes_topic=status,
                         json_attributes_template=f"{{{{ {{'problems': ({health} or {{}}).get('problems'), "
                         f"'warnings': ({health} or {{}}).get('warnings')}} | tojson }}}}"),
            self._config("sensor", node, "withheld", dev, None, name="Values withheld", state_topic=status,
                         value_template=f"{{% if {health} %}}{{{{ ({health}.get('readings_guarded') or {{}})"
                         ".values() | sum }}{% endif %}", state_class="total_increasing",
                         suggested_display_precision=0, entity_category="diagnostic", icon="mdi:shield-alert"),
            self._config("sensor", node, "model_version", dev, None, name="Model version",
                         state_topic=status, value_template=_text("model_version"),
                         entity_category="diagnostic", icon="mdi:brain"),
            self._config("sensor", node, "last_error", dev, None, name="Last error",
                         state_topic=status, value_template=_text("last_error", max_len=250),
                         entity_category="diagnostic", icon="mdi:alert"),
            self._config("sensor", node, "started", dev, None, name="Running since",
                         state_topic=status, value_template=_text("started", null="None"),
                         device_class="timestamp", entity_category="diagnostic"),
        ])
        return out

    # --- meters -----------------------------------------------------------------------------

    def meter_configs(self, meter: MeterInfo, values: Iterable[str], model: ModelInfo | None
                      ) -> dict[str, dict]:
        """Every entity of one meter: the values it has sent, data quality, the model's results."""
        dev, node = self.meter_device(meter), f"{self.gateway_id}_{meter.id}"
        reading = self.t.meter(meter.id, "reading")
        out: dict[str, dict] = {}
        present = set(values)
        for key in [*READING_SPECS, *sorted(present - set(READING_SPECS))]:
            spec = value_spec(key)
            if key not in present or spec is None:
                continue
            if meter.hide_energy and spec.device_class == "energy":
                continue
            out.update([self._sensor(node, entity_key(key), dev, meter.id, spec, reading, key)])
        out.update([self._config(
            "sensor", node, "last_reading", dev, meter.id, name="Last reading", state_topic=reading,
            value_template=_text("ts", null="None"), device_class="timestamp",
            entity_category="diagnostic")])
        quality = self.t.meter(meter.id, "quality")
        out.update([self._config(
            "sensor", node, "quality", dev, meter.id, name="Data coverage", state_topic=quality,
            value_template="{{ (value_json.coverage * 100) | round(1) }}", unit_of_measurement="%",
            state_class="measurement", suggested_display_precision=1, entity_category="diagnostic",
            icon="mdi:chart-donut", json_attributes_topic=quality,
            json_attributes_template=_attributes("n_gaps", "longest_gap_s", "reading_rate_hz",
                                                 "last_reading_age_s"))])
        report = self.t.meter(meter.id, "report")
        out.update([self._config(
            "sensor", node, "report", dev, meter.id, name="Daily report", state_topic=report,
            value_template=_text("summary", max_len=250), icon="mdi:text-box-outline",
            json_attributes_topic=report, json_attributes_template=_attributes("text", "energy_kwh_last_day"))])
        tasks = set(model.tasks) if model else set()
        if "anomaly" in tasks:
            out.update(self._anomaly(node, dev, meter.id))
        if "forecast" in tasks:
            out.update(self._forecast(node, dev, meter.id))
        if "nilm" in tasks:
            for app in tracked(model.appliances, meter.appliances)[0]:  # with the enrolled ones
                out.update(self._appliance(node, dev, meter.id, app))
        return out

    def _sensor(self, node: str, key: str, dev: dict, meter_id: str, spec: ValueSpec, topic: str,
                field_: str) -> tuple[str, dict]:
        return self._config(
            "sensor", node, key, dev, meter_id, name=spec.name, state_topic=topic,
            value_template=_value(field_) if spec.unit or spec.state_class else _text(field_),
            device_class=spec.device_class,
            unit_of_measurement=spec.unit, state_class=spec.state_class,
            suggested_display_precision=spec.precision, entity_category=spec.category, icon=spec.icon,
            enabled_by_default=None if spec.enabled else False)

    def _anomaly(self, node: str, dev: dict, meter_id: str) -> dict[str, dict]:
        topic = self.t.meter(meter_id, "anomaly")
        return dict([self._config(
            "binary_sensor", node, "anomaly", dev, meter_id, name="Consumption anomaly", state_topic=topic,
            value_template="{{ 'ON' if value_json.anomaly else 'OFF' }}", device_class="problem",
            json_attributes_topic=topic,
            json_attributes_template=_attributes("score", "threshold", "anomaly_kinds", "window_start_s",
                                                "window_end_s", "anomaly_held", "alarm_since_s"))])

    def _forecast(self, node: str, dev: dict, meter_id: str) -> dict[str, dict]:
        topic = self.t.meter(meter_id, "forecast")
        return dict([
            self._config("sensor", node, "forecast", dev, meter_id, name="Forecast next hour",
                         state_topic=topic, value_template=_value("next_hour_w"),
                         unit_of_measurement="W", device_class="power", state_class="measurement",
                         suggested_display_precision=0, json_attributes_topic=topic,
                         json_attributes_template=_attributes("hour_start", "hour_end", "hour_ahead_w")),
            self._config("sensor", node, "forecast_energy_24h", dev, meter_id,
                         name="Energy forecast next 24 h", state_topic=topic,
                         value_template=_value("day_ahead_kwh"), unit_of_measurement="kWh",
                         device_class="energy", suggested_display_precision=1,
                         json_attributes_topic=topic,
                         json_attributes_template=_attributes("start", "resolution_s", "day_ahead_w")),
        ])

    def _appliance(self, node: str, dev: dict, meter_id: str, app: str) -> dict[str, dict]:
        key, name = slug(app), appliance_name(app)
        topic = self.t.meter(meter_id, "appliances")
        item = f"value_json.appliances[{json.dumps(app)}]"
        return dict([
            self._config("binary_sensor", node, f"appliance_{key}", dev, meter_id, name=name,
                         state_topic=topic, device_class="running",
                         value_template=f"{{{{ 'ON' if {item}.on else 'OFF' }}}}"),
            self._config("sensor", node, f"appliance_{key}_power", dev, meter_id, name=f"{name} power",
                         state_topic=topic, unit_of_measurement="W", device_class="power",
                         state_class="measurement", suggested_display_precision=0,
                         value_template=f"{{{{ {item}.power_w }}}}"),
            self._config("sensor", node, f"appliance_{key}_energy_today", dev, meter_id,
                         name=f"{name} energy today", state_topic=topic, unit_of_measurement="kWh",
                         device_class="energy", state_class="total_increasing",
                         suggested_display_precision=2,
                         value_template=f"{{{{ {item}.energy_today_kwh }}}}"),
            self._config("event", node, f"appliance_{key}_event", dev, meter_id, name=name,
                         state_topic=self.t.appliance_event(meter_id, key),
                         event_types=list(EVENT_TYPES)),
        ])


def _value(field_: str) -> str:
    """A numeric sensor's template: the field, or nothing when the message lacks it (Home
    Assistant ignores an empty state for a numeric sensor: it keeps its state, logs no warning)."""
    return f"{{% if value_json.get({json.dumps(field_)}) is not none %}}{{{{ {_item(field_)} }}}}{{% endif %}}"


def _text(field_: str, max_len: int = 0, null: str = "") -> str:
    """A text or timestamp sensor's template. Home Assistant takes any string as such a state
    (and warns about a timestamp it cannot parse), so a message without the field renders the
    entity's current state (``this``); a field that is present but null renders ``null``
    ("None" = unknown for timestamps, "" for text)."""
    key = json.dumps(field_)
    shown = f"({_item(field_)} | string)[:{max_len}]" if max_len else _item(field_)
    return (f"{{% if value_json.get({key}) is not none %}}{{{{ {shown} }}}}"
            f"{{% elif {key} in value_json %}}{null}"
            "{% elif this.state not in ['unknown', 'unavailable'] %}{{ this.state }}"
            "{% else %}None{% endif %}")


def _item(field_: str) -> str:
    return f"value_json[{json.dumps(field_)}]"


def _attributes(*fields_: str) -> str:
    items = ", ".join(f"{json.dumps(f)}: value_json.get({json.dumps(f)})" for f in fields_)
    return f"{{{{ {{{items}}} | tojson }}}}"
