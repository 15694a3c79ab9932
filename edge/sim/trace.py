"""What the simulator returns: a household's trace (aggregate as a meter reports it, counters,
per-appliance truth, temperature, calendar) and its daily 30-min profiles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.errors import SimulationError
from edge.sim import weather as wx
from edge.sim.config import DAY_S


@dataclass
class ApplianceTrace:
    power_w: np.ndarray  # float32 mean active power per sample
    reactive_var: np.ndarray  # float32
    on: np.ndarray  # bool: on at any time during the sample


@dataclass
class DailyProfiles:
    """Daily 30-min mean powers of one household (the L=48 unit of seed 000)."""

    household_id: str
    dates: np.ndarray  # datetime64[D], local dates
    load_w: np.ndarray  # float32 [n_days, 48]
    temperature_c: np.ndarray  # float32 [n_days, 48]
    weekday: np.ndarray  # int8 [n_days], Monday=0
    is_holiday: np.ndarray  # bool [n_days]


@dataclass
class HouseholdTrace:
    household_id: str
    ts_s: np.ndarray  # int64 UTC epoch s, start of each sample interval
    power_w: np.ndarray  # float32 measured net active power (import positive)
    reactive_var: np.ndarray  # float32 measured reactive power
    import_wh: np.ndarray  # float64 counter at the END of each sample interval
    export_wh: np.ndarray  # float64
    appliances: dict[str, ApplianceTrace]
    temperature_c: np.ndarray  # float32 outdoor temperature
    is_holiday: np.ndarray  # bool per sample (local date is a public holiday)
    resolution_s: int
    utc_offset_h: float = 0.0
    tz: str | None = None

    def __len__(self) -> int:
        return len(self.ts_s)

    @property
    def weekday(self) -> np.ndarray:
        """Local weekday per sample, Monday=0."""
        local_day = (self.ts_s + wx.clock_offsets_s(self.ts_s, self.utc_offset_h, self.tz)) // DAY_S
        return ((local_day + 3) % 7).astype(np.int8)

    def true_power_w(self) -> np.ndarray:
        """Noise-free net active power: the sum of the appliance ground truth."""
        total = np.zeros(len(self), np.float64)
        for a in self.appliances.values():
            total += a.power_w
        return total

    def resample(self, resolution_s: int) -> HouseholdTrace:
        """Block means at a coarser resolution (a multiple of the current one)."""
        if resolution_s % self.resolution_s or resolution_s < self.resolution_s:
            raise SimulationError(
                f"can only resample {self.resolution_s} s to a multiple of it, not {resolution_s} s")
        k = resolution_s // self.resolution_s
        n = len(self) // k
        if n == 0:
            raise SimulationError(f"trace of {len(self)} samples is shorter than one {resolution_s} s bin")

        def mean(x: np.ndarray) -> np.ndarray:
            return x[: n * k].reshape(n, k).mean(axis=1, dtype=np.float64).astype(np.float32)

        apps = {name: ApplianceTrace(mean(a.power_w), mean(a.reactive_var),
                                     a.on[: n * k].reshape(n, k).any(axis=1))
                for name, a in self.appliances.items()}
        return HouseholdTrace(
            self.household_id, self.ts_s[: n * k : k].copy(), mean(self.power_w),
            mean(self.reactive_var), self.import_wh[k - 1 : n * k : k].copy(),
            self.export_wh[k - 1 : n * k : k].copy(), apps, mean(self.temperature_c),
            self.is_holiday[: n * k : k].copy(), resolution_s, self.utc_offset_h, self.tz)

    def to_profiles(self) -> DailyProfiles:
        """Daily 30-min mean power [n_days, 48] of the complete local days in the trace."""
        if self.resolution_s == 1800:
            half = self
        else:  # only the columns a profile needs, not every appliance
            light = HouseholdTrace(self.household_id, self.ts_s, self.power_w, self.reactive_var,
                                   self.import_wh, self.export_wh, {}, self.temperature_c,
                                   self.is_holiday, self.resolution_s, self.utc_offset_h, self.tz)
            half = light.resample(1800)
        local = half.ts_s + wx.clock_offsets_s(half.ts_s, self.utc_offset_h, self.tz)
        slot = local // 1800
        d0, d1 = int(-(-slot.min() // 48)), int((slot.max() + 1) // 48)  # complete local days
        n_days = max(d1 - d0, 0)
        idx = slot - d0 * 48
        ok = (idx >= 0) & (idx < n_days * 48)
        return DailyProfiles(
            household_id=self.household_id,
            dates=np.arange(d0, d0 + n_days).astype("datetime64[D]"),
            load_w=_slot_means(idx[ok], half.power_w[ok], n_days),
            temperature_c=_slot_means(idx[ok], half.temperature_c[ok], n_days),
            weekday=((np.arange(d0, d0 + n_days) + 3) % 7).astype(np.int8),
            is_holiday=np.array([wx.is_holiday_day(d) for d in range(d0, d0 + n_days)], bool),
        )


def _slot_means(idx: np.ndarray, values: np.ndarray, n_days: int) -> np.ndarray:
    """[n_days, 48] means of the samples in each local half-hour.

    Only the clock changes make a slot empty (the hour skipped in spring, interpolated) or
    doubled (the hour repeated in autumn, averaged).
    """
    total = np.bincount(idx, weights=values, minlength=n_days * 48)
    count = np.bincount(idx, minlength=n_days * 48)
    out = (total / np.maximum(count, 1)).reshape(n_days, 48)
    empty = (count == 0).reshape(n_days, 48)
    for d in np.flatnonzero(empty.any(axis=1)):
        have = ~empty[d]
        out[d, empty[d]] = np.interp(np.flatnonzero(empty[d]), np.flatnonzero(have), out[d, have])
    return out.astype(np.float32)
