"""``build_source(kind, **options)``: the one factory the agent's config maps to.

Kinds and their options (besides the common ``meter_id``, ``backoff`` and ``on_event``):

========== ======================================================================================
kind       options (see the config dataclass for defaults and meaning)
========== ======================================================================================
dsmr       ``DsmrConfig``: port, version ("5", "4", "3", "2.2", "fluvius", encrypted: "smarty",
           "sagemcom-t210"), read_timeout_s, max_clock_skew_s, standard_utc_offset_s, timezone,
           max_telegram_bytes, max_mbus_age_s, serial, encryption_key, authentication_key
modbus     ``ModbusConfig``: port, model ("sdm120", "sdm630"), unit_id, or units (several meters on
           one bus: [{unit_id, model, meter_id}]), baudrate, parity, stopbits, poll_interval_s,
           timeout_s, retries
zigbee     ``ZigbeeConfig``: radio ("znp", "ezsp", "deconz"), device_path, baudrate, flow_control,
           database_path, meters ({ieee: meter_id}), only_listed, configure_reporting,
           report_min_interval_s, report_max_interval_s, request_timeout_s, read_timeout_s
virtual-   power_source (required), version, interval_s, clock_offset_s, gas_m3_per_h, phases,
dsmr       read_timeout_s, max_clock_skew_s: a ``VirtualDsmrMeter`` on a pty read by the real
           DSMR reader
virtual-   power_source (required), model, unit_id, poll_interval_s, timeout_s, retries: a pymodbus
modbus     server on a pty bridge read by the real Modbus client
virtual-   power_source (required), report_interval_s, electrical_measurement, ieee: a virtual
zigbee     meter on the virtual radio read through zigpy
========== ======================================================================================

A *virtual meter* emulates a meter's protocol in-process (``firmware_bridge.*.virtual_meter``);
the real reader of that protocol reads it, so everything above the wire is tested for real.
Kinds may be spelt with "_" ("virtual_dsmr"); the earlier names ``sim-dsmr``, ``sim-modbus`` and
``sim-zigbee`` are accepted as aliases (``KIND_ALIASES``). Every virtual kind takes
``interval_s`` (telegram, poll or report period). ``power_source`` is a callable ``ts_s ->
Mapping[str, float]`` with keys among power_w, reactive_var, import_wh, export_wh, voltage_v,
current_a (``edge.sim.stream.HouseholdPowerSource``). Virtual sources start their virtual meter
on ``connect()`` and stop it on ``close()``; their readings carry ``ReadingFlag.SIMULATED`` and
``source`` = the kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from firmware_bridge.dsmr.source import DsmrConfig, DsmrSource
from firmware_bridge.dsmr.virtual_meter import VirtualDsmrMeter
from firmware_bridge.errors import ConfigError
from firmware_bridge.modbus.source import ModbusConfig, ModbusSource
from firmware_bridge.modbus.virtual_meter import VirtualModbusMeter
from firmware_bridge.reading import ReadingFlag
from firmware_bridge.source import BackoffConfig, MeterSource
from firmware_bridge.zigbee.source import ZigbeeConfig, ZigbeeSource
from firmware_bridge.zigbee.virtual_meter import VirtualZigbeeMeter

VIRTUAL_KINDS = ("virtual-dsmr", "virtual-modbus", "virtual-zigbee")
SOURCE_KINDS = ("dsmr", "modbus", "zigbee", *VIRTUAL_KINDS)
# Earlier spellings of the kinds, still accepted in configs.
KIND_ALIASES = {"sim-dsmr": "virtual-dsmr", "sim-modbus": "virtual-modbus", "sim-zigbee": "virtual-zigbee"}


def canonical_kind(kind: str) -> str:
    """The kind's one name: "_" spelt "-" (TOML keys), aliases resolved ("sim_dsmr" -> "virtual-dsmr")."""
    kind = kind.replace("_", "-")
    return KIND_ALIASES.get(kind, kind)


class _VirtualMeterOwner:
    """Mixin: start the virtual meter on first connect, stop it on close (not on link drops)."""

    virtual_meter: Any
    _meter_started = False

    async def _connect(self) -> None:
        if not self._meter_started and hasattr(self.virtual_meter, "start"):
            await self.virtual_meter.start()
            self._meter_started = True
        await super()._connect()  # type: ignore[misc]

    async def close(self) -> None:
        await super().close()  # type: ignore[misc]
        if self._meter_started:
            await self.virtual_meter.stop()
            self._meter_started = False


class VirtualDsmrSource(_VirtualMeterOwner, DsmrSource):
    kind = "virtual-dsmr"


class VirtualModbusSource(_VirtualMeterOwner, ModbusSource):
    kind = "virtual-modbus"


class VirtualZigbeeSource(_VirtualMeterOwner, ZigbeeSource):
    kind = "virtual-zigbee"


def _split(options: dict, names: set[str]) -> dict:
    return {k: options.pop(k) for k in list(options) if k in names}


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _common(options: dict, kind: str) -> dict:
    backoff = options.pop("backoff", None)
    if isinstance(backoff, Mapping):
        try:
            backoff = BackoffConfig(**backoff)
        except TypeError as e:
            raise ConfigError(f"{kind}: bad backoff options {dict(backoff)}: {e}") from e
    return {"meter_id": options.pop("meter_id", kind), "backoff": backoff,
            "on_event": options.pop("on_event", None)}


def _require_power_source(options: dict, kind: str) -> Callable:
    power_source = options.pop("power_source", None)
    if not callable(power_source):
        raise ConfigError(f"{kind} needs power_source: a callable ts_s -> Mapping[str, float]")
    return power_source


def _check_empty(options: dict, kind: str, allowed: set[str]) -> None:
    if options:
        raise ConfigError(f"unknown options for {kind!r}: {sorted(options)}; "
                          f"allowed: {sorted(allowed | {'meter_id', 'backoff', 'on_event'})}")


def _config(cls, options: dict, kind: str):
    allowed = _fields(cls)
    values = _split(options, allowed)
    _check_empty(options, kind, allowed)
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{kind}: {e}") from e


def build_source(kind: str, **options: Any) -> MeterSource:
    """A MeterSource for ``kind`` (see the module docstring for each kind's options)."""
    options = dict(options)
    kind = canonical_kind(kind)
    common = _common(options, kind)
    if kind == "dsmr":
        return DsmrSource(_config(DsmrConfig, options, kind), **common)
    if kind == "modbus":
        return ModbusSource(_config(ModbusConfig, options, kind), **common)
    if kind == "zigbee":
        return ZigbeeSource(_config(ZigbeeConfig, options, kind), **common)
    if kind == "virtual-dsmr":
        return _virtual_dsmr(options, common)
    if kind == "virtual-modbus":
        return _virtual_modbus(options, common)
    if kind == "virtual-zigbee":
        return _virtual_zigbee(options, common)
    raise ConfigError(f"unknown source kind {kind!r}; known: {', '.join(SOURCE_KINDS)}")


_VIRTUAL_FLAGS = {"extra_flags": ReadingFlag.SIMULATED}


def _virtual_dsmr(options: dict, common: dict) -> MeterSource:
    power_source = _require_power_source(options, "virtual-dsmr")
    meter_keys = {"version", "interval_s", "clock_offset_s", "gas_m3_per_h", "phases"}
    meter_opts = _split(options, meter_keys)
    reader_opts = _split(options, {"read_timeout_s", "max_clock_skew_s"})
    _check_empty(options, "virtual-dsmr", meter_keys | {"read_timeout_s", "max_clock_skew_s"})
    try:
        meter = VirtualDsmrMeter(power_source, **meter_opts)
    except ValueError as e:
        raise ConfigError(f"virtual-dsmr: {e}") from e
    reader_opts.setdefault("read_timeout_s", max(5.0, 5 * meter.interval_s))
    config = DsmrConfig(port=meter.port, version=meter.version, serial=meter.serial_settings,
                        **reader_opts)
    source = VirtualDsmrSource(config, source_name="virtual-dsmr", **common, **_VIRTUAL_FLAGS)
    source.virtual_meter = meter
    return source


def _virtual_modbus(options: dict, common: dict) -> MeterSource:
    power_source = _require_power_source(options, "virtual-modbus")
    if "interval_s" in options:  # the one period option every virtual kind understands
        options["poll_interval_s"] = options.pop("interval_s")
    model, unit_id = options.pop("model", "sdm120"), options.pop("unit_id", 1)
    client_keys = {"poll_interval_s", "timeout_s", "retries"}
    client_opts = _split(options, client_keys)
    _check_empty(options, "virtual-modbus", client_keys | {"model", "unit_id"})
    try:
        meter = VirtualModbusMeter(power_source, model=model, unit_id=unit_id)
    except ValueError as e:
        raise ConfigError(f"virtual-modbus: {e}") from e
    config = ModbusConfig(port=meter.port, model=model, unit_id=unit_id, **client_opts)
    source = VirtualModbusSource(config, source_name="virtual-modbus", **common, **_VIRTUAL_FLAGS)
    source.virtual_meter = meter
    return source


def _virtual_zigbee(options: dict, common: dict) -> MeterSource:
    power_source = _require_power_source(options, "virtual-zigbee")
    if "interval_s" in options:
        options["report_interval_s"] = options.pop("interval_s")
    meter_keys = {"report_interval_s", "electrical_measurement", "ieee"}
    meter_opts = _split(options, meter_keys)
    _check_empty(options, "virtual-zigbee", meter_keys)
    try:
        meter = VirtualZigbeeMeter(power_source, **meter_opts)
    except ValueError as e:
        raise ConfigError(f"virtual-zigbee: {e}") from e
    config = ZigbeeConfig(radio="virtual", virtual_devices=[meter],
                          meters={meter.ieee: common["meter_id"]})
    source = VirtualZigbeeSource(config, source_name="virtual-zigbee", **common, **_VIRTUAL_FLAGS)
    source.virtual_meter = meter
    return source
