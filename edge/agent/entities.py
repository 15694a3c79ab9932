"""What each value a meter sends is as a Home Assistant entity: sensor name, device class, unit,
state class, precision; appliance display names; the entity keys of unique ids.

Data tables, no I/O (``edge.agent.discovery`` builds the configs from them). Counters carry the
device class, state class and unit the Energy dashboard accepts: energy (import/export, per
tariff) in kWh, gas in m³, water in m³, heat in GJ or kWh, all ``total_increasing``.

References: https://www.home-assistant.io/integrations/sensor/ (device classes, units, state
classes), https://www.home-assistant.io/docs/energy/faq/ (what the Energy dashboard accepts).
"""

from __future__ import annotations

from dataclasses import dataclass

HA_UNITS = {"m3": "m³", "gj": "GJ", "kwh": "kWh", "mwh": "MWh", "l": "L"}


@dataclass(frozen=True)
class ValueSpec:
    """How one value of the reading payload is shown: a sensor's name, classes, unit, precision."""

    name: str
    device_class: str | None
    unit: str | None
    state_class: str | None
    precision: int | None
    category: str | None = None
    enabled: bool = True
    icon: str | None = None


def _energy(name: str, enabled: bool = True) -> ValueSpec:
    return ValueSpec(name, "energy", "kWh", "total_increasing", 3, enabled=enabled)


def _reading_specs() -> dict[str, ValueSpec]:
    """Payload key (``edge.agent.messages.reading_values``) -> sensor. Order = UI order."""
    specs = {
        "power_w": ValueSpec("Power", "power", "W", "measurement", 0),
        "energy_kwh": _energy("Energy import"),  # the import counter (unique id "energy" kept)
        "export_kwh": _energy("Energy export"),
    }
    for direction, label in (("import", "import"), ("export", "export")):
        for t in range(1, 5):
            specs[f"{direction}_t{t}_kwh"] = _energy(f"Energy {label} tariff {t}")
    specs["tariff"] = ValueSpec("Active tariff", None, None, None, None, icon="mdi:cash-clock")
    specs["reactive_var"] = ValueSpec("Reactive power", "reactive_power", "var", "measurement", 0,
                                      enabled=False)
    specs["voltage_v"] = ValueSpec("Voltage", "voltage", "V", "measurement", 1)
    specs["current_a"] = ValueSpec("Current", "current", "A", "measurement", 2)
    for i in range(1, 4):
        specs[f"power_l{i}_w"] = ValueSpec(f"Power L{i}", "power", "W", "measurement", 0)
        specs[f"voltage_l{i}_v"] = ValueSpec(f"Voltage L{i}", "voltage", "V", "measurement", 1)
        specs[f"current_l{i}_a"] = ValueSpec(f"Current L{i}", "current", "A", "measurement", 2)
    for direction in ("import", "export"):
        specs[f"reactive_{direction}_kvarh"] = ValueSpec(
            f"Reactive energy {direction}", "reactive_energy", "kvarh", "total_increasing", 3, enabled=False)
    specs["power_failures"] = ValueSpec("Power failures", None, None, "total_increasing", 0,
                                        category="diagnostic", icon="mdi:flash-off")
    specs["long_power_failures"] = ValueSpec("Long power failures", None, None, "total_increasing", 0,
                                             category="diagnostic", icon="mdi:flash-off")
    return specs


READING_SPECS = _reading_specs()
# kWh keys that duplicate another key's value: never their own entity
_ALIASES = {"import_kwh"}
_MBUS_KINDS = {  # M-Bus sub-meter kind -> (name, device class); unit from the key
    "gas": ("Gas", "gas"), "water": ("Water", "water"), "heat": ("Heat", "energy"),
    "cooling": ("Cooling", "energy"), "electricity": ("Sub-meter energy", "energy"),
}


def mbus_spec(key: str) -> ValueSpec | None:
    """``gas_m3``, ``water_2_m3``, ``heat_gj`` ... -> the sensor the Energy dashboard accepts."""
    kind, _, unit = key.rpartition("_")
    base, _, channel = kind.partition("_")
    if base not in _MBUS_KINDS or unit not in HA_UNITS or (channel and not channel.isdigit()):
        return None
    name, device_class = _MBUS_KINDS[base]
    if device_class == "energy" and unit not in ("gj", "kwh", "mwh"):
        return None
    if device_class in ("gas", "water") and unit not in ("m3", "l"):
        return None
    return ValueSpec(f"{name} {channel}" if channel else name, device_class, HA_UNITS[unit],
                     "total_increasing", 3)


def value_spec(key: str) -> ValueSpec | None:
    """The sensor for a reading payload key, or None for keys that are not shown."""
    if key in _ALIASES:
        return None
    return READING_SPECS.get(key) or mbus_spec(key)


# --- appliances -----------------------------------------------------------------------------

APPLIANCE_NAMES = {
    "tv": "TV", "ev": "Electric vehicle", "ev_charger": "EV charger", "hvac": "HVAC",
    "pv": "Solar panels", "water_heater": "Water heater", "heat_pump": "Heat pump",
}


def appliance_name(key: str) -> str:
    """Model key -> display name: ``washing_machine`` -> ``Washing machine``, ``tv`` -> ``TV``."""
    if key in APPLIANCE_NAMES:
        return APPLIANCE_NAMES[key]
    words = key.replace("-", " ").replace("_", " ").split()
    text = " ".join(words) or key
    return text[:1].upper() + text[1:]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_") or "appliance"


def entity_key(payload_key: str) -> str:
    """Payload key -> the entity key in unique ids; ``power_w`` -> ``power``, the import counter
    keeps its historical key ``energy`` so existing energy statistics continue."""
    if payload_key == "energy_kwh":
        return "energy"
    for suffix in ("_kwh", "_kvarh", "_w", "_v", "_a", "_var", "_m3", "_gj", "_mwh", "_l"):
        if payload_key.endswith(suffix):
            return payload_key[: -len(suffix)]
    return payload_key
