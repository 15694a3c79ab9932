"""Validate MQTT discovery configs with Home Assistant's own code (run in .venv-homeassistant).

    .venv-homeassistant/bin/python tests/edge/agent/ha_validate.py input.json > results.json

``input.json``: ``{"configs": {discovery topic: payload text}, "states": {state topic: [payload
text, ...]}}``. For each config this does what Home
Assistant's MQTT discovery does before it creates an entity (homeassistant/components/mqtt/
discovery.py and entity.py): parse the topic, expand abbreviations and ``~``, validate ``origin``
with ``MQTT_ORIGIN_INFO_SCHEMA``, then the platform's ``DISCOVERY_SCHEMA`` (sensor,
binary_sensor, event, ...). It reports per topic ``ok`` and ``errors``; ``dropped``: keys the
schema removed silently (REMOVE_EXTRA: a misspelt option); ``warnings``: what the sensor entity
would log at run time (a state class its device class does not allow, an invalid unit, a
precision on a non-numeric sensor); ``render``: what rendering the entity's templates over the
given state payloads logged or raised (Home Assistant's "Template variable warning" included).
Imports nothing of unimeter (different interpreter).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
import tempfile

import voluptuous as vol
from homeassistant.components.event import ATTR_EVENT_TYPE
from homeassistant.components.mqtt import discovery as ha_discovery
from homeassistant.components.mqtt.schemas import MQTT_ORIGIN_INFO_SCHEMA
from homeassistant.components.sensor.const import (
    DEVICE_CLASS_STATE_CLASSES,
    DEVICE_CLASS_UNITS,
    SensorDeviceClass,
)
from homeassistant.const import __version__
from homeassistant.core import HomeAssistant
from homeassistant.helpers.template import Template
from homeassistant.util.json import JSON_DECODE_EXCEPTIONS, json_loads_object

TOPIC = ha_discovery.TOPIC_MATCHER


def runtime_warnings(component: str, config: dict) -> list[str]:
    if component != "sensor":
        return []
    out = []
    device_class, state_class = config.get("device_class"), config.get("state_class")
    unit = config.get("unit_of_measurement")
    if device_class and state_class:
        allowed = DEVICE_CLASS_STATE_CLASSES.get(SensorDeviceClass(device_class))
        if allowed is not None and state_class not in allowed:
            out.append(f"state class {state_class} impossible for device class {device_class}")
    if (device_class and unit is not None and device_class in DEVICE_CLASS_UNITS
            and unit not in DEVICE_CLASS_UNITS[SensorDeviceClass(device_class)]):
        out.append(f"unit {unit} invalid for device class {device_class}")
    numeric = bool(state_class or unit or config.get("suggested_display_precision") is not None)
    if device_class in ("timestamp", "date", "enum") and numeric:
        out.append(f"device class {device_class} with a numeric option")
    return out


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


class _This:
    """What ``this`` is to an MQTT template: the entity's current state."""

    state = "unknown"


def render_problems(hass: HomeAssistant, config: dict, states: dict[str, list[str]]) -> list[str]:
    """Render the config's templates over every payload its topics carried; warnings and errors."""
    captured = _Captured()
    logging.getLogger("homeassistant.helpers.template").addHandler(captured)
    out: list[str] = []
    try:
        pairs = [(config.get("state_topic"), config.get("value_template")),
                 (config.get("json_attributes_topic"), config.get("json_attributes_template"))]
        pairs += [(a.get("topic"), a.get("value_template")) for a in config.get("availability", [])]
        for topic, tpl in pairs:
            if not topic or tpl is None:
                continue
            text = tpl.template if isinstance(tpl, Template) else str(tpl)
            for payload in states.get(topic, []):
                try:
                    Template(text, hass).async_render_with_possible_json_value(
                        payload, "", variables={"this": _This()})
                except Exception as e:  # noqa: BLE001 - every failure is a finding
                    out.append(f"{topic}: {type(e).__name__}: {e}")
        out += event_problems(config, states)
        out += [f"logged: {m}" for m in captured.records]
    finally:
        logging.getLogger("homeassistant.helpers.template").removeHandler(captured)
    return out


def event_problems(config: dict, states: dict[str, list[str]]) -> list[str]:
    """An event entity's payloads as its message handler reads them (mqtt/event.py
    ``_event_received``): a JSON object whose ``event_type`` is one of the config's
    ``event_types``; the rest become the event's attributes."""
    if "event_types" not in config:
        return []
    out = []
    for payload in states.get(config.get("state_topic"), []):
        try:
            attributes = json_loads_object(payload)
            event_type = str(attributes.pop(ATTR_EVENT_TYPE))
        except KeyError:
            out.append(f"`event_type` missing in JSON event payload {payload[:200]}")
            continue
        except JSON_DECODE_EXCEPTIONS:
            out.append(f"no valid JSON event payload {payload[:200]}")
            continue
        if event_type not in config["event_types"]:
            out.append(f"invalid event type {event_type} (event_types {config['event_types']})")
    return out


def validate(hass: HomeAssistant, topic: str, payload: str, states: dict[str, list[str]]) -> dict:
    result = {"ok": False, "errors": [], "dropped": [], "warnings": [], "render": []}
    match = TOPIC.match(topic.split("/", 1)[1])
    if not match:
        result["errors"].append("topic does not match homeassistant/<component>/[<node_id>/]<object_id>/config")
        return result
    component = match.group("component")
    raw = json.loads(payload)
    ha_discovery._replace_all_abbreviations(raw)
    if "~" in raw:
        ha_discovery._replace_topic_base(raw)
    sent = dict(raw)
    if "origin" in raw:
        try:
            MQTT_ORIGIN_INFO_SCHEMA(raw["origin"])
        except vol.Invalid as e:
            result["errors"].append(f"origin: {e}")
    platform = importlib.import_module(f"homeassistant.components.mqtt.{component}")
    try:
        config = platform.DISCOVERY_SCHEMA(raw)
    except vol.Invalid as e:
        result["errors"].append(str(e))
        return result
    result["dropped"] = sorted(set(sent) - set(config))
    result["warnings"] = runtime_warnings(component, config)
    result["render"] = render_problems(hass, config, states)
    result["ok"] = not result["errors"]
    return result


async def validate_all(configs: dict[str, str], states: dict[str, list[str]]) -> dict[str, dict]:
    """Inside a running Home Assistant core (its template validator compiles every template
    against one), as discovery does."""
    with tempfile.TemporaryDirectory() as config_dir:
        hass = HomeAssistant(config_dir)
        try:
            return {topic: validate(hass, topic, payload, states) for topic, payload in configs.items()}
        finally:
            await hass.async_stop(force=True)


def main() -> int:
    with open(sys.argv[1]) as f:
        data = json.load(f)
    out = asyncio.run(validate_all(data["configs"], data.get("states", {})))
    print(json.dumps(out))
    print(f"Home Assistant {__version__}: {sum(r['ok'] for r in out.values())}/{len(out)} configs valid",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
