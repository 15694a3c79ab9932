"""Where the values of a ``Reading`` are, as data: what each one is checked as, and how a
withheld one is taken out of the reading.

Every value the guard checks is a ``Slot``: a scalar field (``power_w``), an element of a tuple
field (tariff register 2 of ``import_tariff_wh``), a field of an element (``phases[1].voltage_v``)
or an M-Bus channel (``mbus``: a channel whose value is withheld leaves the tuple). ``key`` names
the value in the guard's counts, its log lines and ``extra["<key>_withheld"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from firmware_bridge.reading import Reading, ReadingFlag

WITHHELD_SUFFIX = "_withheld"  # extra["import_wh_withheld"]: the value the guard withheld


@dataclass(frozen=True)
class Slot:
    """One value of a reading. ``check``: "power", "reactive", "voltage", "current" or "counter";
    ``unit`` (counters): "wh", "varh", "count" or the M-Bus unit, lower case."""

    key: str
    attr: str
    check: str
    unit: str = ""
    index: int | None = None  # element of a tuple field
    sub: str | None = None  # field of that element
    items: tuple = ()  # the tuple field as read
    per_phase: bool = False
    ts_s: float | None = None  # when a counter was captured, if not the reading's time (M-Bus)

    @property
    def is_counter(self) -> bool:
        return self.check == "counter"


SCALARS: tuple[Slot, ...] = (
    Slot("power_w", "power_w", "power"),
    Slot("reactive_var", "reactive_var", "reactive"),
    Slot("voltage_v", "voltage_v", "voltage"),
    Slot("current_a", "current_a", "current"),
    Slot("import_wh", "import_wh", "counter", "wh"),
    Slot("export_wh", "export_wh", "counter", "wh"),
    Slot("reactive_import_varh", "reactive_import_varh", "counter", "varh"),
    Slot("reactive_export_varh", "reactive_export_varh", "counter", "varh"),
    Slot("power_failures", "power_failures", "counter", "count"),
    Slot("long_power_failures", "long_power_failures", "counter", "count"),
)
TARIFFS = {"import_tariff_wh": "import_tariff_{n}_wh", "export_tariff_wh": "export_tariff_{n}_wh"}
PHASE_VALUES = (("power_w", "power", "power_l{n}_w"), ("reactive_var", "reactive", "reactive_l{n}_var"),
                ("voltage_v", "voltage", "voltage_l{n}_v"), ("current_a", "current", "current_l{n}_a"))
COUNTER_KEYS = tuple(s.key for s in SCALARS if s.is_counter)


def slots(reading: Reading) -> list[tuple[Slot, float]]:
    """(slot, value) of every value of ``reading`` that is set."""
    out = [(slot, value) for slot in SCALARS if (value := getattr(reading, slot.attr)) is not None]
    for attr, key in TARIFFS.items():
        items = getattr(reading, attr, ())
        out += [(Slot(key.format(n=i + 1), attr, "counter", "wh", i, items=items), v)
                for i, v in enumerate(items) if v is not None]
    for i, phase in enumerate(reading.phases):
        for sub, check, key in PHASE_VALUES:
            value = getattr(phase, sub)
            if value is not None:
                out.append((Slot(key.format(n=i + 1), "phases", check, index=i, sub=sub,
                                 items=reading.phases, per_phase=True), value))
    for i, channel in enumerate(reading.mbus):
        unit = str(channel.unit).lower()
        out.append((Slot(f"mbus_{channel.channel}_{unit}", "mbus", "counter", unit, i,
                         items=reading.mbus, ts_s=channel.capture_ts_s), channel.value))
    return out


@dataclass
class Verdict:
    """Changes the guard makes to one reading."""

    changes: dict[str, object] = field(default_factory=dict)
    extra: dict[str, float | str] = field(default_factory=dict)
    flags: ReadingFlag = ReadingFlag.NONE

    def withhold(self, slot: Slot, value: float, flag: ReadingFlag) -> None:
        """Take the value out of the reading, keep it in ``extra``, flag the reading."""
        self.drop(slot)
        self.extra[slot.key + WITHHELD_SUFFIX] = value
        self.flags |= flag

    def drop(self, slot: Slot) -> None:
        """The slot's value is None (an M-Bus channel: gone) in the checked reading."""
        if slot.index is None:
            self.changes[slot.attr] = None
            return
        items = self.changes.get(slot.attr)
        if items is None:
            items = self.changes[slot.attr] = list(slot.items)
        if slot.sub is None:
            items[slot.index] = None
        else:
            items[slot.index] = replace(items[slot.index], **{slot.sub: None})

    def applied_to(self, reading: Reading) -> Reading:
        changes = {}
        extra = {**reading.extra, **self.extra}
        for attr, value in self.changes.items():
            if attr == "mbus":
                _drop_mirrors(extra, [c for c, kept in zip(reading.mbus, value, strict=True) if kept is None])
                value = tuple(c for c in value if c is not None)
            changes[attr] = tuple(value) if isinstance(value, list) else value
        return replace(reading, **changes, flags=reading.flags | self.flags, extra=extra)


def _drop_mirrors(extra: dict, removed) -> None:
    """A removed M-Bus channel also leaves its mirror in ``extra`` (the DSMR reader puts the
    first gas/water channel there as ``gas_m3``/``gas_ts_s``)."""
    for channel in removed:
        key = f"{channel.device_type}_{str(channel.unit).lower()}"
        if extra.get(key) == channel.value:
            extra.pop(key)
            extra.pop(f"{channel.device_type}_ts_s", None)
