"""Plausibility limits of one meter, their defaults per meter kind, and the counter rules.

The power a connection can carry follows from its main fuse: phases x nominal voltage x fuse
current x margin, where the margin (1.5) covers the conventional tripping current of a circuit
breaker (1.45 x In, IEC 60898-1), which it carries for up to an hour. Without a configured fuse
the meter's own maximum current stands in (``KIND_LIMITS``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cached_property

from firmware_bridge.errors import ConfigError

# M-Bus counter units -> (largest plausible rise per hour, jump tolerance), in that unit:
# G16 gas meter 25 m3/h (a house has G4-G10), water the same, heat 0.5 GJ/h (139 kW).
MBUS_COUNTER_RULES: dict[str, tuple[float, float]] = {
    "m3": (25.0, 1.0),
    "l": (25_000.0, 1_000.0),
    "gj": (0.5, 0.1),
}
COUNT_RULE = (3600.0, 10.0)  # event counters (power failures): at most one a second, 10 at once


class LimitsError(ConfigError):
    """A bad plausibility limit; ``key`` is the limit's name."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"limits.{key}: {problem}")
        self.key, self.problem = key, problem


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class MeterLimits:
    """Plausibility limits of one meter (W, V, A, Wh, s).

    ``main_fuse_a``: the rated current per phase of the connection (the main fuse, or the meter's
    own maximum current when the fuse is not configured). ``margin``: how far beyond the rating a
    reading may go. ``max_power_w`` overrides the derived limit. ``export``: True if the meter can
    see export (PV, battery), False if not, None to decide from the meter itself (a meter that
    reports an export counter can export). Counters: a rise beyond what ``max_power`` can count
    plus ``counter_jump_wh`` is a jump; ``counter_confirm_readings`` agreeing readings make it a
    reset. Clock: a reading dated beyond ``clock_max_ahead_s`` / ``clock_max_behind_s`` of the
    gateway clock is moved to the receive time.
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
        return self.phases * self.phase_power_limit_w

    @cached_property
    def phase_power_limit_w(self) -> float:
        """Largest plausible |power| of one phase (``max_power_w`` when that is set)."""
        if self.max_power_w is not None:
            return float(self.max_power_w)
        return self.nominal_voltage_v * self.main_fuse_a * self.margin

    @cached_property
    def current_limit_a(self) -> float:
        return self.main_fuse_a * self.margin

    @cached_property
    def voltage_limit_v(self) -> float:
        """A phase voltage beyond 1.75 x nominal (400 V at 230 V: a lost neutral) is not real."""
        return 1.75 * self.nominal_voltage_v

    def counter_rule(self, unit: str) -> tuple[float, float] | None:
        """(largest plausible rise per hour, jump tolerance) of a counter in ``unit`` (lower case:
        "wh", "varh", "kwh", "mwh", "count", or an M-Bus unit); None: no counter rule known."""
        scale = {"wh": 1.0, "varh": 1.0, "kwh": 1e-3, "mwh": 1e-6}.get(unit)
        if scale is not None:
            return self.power_limit_w * scale, self.counter_jump_wh * scale
        if unit == "count":
            return COUNT_RULE
        return MBUS_COUNTER_RULES.get(unit)

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


# Defaults per meter kind: the meter's own rating where the fuse is not configured.
KIND_LIMITS: dict[str, Mapping[str, object]] = {
    "dsmr": {"phases": 3, "main_fuse_a": 100.0},  # P1 meters: up to 3 x 100 A (e.g. 5(100) A)
    "sdm120": {"phases": 1, "main_fuse_a": 45.0},  # Eastron SDM120: Imax 45 A
    "sdm630": {"phases": 3, "main_fuse_a": 100.0},  # Eastron SDM630: Imax 100 A
    "zigbee": {"phases": 3, "main_fuse_a": 100.0},  # a meter interface may read a main meter
    "virtual": {"phases": 3, "main_fuse_a": 100.0},  # the agent's in-process virtual meter
}


def limits_for(kind: str, model: str | None = None, overrides: Mapping[str, object] | None = None,
               ) -> MeterLimits:
    """The limits of a meter of ``kind`` (a source kind; ``model`` for Modbus meters) with the
    configured ``overrides``. Raises LimitsError (a ConfigError) naming the bad or unknown key."""
    base = kind.replace("_", "-").removeprefix("virtual-").removeprefix("sim-")  # sim-*: earlier names
    base = "virtual" if base == "sim" else base
    defaults = dict(KIND_LIMITS.get(model or "", KIND_LIMITS.get(base, {})))
    overrides = dict(overrides or {})
    known = {f.name for f in fields(MeterLimits)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise LimitsError(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
    return MeterLimits(**{**defaults, **overrides})
