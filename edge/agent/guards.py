"""The reading guard in the agent: one ``firmware_bridge.guard.ReadingGuard`` per meter.

Every reading passes its meter's guard in the reader task, before the writer commits it, so the
store, the model windows and MQTT only ever see checked readings; what the guard withholds is
stored with the reading (``extra["<field>_withheld"]``, flags), never dropped. Limits come from the
meter's kind (and Modbus model) and its ``[meters.limits]`` table. At start each guard is seeded
with the last counter values the store holds, so a counter published before a restart is the
reference after it (the import/export counters; other counters start from their first value).
The guard's counts go to the quality message (per meter) and to the agent's health (totals, and
a warning line per meter that had values withheld: ``health.json`` and the status topic).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from firmware_bridge.guard import ReadingGuard, limits_for

# counters the store keeps in columns (the seed for the counter check after a restart)
STORED_COUNTERS = ("import_wh", "export_wh")


def meter_limits(kind: str, options: Mapping[str, Any], limits: Mapping[str, Any]):
    """The MeterLimits of one configured meter (raises firmware_bridge.guard.LimitsError)."""
    model = options.get("model")
    return limits_for(kind, model if isinstance(model, str) else None, limits)


def build_guards(cfg, meter_ids) -> dict[str, ReadingGuard]:
    """A guard for each meter id; meters not in ``cfg.meters`` get the default limits."""
    configured = {m.id: m for m in cfg.meters}
    guards = {}
    for meter_id in meter_ids:
        m = configured.get(meter_id)
        limits = meter_limits(m.kind, m.options, m.limits) if m is not None else None
        guards[meter_id] = ReadingGuard(meter_id, limits)
    return guards


def seed_guards(guards: Mapping[str, ReadingGuard], store) -> None:
    """Seed each guard with its meter's last stored counters (runs on the store thread)."""
    for meter_id, guard in guards.items():
        for name in STORED_COUNTERS:
            last = store.last_value(meter_id, name)
            if last is not None:
                guard.seed_counter(name, *last)


def guard_quality(guard: ReadingGuard | None) -> dict:
    """The quality message's part: what was withheld and flagged, and the meter clock offset."""
    if guard is None:
        return {}
    stats = guard.stats.as_dict()
    return {"clock_offset_s": stats.pop("clock_offset_s"), "guard": stats}


def guard_totals(guards: Mapping[str, ReadingGuard]) -> dict:
    """Totals over all meters for the gateway status and health."""
    keys = ("invalid_values", "implausible", "counter_withheld", "counter_glitches",
            "counter_resets", "clock_skewed")
    return {k: sum(getattr(g.stats, k) for g in guards.values()) for k in keys}


def guard_warnings(guards: Mapping[str, ReadingGuard]) -> list[str]:
    """One health warning per meter whose readings the guard had to withhold or flag."""
    out = []
    for meter_id, guard in guards.items():
        st = guard.stats
        parts = [f"{n} {what}" for n, what in (
            (st.invalid_values, "values without a value (invalid/NaN)"),
            (st.implausible, "implausible values withheld"),
            (st.counter_glitches, "counter glitches withheld"),
            (st.counter_resets, "counter resets"),
            (st.clock_skewed, "readings with a far-off meter clock")) if n]
        if parts:
            out.append(f"meter {meter_id}: " + ", ".join(parts) + f" (last: {st.last_event})")
    return out
