"""The reading guard: the one check every reading of every source passes before it is used.

A ``ReadingGuard`` holds the state of one meter and maps each ``Reading`` to a checked one
(``check(reading) -> Reading``, one out per one in, never held back). The agent runs one guard
per meter between the meter's source and the store, so DSMR, Modbus, ZigBee and simulated meters
share the same rules. A value the guard does not trust is withheld, never lost: it is set to None
in the reading, kept in ``extra["<field>_withheld"]``, the reading is flagged, and the guard's
``stats`` count it (the agent reports them in its health and quality messages).

Rules, in order (limits from :class:`MeterLimits`):

1. **Clock** -- a reading dated more than ``clock_max_ahead_s`` after, or ``clock_max_behind_s``
   before, the gateway clock gets ``CLOCK_SKEW`` (and ``CLOCK_FALLBACK``): ``ts_s`` becomes the
   receive time, the meter's time goes to ``extra["meter_ts_s"]``, and the agent keeps the
   reading out of the model windows (``MODEL_EXCLUDED``). A source that already replaced a bad
   meter clock by the receive time (DSMR's ``max_clock_skew_s``) is left alone. The meter's clock
   offset (meter time minus receive time) is kept in ``stats.clock_offset_s``.
2. **No value** -- NaN and infinities become None with ``INVALID_VALUE`` (the ZigBee source maps
   the ZCL invalid numbers to None itself, see ``zigbee.datatypes``).
3. **Plausibility** -- power beyond ``max_power`` (phases x nominal voltage x main fuse x margin,
   or ``max_power_w``), negative power below ``-noise_w`` on a meter that cannot export, voltage,
   current and reactive power beyond what that connection can carry, and counters below 0 or above
   ``max_counter_wh``: withheld with ``IMPLAUSIBLE``.
4. **Counters** (``import_wh``, ``export_wh``, the reactive energy counters and every tariff
   register, each on its own) -- the published counter never decreases, except on
   a flagged reset. A value *in line* with the last published one (at most ``counter_jump_wh``
   below it, and at most ``counter_jump_wh`` plus what ``max_power`` could have counted since
   above it) is published, or withheld while it is still below (a stall: the published value
   stays). A value out of line is a *jump*: withheld with ``COUNTER_GLITCH``. If a later value is
   in line with the last published one again, the jump was a glitch. If
   ``counter_confirm_readings`` consecutive values agree with each other but not with the last
   published one, the meter was reset or swapped: that value is published with
   ``COUNTER_RESET`` and starts the new series.

Look-ahead: only counter values that jumped are held, and only until the series decides; power and
every other value of a reading are never delayed. A reset is published with the
``counter_confirm_readings``-th reading of the new series (default 3: two readings later, 2 s on a
DSMR 5 meter, 20 s on DSMR 4, two poll periods on Modbus). Glitches of at most
``counter_jump_wh`` cannot be told from consumption: the published counter then stalls until the
meter passes the glitch value, so it still never decreases and books no phantom energy.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property

from firmware_bridge.errors import ConfigError
from firmware_bridge.reading import Reading, ReadingFlag

LOGGER = logging.getLogger(__name__)

# Counters (never decreasing except on a reset): scalar fields, and tariff registers (tuples).
COUNTER_FIELDS = ("import_wh", "export_wh", "reactive_import_varh", "reactive_export_varh")
TARIFF_FIELDS = {"import_tariff_wh": "import_tariff_{n}_wh", "export_tariff_wh": "export_tariff_{n}_wh"}
VALUE_FIELDS = ("power_w", "reactive_var", "voltage_v", "current_a", *COUNTER_FIELDS)
WITHHELD_SUFFIX = "_withheld"  # extra["import_wh_withheld"]: the value the guard withheld
MODEL_EXCLUDED = ReadingFlag.CLOCK_SKEW  # readings with these flags never enter a model window
GUARD_FLAGS = (ReadingFlag.INVALID_VALUE | ReadingFlag.IMPLAUSIBLE | ReadingFlag.COUNTER_GLITCH
               | ReadingFlag.COUNTER_RESET | ReadingFlag.CLOCK_SKEW)


class LimitsError(ConfigError):
    """A bad plausibility limit; ``key`` is the limit's name."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"limits.{key}: {problem}")
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class MeterLimits:
    """Plausibility limits of one meter (W, V, A, Wh, s).

    ``main_fuse_a``: the rated current per phase of the connection (the main fuse, or the meter's
    own maximum current when the fuse is not configured). ``margin``: how far beyond the rating a
    reading may go; 1.5 covers the conventional tripping current of a circuit breaker (1.45 x In,
    IEC 60898-1), which it carries for up to an hour. ``max_power_w`` overrides the derived limit.
    ``export``: True if the meter can see export (PV, battery), False if not, None to decide from
    the meter itself (a meter that reports an export counter can export).
    """

    phases: int = 3
    main_fuse_a: float = 100.0
    nominal_voltage_v: float = 230.0
    margin: float = 1.5
    max_power_w: float | None = None
    export: bool | None = None
    noise_w: float = 50.0  # import-only meters may read this little negative power (standby noise)
    max_counter_wh: float = 1e10  # 10 GWh: beyond any household meter's register
    counter_jump_wh: float = 1000.0
    counter_confirm_readings: int = 3
    clock_max_ahead_s: float = 600.0
    clock_max_behind_s: float = 3600.0

    def __post_init__(self) -> None:
        for name, problem in self._problems():
            raise LimitsError(name, problem)

    def _problems(self):
        if self.phases not in (1, 2, 3):
            yield "phases", f"must be 1, 2 or 3, got {self.phases!r}"
        positive = {"main_fuse_a": "A", "nominal_voltage_v": "V", "max_counter_wh": "Wh",
                    "clock_max_ahead_s": "s", "clock_max_behind_s": "s"}
        for name, unit in positive.items():
            value = getattr(self, name)
            if not _finite_number(value) or value <= 0:
                yield name, f"must be a number > 0 ({unit}), got {value!r}"
        if not _finite_number(self.margin) or self.margin < 1:
            yield "margin", f"must be a number >= 1, got {self.margin!r}"
        if self.max_power_w is not None and (not _finite_number(self.max_power_w) or self.max_power_w <= 0):
            yield "max_power_w", f"must be a number > 0 (W), got {self.max_power_w!r}"
        for name in ("noise_w", "counter_jump_wh"):
            value = getattr(self, name)
            if not _finite_number(value) or value < 0:
                yield name, f"must be a number >= 0, got {value!r}"
        if self.export not in (None, True, False):
            yield "export", f"must be true or false, got {self.export!r}"
        n = self.counter_confirm_readings
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100:
            yield "counter_confirm_readings", f"must be an integer in 1..100, got {n!r}"

    @cached_property
    def power_limit_w(self) -> float:
        """Largest plausible |power|: ``max_power_w``, else phases x voltage x fuse x margin."""
        if self.max_power_w is not None:
            return float(self.max_power_w)
        return self.phases * self.nominal_voltage_v * self.main_fuse_a * self.margin

    @cached_property
    def current_limit_a(self) -> float:
        return self.main_fuse_a * self.margin

    @cached_property
    def voltage_limit_v(self) -> float:
        """A phase voltage beyond 1.75 x nominal (400 V at 230 V: a lost neutral) is not real."""
        return 1.75 * self.nominal_voltage_v

    def describe(self) -> str:
        """One line for ``check-config``: the limits in force and where they come from."""
        if self.max_power_w is not None:
            power = f"|power| <= {self.power_limit_w:.0f} W (max_power_w)"
        else:
            power = (f"|power| <= {self.power_limit_w:.0f} W ({self.phases} x "
                     f"{self.nominal_voltage_v:g} V x {self.main_fuse_a:g} A x {self.margin:g})")
        export = {True: "export allowed", False: f"import only (down to -{self.noise_w:g} W)",
                  None: "export allowed once the meter reports an export counter"}[self.export]
        return (f"{power}, {export}; counter jumps beyond {self.counter_jump_wh:g} Wh withheld until "
                f"they come back (glitch) or {self.counter_confirm_readings} readings agree (reset); "
                f"meter clock within +{self.clock_max_ahead_s:g}/-{self.clock_max_behind_s:g} s")

    def max_rise_wh(self, dt_s: float) -> float:
        """Most a counter can plausibly rise in ``dt_s``: max power over the interval + the jump."""
        return self.power_limit_w * max(dt_s, 0.0) / 3600.0 + self.counter_jump_wh


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# Defaults per meter kind: the meter's own rating where the fuse is not configured.
KIND_LIMITS: dict[str, Mapping[str, object]] = {
    "dsmr": {"phases": 3, "main_fuse_a": 100.0},  # P1 meters: up to 3 x 100 A (e.g. 5(100) A)
    "sdm120": {"phases": 1, "main_fuse_a": 45.0},  # Eastron SDM120: Imax 45 A
    "sdm630": {"phases": 3, "main_fuse_a": 100.0},  # Eastron SDM630: Imax 100 A
    "zigbee": {"phases": 3, "main_fuse_a": 100.0},  # a meter interface may read a main meter
    "sim": {"phases": 3, "main_fuse_a": 100.0},
}


def limits_for(kind: str, model: str | None = None, overrides: Mapping[str, object] | None = None,
               ) -> MeterLimits:
    """The limits of a meter of ``kind`` (a source kind; ``model`` for Modbus meters) with the
    configured ``overrides``. Raises LimitsError (a ConfigError) naming the bad or unknown key."""
    base = kind.replace("_", "-").removeprefix("sim-")
    defaults = dict(KIND_LIMITS.get(model or "", KIND_LIMITS.get(base, {})))
    overrides = dict(overrides or {})
    known = {f.name for f in fields(MeterLimits)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise LimitsError(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
    return MeterLimits(**{**defaults, **overrides})


@dataclass
class GuardStats:
    """What the guard withheld and flagged for one meter (counts since the guard was made)."""

    readings: int = 0
    invalid_values: int = 0  # NaN / infinity values dropped
    implausible: int = 0  # values withheld by the limits
    implausible_by_field: dict[str, int] = field(default_factory=dict)
    counter_withheld: int = 0  # counter values withheld (jumps being decided, stalls)
    counter_glitches: int = 0  # jumps that came back
    counter_resets: int = 0  # confirmed resets / meter swaps
    clock_skewed: int = 0  # readings dated too far from the gateway clock
    clock_offset_s: float | None = None  # meter clock - receive time, latest reading with a clock
    last_event: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Verdict:
    """Changes the guard makes to one reading."""

    changes: dict[str, object] = field(default_factory=dict)
    extra: dict[str, float | str] = field(default_factory=dict)
    flags: ReadingFlag = ReadingFlag.NONE

    def withhold(self, slot: _Slot, value: float, flag: ReadingFlag) -> None:
        self.drop(slot)
        self.extra[slot.key + WITHHELD_SUFFIX] = value
        self.flags |= flag

    def drop(self, slot: _Slot) -> None:
        """Set the slot's value to None in the checked reading."""
        if slot.index is None:
            self.changes[slot.attr] = None
            return
        items = self.changes.get(slot.attr)
        if items is None:
            items = self.changes[slot.attr] = list(slot.items)
        items[slot.index] = None

    def applied_to(self, reading: Reading) -> Reading:
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in self.changes.items()}
        return replace(reading, **changes, flags=reading.flags | self.flags,
                       extra={**reading.extra, **self.extra})


@dataclass(frozen=True)
class _Slot:
    """One value of a reading: ``key`` names it (``import_tariff_1_wh``), ``attr``/``index`` find it."""

    key: str
    attr: str
    is_counter: bool
    index: int | None = None
    items: tuple = ()


_SCALAR_SLOTS = tuple(_Slot(name, name, name in COUNTER_FIELDS) for name in VALUE_FIELDS)


def _slots(reading: Reading) -> list[tuple[_Slot, float]]:
    """(slot, value) of every value of ``reading`` that is set."""
    out = [(slot, value) for slot in _SCALAR_SLOTS
           if (value := getattr(reading, slot.attr)) is not None]
    for attr, key in TARIFF_FIELDS.items():
        items = getattr(reading, attr, ())
        for i, value in enumerate(items):
            if value is not None:
                out.append((_Slot(key.format(n=i + 1), attr, True, i, tuple(items)), value))
    return out


@dataclass
class _CounterTrack:
    """One counter: the last published value and the run of values that jumped away from it."""

    published_wh: float | None = None
    published_ts_s: float = 0.0
    run: list[tuple[float, float]] = field(default_factory=list)  # (value_wh, ts_s)


class ReadingGuard:
    """Checks the readings of one meter (module docstring); ``check`` is cheap and synchronous."""

    def __init__(self, meter_id: str, limits: MeterLimits | None = None, *,
                 now_fn: Callable[[], float] = time.time) -> None:
        self.meter_id = meter_id
        self.limits = limits or MeterLimits()
        self.now_fn = now_fn
        self.stats = GuardStats()
        self._counters: dict[str, _CounterTrack] = {}
        self._export_seen = False

    def seed_counter(self, name: str, value_wh: float, ts_s: float) -> None:
        """Start from the last value published before a restart (the store keeps it)."""
        track = self._counters.setdefault(name, _CounterTrack())
        track.published_wh, track.published_ts_s = float(value_wh), float(ts_s)
        track.run.clear()

    def published_counter(self, name: str) -> float | None:
        track = self._counters.get(name)
        return None if track is None else track.published_wh

    def check(self, reading: Reading) -> Reading:
        """The checked reading (the same object when nothing needed changing)."""
        self.stats.readings += 1
        verdict = _Verdict()
        self._check_clock(reading, verdict)
        ts_s = verdict.changes.get("ts_s", reading.ts_s)
        self._export_seen = self._export_seen or reading.export_wh is not None
        for slot, value in _slots(reading):
            if self._value_ok(slot, value, verdict) and slot.is_counter:
                self._check_counter(slot, value, ts_s, verdict)
        if not verdict.changes and not verdict.flags:
            return reading
        return verdict.applied_to(reading)

    # -- clock ----------------------------------------------------------------------------------
    def _check_clock(self, r: Reading, verdict: _Verdict) -> None:
        fell_back = ReadingFlag.CLOCK_FALLBACK in r.flags
        meter_ts_s = r.extra.get("meter_ts_s") if fell_back else r.ts_s
        if isinstance(meter_ts_s, int | float):
            self.stats.clock_offset_s = round(float(meter_ts_s) - r.received_s, 3)
        if fell_back:
            return  # the source already uses the receive time
        now_s = self.now_fn()
        offset_s = r.ts_s - now_s
        if -self.limits.clock_max_behind_s <= offset_s <= self.limits.clock_max_ahead_s:
            return
        received_ok = abs(r.received_s - now_s) <= self.limits.clock_max_ahead_s
        verdict.changes["ts_s"] = r.received_s if received_ok else now_s
        verdict.extra["meter_ts_s"] = r.ts_s
        verdict.flags |= ReadingFlag.CLOCK_SKEW | ReadingFlag.CLOCK_FALLBACK
        self.stats.clock_skewed += 1
        self._event(f"clock {offset_s:+.0f} s off the gateway clock: reading moved to the receive "
                    "time and kept out of the model windows", self.stats.clock_skewed)

    # -- values ---------------------------------------------------------------------------------
    def _value_ok(self, slot: _Slot, value: float, verdict: _Verdict) -> bool:
        if not math.isfinite(value):
            verdict.drop(slot)
            verdict.flags |= ReadingFlag.INVALID_VALUE
            self.stats.invalid_values += 1
            return False
        problem = self._implausible(slot, value)
        if problem is None:
            return True
        verdict.withhold(slot, value, ReadingFlag.IMPLAUSIBLE)
        self.stats.implausible += 1
        by_field = self.stats.implausible_by_field
        by_field[slot.key] = by_field.get(slot.key, 0) + 1
        self._event(f"{slot.key}={value!r} withheld: {problem}", self.stats.implausible)
        return False

    def _implausible(self, slot: _Slot, value: float) -> str | None:
        name = slot.attr
        lim = self.limits
        if name == "power_w":
            if abs(value) > lim.power_limit_w:
                return f"beyond the {lim.power_limit_w:.0f} W this connection can carry"
            can_export = lim.export if lim.export is not None else self._export_seen
            if value < -lim.noise_w and not can_export:
                return "negative power on a meter that cannot export"
        elif name == "reactive_var" and abs(value) > lim.power_limit_w:
            return f"beyond {lim.power_limit_w:.0f} var"
        elif name == "voltage_v" and not 0 <= value <= lim.voltage_limit_v:
            return f"outside 0..{lim.voltage_limit_v:.0f} V"
        elif name == "current_a" and abs(value) > lim.current_limit_a:
            return f"beyond {lim.current_limit_a:.0f} A"
        elif slot.is_counter and not 0 <= value <= lim.max_counter_wh:
            return f"outside 0..{lim.max_counter_wh:.0e}"
        return None

    # -- counters -------------------------------------------------------------------------------
    def _check_counter(self, slot: _Slot, value_wh: float, ts_s: float, verdict: _Verdict) -> None:
        name = slot.key
        track = self._counters.setdefault(name, _CounterTrack())
        if track.published_wh is None:  # the first value: nothing to compare with
            track.published_wh, track.published_ts_s = value_wh, ts_s
            return
        if self._in_line(track.published_wh, track.published_ts_s, value_wh, ts_s):
            self._back_in_line(slot, track, value_wh, ts_s, verdict)
            return
        last = track.run[-1] if track.run else None
        if last is not None and not self._in_line(last[0], last[1], value_wh, ts_s):
            self._glitch(name, track)  # a run that led nowhere was a glitch too; a new jump starts
        track.run.append((value_wh, ts_s))
        if len(track.run) >= self.limits.counter_confirm_readings:
            self.stats.counter_resets += 1
            self._event(f"{name} reset or meter swap: {track.published_wh:.0f} -> {value_wh:.0f} Wh "
                        f"({len(track.run)} readings agree)", self.stats.counter_resets, always=True)
            track.published_wh, track.published_ts_s = value_wh, ts_s
            track.run.clear()
            verdict.flags |= ReadingFlag.COUNTER_RESET
            return
        self.stats.counter_withheld += 1
        verdict.withhold(slot, value_wh, ReadingFlag.COUNTER_GLITCH)

    def _back_in_line(self, slot: _Slot, track: _CounterTrack, value_wh: float, ts_s: float,
                      verdict: _Verdict) -> None:
        if track.run:
            self._glitch(slot.key, track)
        if value_wh >= track.published_wh:
            track.published_wh, track.published_ts_s = value_wh, ts_s
            return
        self.stats.counter_withheld += 1  # a stall: below the published value, never published
        verdict.withhold(slot, value_wh, ReadingFlag.COUNTER_GLITCH)

    def _glitch(self, name: str, track: _CounterTrack) -> None:
        self.stats.counter_glitches += 1
        self._event(f"{name} glitch: {len(track.run)} value(s) jumped from "
                    f"{track.published_wh:.0f} to {track.run[0][0]:.0f} Wh and were withheld",
                    self.stats.counter_glitches)
        track.run.clear()

    def _in_line(self, ref_wh: float, ref_ts_s: float, value_wh: float, ts_s: float) -> bool:
        lim = self.limits
        return ref_wh - lim.counter_jump_wh <= value_wh <= ref_wh + lim.max_rise_wh(ts_s - ref_ts_s)

    def _event(self, text: str, count: int, always: bool = False) -> None:
        """Log a guard event: every one when ``always``, else the 1st, 10th, 100th, ... of a kind."""
        self.stats.last_event = text
        if always or math.log10(count).is_integer():
            LOGGER.warning("%s: %s (%d so far)", self.meter_id, text, count)
