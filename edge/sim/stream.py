"""A live simulated meter: ``HouseholdPowerSource(config, seed, start_s)(ts_s) -> readings``.

The bridge's simulated meters call a plain ``power_source(ts_s)`` (architecture contract 1). This
one simulates the household one UTC day at a time (cached) at ``resolution_s`` and answers any
timestamp from that day: the values are a pure function of (config, seed, start day, ts), so two
gateways, or a restart, see the same meter. Energy counters start at the config's initial values
at the UTC midnight of ``start_s``, integrate the true net power sample by sample (linear within a
sample, so they are continuous and monotonic), and carry across days.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from edge.errors import SimulationError
from edge.sim import weather as wx
from edge.sim.config import DAY_S, HouseholdConfig, parse_resolution
from edge.sim.household import simulate_household
from edge.sim.trace import HouseholdTrace

NOMINAL_VOLTAGE_V = 230.0
LINE_RESISTANCE_OHM = 0.3  # service cable + local network, sets the voltage drop under load
_STREAM_VOLTAGE = 0x5654


class HouseholdPowerSource:
    """Deterministic ``(ts_s) -> dict(power_w, reactive_var, import_wh, export_wh, voltage_v, current_a)``."""

    def __init__(self, config: HouseholdConfig, seed: int = 0, start_s: float | None = None,
                 resolution_s: int | str = 1, cache_days: int = 3) -> None:
        self.config = config
        self.seed = int(seed)
        self.resolution_s = parse_resolution(resolution_s)
        start = time.time() if start_s is None else float(start_s)
        self.first_day = int(math.floor(start / DAY_S))
        self._cache_days = max(1, int(cache_days))
        # day -> (trace, (voltage phase, per-sample jitter)): one LRU entry, so both leave together
        self._days: OrderedDict[int, tuple[HouseholdTrace, tuple[float, np.ndarray]]] = OrderedDict()
        self._day_energy: dict[int, tuple[float, float]] = {}
        self._base: dict[int, tuple[float, float]] = {
            self.first_day: (config.initial_import_wh, config.initial_export_wh)}
        self._day_config = replace(config, initial_import_wh=0.0, initial_export_wh=0.0)

    def __call__(self, ts_s: float) -> dict[str, float]:
        if not math.isfinite(ts_s):
            raise SimulationError(f"timestamp must be finite, got {ts_s!r}")
        day = int(math.floor(ts_s / DAY_S))
        if day < self.first_day:
            raise SimulationError(
                f"ts_s={ts_s} is before this meter's first day ({self.first_day * DAY_S} UTC s)")
        base_imp, base_exp = self._base_counters(day)  # may simulate (and evict) earlier days
        tr, noise = self._day(day)
        offset = ts_s - day * DAY_S
        i = min(int(offset // self.resolution_s), len(tr) - 1)
        frac = (offset - i * self.resolution_s) / self.resolution_s
        imp = _interp_counter(tr.import_wh, i, frac) + base_imp
        exp_ = _interp_counter(tr.export_wh, i, frac) + base_exp
        p, q = float(tr.power_w[i]), float(tr.reactive_var[i])
        voltage, current = _electrical(noise, i, ts_s, p, q)
        return {"power_w": p, "reactive_var": q, "import_wh": imp, "export_wh": exp_,
                "voltage_v": voltage, "current_a": current}

    def trace(self, day: int) -> HouseholdTrace:
        """The simulated day (UTC day ordinal) behind the readings; counters start at 0."""
        return self._day(day)[0]

    def _day(self, day: int) -> tuple[HouseholdTrace, tuple[float, np.ndarray]]:
        if day in self._days:
            self._days.move_to_end(day)
            return self._days[day]
        tr = simulate_household(self._day_config, 1, self.resolution_s, self.seed, start=day * DAY_S)
        rng = wx.day_rng(self.seed, day, _STREAM_VOLTAGE)
        entry = (tr, (float(rng.random()), rng.standard_normal(len(tr))))
        self._days[day] = entry
        self._day_energy[day] = (float(tr.import_wh[-1]), float(tr.export_wh[-1]))
        while len(self._days) > self._cache_days:
            self._days.popitem(last=False)
        return entry

    def _base_counters(self, day: int) -> tuple[float, float]:
        """Counters at the start of ``day``: initial values plus every earlier day's energy."""
        known = max(d for d in self._base if d <= day)
        imp, exp_ = self._base[known]
        for d in range(known, day):
            if d not in self._day_energy:
                self._day(d)
            e_imp, e_exp = self._day_energy[d]
            imp, exp_ = imp + e_imp, exp_ + e_exp
            self._base[d + 1] = (imp, exp_)
        return imp, exp_


def _electrical(noise: tuple[float, np.ndarray], i: int, ts_s: float, p: float, q: float) -> tuple[float, float]:
    """Voltage (V) and current (A) at sample ``i`` of a day whose noise is ``(phase, jitters)``."""
    phase, jitters = noise
    v0 = NOMINAL_VOLTAGE_V + 2.0 * math.sin(2 * math.pi * (ts_s / DAY_S + phase)) + 0.3 * float(jitters[i])
    s_va = math.hypot(p, q)
    voltage = v0 - LINE_RESISTANCE_OHM * s_va / v0 * math.copysign(1.0, p)
    return round(voltage, 1), round(s_va / voltage, 3)


def _interp_counter(counter_end: np.ndarray, i: int, frac: float) -> float:
    before = float(counter_end[i - 1]) if i > 0 else 0.0
    return before + frac * (float(counter_end[i]) - before)
