"""``ReadingGuard``: the state of one meter and the rules every reading of it passes (the
package docstring says which, in order)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from firmware_bridge.guard.limits import MeterLimits
from firmware_bridge.guard.values import Slot, Verdict, slots
from firmware_bridge.reading import Reading, ReadingFlag

LOGGER = logging.getLogger("firmware_bridge.guard")
MODEL_EXCLUDED = ReadingFlag.CLOCK_SKEW  # readings with these flags never enter a model window
GUARD_FLAGS = (ReadingFlag.INVALID_VALUE | ReadingFlag.IMPLAUSIBLE | ReadingFlag.COUNTER_GLITCH
               | ReadingFlag.COUNTER_RESET | ReadingFlag.CLOCK_SKEW)


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
class _CounterTrack:
    """One counter: the last published value and the run of values that jumped away from it."""

    published: float | None = None
    published_ts_s: float = 0.0
    run: list[tuple[float, float]] = field(default_factory=list)  # (value, ts_s)


class ReadingGuard:
    """Checks the readings of one meter; ``check`` is cheap and synchronous (tens of µs)."""

    def __init__(self, meter_id: str, limits: MeterLimits | None = None, *,
                 now_fn: Callable[[], float] = time.time) -> None:
        self.meter_id = meter_id
        self.limits = limits or MeterLimits()
        self.now_fn = now_fn
        self.stats = GuardStats()
        self._counters: dict[str, _CounterTrack] = {}
        self._export_seen = False

    def seed_counter(self, key: str, value: float, ts_s: float) -> None:
        """Start from the last value published before a restart (the store keeps it)."""
        track = self._counters.setdefault(key, _CounterTrack())
        track.published, track.published_ts_s = float(value), float(ts_s)
        track.run.clear()

    def published_counter(self, key: str) -> float | None:
        track = self._counters.get(key)
        return None if track is None else track.published

    def check(self, reading: Reading) -> Reading:
        """The checked reading (the same object when nothing needed changing)."""
        self.stats.readings += 1
        verdict = Verdict()
        self._check_clock(reading, verdict)
        ts_s = verdict.changes.get("ts_s", reading.ts_s)
        self._export_seen = self._export_seen or reading.export_wh is not None
        for slot, value in slots(reading):
            if self._value_ok(slot, value, verdict) and slot.is_counter:
                self._check_counter(slot, value, slot.ts_s or ts_s, verdict)
        if not verdict.changes and not verdict.flags:
            return reading
        return verdict.applied_to(reading)

    # -- clock ----------------------------------------------------------------------------------
    def _check_clock(self, r: Reading, verdict: Verdict) -> None:
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
    def _value_ok(self, slot: Slot, value: float, verdict: Verdict) -> bool:
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

    def _implausible(self, slot: Slot, value: float) -> str | None:
        lim, check = self.limits, slot.check
        power_limit = lim.phase_power_limit_w if slot.per_phase else lim.power_limit_w
        if check == "power":
            if abs(value) > power_limit:
                return f"beyond the {power_limit:.0f} W this connection can carry"
            can_export = lim.export if lim.export is not None else self._export_seen
            if value < -lim.noise_w and not can_export:
                return "negative power on a meter that cannot export"
        elif check == "reactive" and abs(value) > power_limit:
            return f"beyond {power_limit:.0f} var"
        elif check == "voltage" and not 0 <= value <= lim.voltage_limit_v:
            return f"outside 0..{lim.voltage_limit_v:.0f} V"
        elif check == "current" and abs(value) > lim.current_limit_a:
            return f"beyond {lim.current_limit_a:.0f} A"
        elif check == "counter" and not 0 <= value <= lim.max_counter_wh:
            return f"outside 0..{lim.max_counter_wh:.0e} {slot.unit}"
        return None

    # -- counters -------------------------------------------------------------------------------
    def _check_counter(self, slot: Slot, value: float, ts_s: float, verdict: Verdict) -> None:
        rule = self.limits.counter_rule(slot.unit)
        if rule is None:  # a unit without a known rate: range checks only
            return
        track = self._counters.setdefault(slot.key, _CounterTrack())
        if track.published is None:  # the first value: nothing to compare with
            track.published, track.published_ts_s = value, ts_s
            return
        if _in_line(rule, track.published, track.published_ts_s, value, ts_s):
            self._back_in_line(slot, track, value, ts_s, verdict)
            return
        last = track.run[-1] if track.run else None
        if last is not None and ts_s <= last[1] and _in_line(rule, last[0], last[1], value, ts_s):
            # the same measurement again (an M-Bus capture repeats in every telegram until the
            # next one): it confirms nothing, a reset needs values measured at distinct times
            self.stats.counter_withheld += 1
            verdict.withhold(slot, value, ReadingFlag.COUNTER_GLITCH)
            return
        if last is not None and not _in_line(rule, last[0], last[1], value, ts_s):
            self._glitch(slot, track)  # a run that led nowhere was a glitch too; a new jump starts
        track.run.append((value, ts_s))
        if len(track.run) >= self.limits.counter_confirm_readings:
            self.stats.counter_resets += 1
            self._event(f"{slot.key} reset or meter swap: {track.published:g} -> {value:g} {slot.unit} "
                        f"({len(track.run)} readings agree)", self.stats.counter_resets, always=True)
            track.published, track.published_ts_s = value, ts_s
            track.run.clear()
            verdict.flags |= ReadingFlag.COUNTER_RESET
            return
        self.stats.counter_withheld += 1
        verdict.withhold(slot, value, ReadingFlag.COUNTER_GLITCH)

    def _back_in_line(self, slot: Slot, track: _CounterTrack, value: float, ts_s: float,
                      verdict: Verdict) -> None:
        if track.run:
            self._glitch(slot, track)
        if value >= track.published:
            track.published, track.published_ts_s = value, ts_s
            return
        self.stats.counter_withheld += 1  # a stall: below the published value, never published
        verdict.withhold(slot, value, ReadingFlag.COUNTER_GLITCH)

    def _glitch(self, slot: Slot, track: _CounterTrack) -> None:
        self.stats.counter_glitches += 1
        self._event(f"{slot.key} glitch: {len(track.run)} value(s) jumped from {track.published:g} "
                    f"to {track.run[0][0]:g} {slot.unit} and were withheld", self.stats.counter_glitches)
        track.run.clear()

    def _event(self, text: str, count: int, always: bool = False) -> None:
        """Log a guard event: every one when ``always``, else the 1st, 10th, 100th, ... of a kind."""
        self.stats.last_event = text
        if always or math.log10(count).is_integer():
            LOGGER.warning("%s: %s (%d so far)", self.meter_id, text, count)


def _in_line(rule: tuple[float, float], ref: float, ref_ts_s: float, value: float, ts_s: float) -> bool:
    """``value`` at most ``jump`` below ``ref``, at most ``rate`` x elapsed hours + ``jump`` above."""
    rate_per_h, jump = rule
    return ref - jump <= value <= ref + rate_per_h * max(ts_s - ref_ts_s, 0.0) / 3600.0 + jump
