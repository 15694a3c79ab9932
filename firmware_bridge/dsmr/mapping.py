"""A parsed ``Telegram`` -> the bridge's ``Reading`` (clock policy, derived totals, M-Bus rules).

Derived values are computed only from complete inputs: net power needs the delivered line and,
if the meter sends one, a readable returned line; a total over tariff registers needs every
register that was sent to be readable (else the meter's own total register, else ``None``).

M-Bus channels (DSMR 5.0.2 §7: channel n is the installation order, 1..4) are reported each on
its own. A channel is not reported when it is empty (no value), a placeholder (value without a
unit, as unconnected channels send ``(700101010000W)(00000000)``), has no readable capture time,
or its capture time is further than ``MbusPolicy.max_age_s`` from the meter clock (the receive
time when the meter has no clock): the value is then not a current reading of a real device.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.clock import ClockPolicy
from firmware_bridge.dsmr.obis import MBUS_KIND_BY_UNIT
from firmware_bridge.dsmr.parser import MbusRecord, Telegram
from firmware_bridge.reading import (
    MBUS_DEVICE_TYPES,
    MbusChannel,
    PhaseValues,
    Reading,
    ReadingFlag,
)

# Telegram values that become typed Reading fields rather than extra keys (the reactive
# registers per tariff and the quadrant registers stay in extra).
_TYPED = frozenset({
    "power_delivered_w", "power_returned_w", "reactive_power_import_var",
    "reactive_power_export_var", "power_failures", "long_power_failures",
    "import_total_wh", "export_total_wh", "reactive_import_total_varh", "reactive_export_total_varh",
    *(f"{direction}_t{t}_wh" for direction in ("import", "export") for t in range(1, 5)),
    *(f"{name}_l{n}_{unit}" for n in (1, 2, 3) for name, unit in (
        ("power_delivered", "w"), ("power_returned", "w"), ("reactive_power_import", "var"),
        ("reactive_power_export", "var"), ("voltage", "v"), ("current", "a"))),
})


@dataclass(frozen=True)
class MbusPolicy:
    """When an M-Bus channel's reading counts as current (see the module docstring)."""

    max_age_s: float = 2 * 86400.0  # DSMR 4 gas is hourly, 5 every 5 min; 2 days covers outages


def _net(values: dict, unreadable: dict, plus: str, minus: str, unit: str) -> float | None:
    """plus - minus; None if neither was sent or one that was sent is unreadable."""
    if plus in unreadable or minus in unreadable:
        return None
    p, m = values.get(f"{plus}_{unit}"), values.get(f"{minus}_{unit}")
    if p is None and m is None:
        return None
    return float(p or 0.0) - float(m or 0.0)


def _registers(tg: Telegram, name: str, unit: str) -> tuple[float | None, ...]:
    """Tariff registers 1..n of ``name`` (``import``, ``reactive_export``, ...); n = highest sent."""
    regs = [tg.values.get(f"{name}_t{t}_{unit}") for t in range(1, 5)]
    sent = [t for t in range(1, 5) if regs[t - 1] is not None or f"{name}_t{t}" in tg.unreadable]
    return tuple(regs[: max(sent)]) if sent else ()


def _total(tg: Telegram, name: str, unit: str, registers: tuple[float | None, ...]) -> float | None:
    """The meter's total register if readable, else the sum of the tariff registers if all read."""
    total = tg.values.get(f"{name}_total_{unit}")
    if total is not None:
        return float(total)
    if registers and all(r is not None for r in registers):
        return float(sum(registers))
    return None


def _phases(tg: Telegram) -> tuple[PhaseValues, ...]:
    v, bad = tg.values, tg.unreadable
    phases = []
    for n in (1, 2, 3):
        phases.append(PhaseValues(
            power_w=_net(v, bad, f"power_delivered_l{n}", f"power_returned_l{n}", "w"),
            voltage_v=_float(v.get(f"voltage_l{n}_v")),
            current_a=_float(v.get(f"current_l{n}_a")),
            reactive_var=_net(v, bad, f"reactive_power_import_l{n}", f"reactive_power_export_l{n}",
                              "var")))
    while phases and phases[-1] == PhaseValues():
        phases.pop()
    return tuple(phases)


def _float(value: float | str | None) -> float | None:
    return None if value is None else float(value)


def _int(value: float | str | None) -> int | None:
    return None if value is None else int(float(value))


def mbus_channel(rec: MbusRecord, reference_ts_s: float, policy: MbusPolicy) -> MbusChannel | None:
    """The channel as a ``MbusChannel``, or None when it is empty, a placeholder or stale."""
    if rec.value is None or not rec.unit or rec.capture is None:
        return None
    if abs(rec.capture.ts_s - reference_ts_s) > policy.max_age_s:
        return None
    if rec.device_type_code is not None:
        kind = MBUS_DEVICE_TYPES.get(rec.device_type_code, "other")
    else:
        kind = MBUS_KIND_BY_UNIT.get(rec.unit, "other")
    return MbusChannel(rec.channel, kind, rec.value, rec.unit, rec.capture.ts_s,
                       rec.device_type_code, rec.equipment_id)


def _mbus_extra(channels: list[MbusChannel], extra: dict) -> None:
    """The first gas and water channels also as ``gas_m3``/``water_m3`` (with capture times)."""
    for kind in ("gas", "water"):
        match = next((c for c in channels if c.device_type == kind and c.unit == "m3"), None)
        if match is not None:
            extra[f"{kind}_m3"] = match.value
            if match.capture_ts_s is not None:
                extra[f"{kind}_ts_s"] = match.capture_ts_s


def telegram_to_reading(
    tg: Telegram,
    *,
    meter_id: str,
    received_s: float,
    clock: ClockPolicy = ClockPolicy(),
    source: str = "dsmr",
    extra_flags: ReadingFlag = ReadingFlag.NONE,
    mbus_policy: MbusPolicy = MbusPolicy(),
) -> Reading:
    """Map a telegram to a Reading (see the module docstring for the derived values).

    ``voltage_v``/``current_a`` are phase L1 (the only phase of a single-phase meter); all phases
    are in ``phases``. The meter clock goes through ``clock``; DST is flagged when the meter says
    summer time; ``PARTIAL`` when any object was dropped (the reasons are in ``warnings``).
    """
    v, bad = tg.values, tg.unreadable
    meter_ts_s = tg.timestamp.ts_s if tg.timestamp else None
    ts_s, flags = clock.apply(meter_ts_s, received_s)
    if tg.timestamp is not None and tg.timestamp.dst:
        flags |= ReadingFlag.DST
    if tg.warnings:
        flags |= ReadingFlag.PARTIAL
    extra: dict[str, float | str] = {k: val for k, val in v.items() if k not in _TYPED}
    extra["dsmr_version"] = tg.version
    if meter_ts_s is not None:
        extra["meter_ts_s"] = meter_ts_s
    if tg.max_demand_time is not None and "max_demand_month_w" in v:
        extra["max_demand_month_ts_s"] = tg.max_demand_time.ts_s
    reference_ts_s = meter_ts_s if meter_ts_s is not None else received_s
    channels = [c for rec in sorted(tg.mbus.values(), key=lambda r: r.channel)
                if (c := mbus_channel(rec, reference_ts_s, mbus_policy)) is not None]
    _mbus_extra(channels, extra)
    registers = {name: _registers(tg, name, unit) for name, unit in (
        ("import", "wh"), ("export", "wh"), ("reactive_import", "varh"), ("reactive_export", "varh"))}
    phases = _phases(tg)
    return Reading(
        meter_id=meter_id, ts_s=ts_s, received_s=received_s,
        power_w=_net(v, bad, "power_delivered", "power_returned", "w"),
        reactive_var=_net(v, bad, "reactive_power_import", "reactive_power_export", "var"),
        import_wh=_total(tg, "import", "wh", registers["import"]),
        export_wh=_total(tg, "export", "wh", registers["export"]),
        voltage_v=phases[0].voltage_v if phases else None,
        current_a=phases[0].current_a if phases else None,
        source=source, flags=flags | extra_flags, extra=extra, phases=phases,
        import_tariff_wh=registers["import"], export_tariff_wh=registers["export"],
        reactive_import_varh=_total(tg, "reactive_import", "varh", registers["reactive_import"]),
        reactive_export_varh=_total(tg, "reactive_export", "varh", registers["reactive_export"]),
        tariff=_int(v.get("tariff")), power_failures=_int(v.get("power_failures")),
        long_power_failures=_int(v.get("long_power_failures")),
        power_failure_log=tuple(tg.failure_log), mbus=tuple(channels), warnings=tuple(tg.warnings),
    )
