"""Per-meter resampling of irregular readings to the model's fixed resolution.

A bin holds the mean of the power samples whose ``ts_s`` falls in ``[k*res, (k+1)*res)``. For the
meters we read (DSMR every 1-10 s, ZigBee on change or every few seconds) the sample mean is the
sound choice: a time-weighted mean would need the previous sample across bin borders and changes
nothing at these rates. Bins with no sample are missing (NaN) and are left to the gap filler or the
imputation model; only closed bins (before the bin of the newest reading) enter a model window.

Each bin also keeps the last energy counter reading in it (net Wh: import minus export, with its
time); ``counters()`` carries it to the bin's end with the bin's mean power, so a gap of empty bins
bracketed by two counter values can be filled with exactly the energy the meter counted
(``edge.agent.gapfill``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Resampler:
    resolution_s: float
    keep_bins: int
    _bins: dict[int, list[float]] = field(default_factory=dict, repr=False)  # k -> [sum_w, count]
    _counters: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)  # k -> (ts_s, Wh)
    newest_bin: int | None = None

    def add(self, ts_s: float, power_w: float | None, counter_wh: float | None = None) -> None:
        if counter_wh is not None and math.isfinite(counter_wh):
            self.add_counter(int(ts_s // self.resolution_s), ts_s, counter_wh)
        if power_w is None or not math.isfinite(power_w):
            return
        k = int(ts_s // self.resolution_s)
        acc = self._bins.get(k)
        if acc is None:
            if self.newest_bin is not None and k <= self.newest_bin - self.keep_bins:
                return  # older than what we keep
            self._bins[k] = [power_w, 1.0]
            if self.newest_bin is None or k > self.newest_bin:
                self.newest_bin = k
                self._evict()
        else:
            acc[0] += power_w
            acc[1] += 1.0

    def add_bin(self, k: int, sum_w: float, count: float) -> None:
        """Merge a pre-aggregated bin (warm start from the store)."""
        acc = self._bins.setdefault(k, [0.0, 0.0])
        acc[0] += sum_w
        acc[1] += count
        if self.newest_bin is None or k > self.newest_bin:
            self.newest_bin = k
            self._evict()

    def add_counter(self, k: int, ts_s: float, counter_wh: float) -> None:
        """Keep the newest counter reading of bin ``k`` (also the warm start from the store)."""
        if self.newest_bin is not None and k <= self.newest_bin - self.keep_bins:
            return
        last = self._counters.get(k)
        if last is None or ts_s >= last[0]:
            self._counters[k] = (ts_s, counter_wh)

    def forget_counters(self) -> None:
        """A counter reset: differences across it mean nothing."""
        self._counters.clear()

    def _evict(self) -> None:
        assert self.newest_bin is not None
        oldest = self.newest_bin - self.keep_bins
        for k in [k for k in self._bins if k <= oldest]:
            del self._bins[k]
        for k in [k for k in self._counters if k <= oldest]:
            del self._counters[k]

    def window(self, n_bins: int, end_bin: int | None = None) -> tuple[float, np.ndarray, np.ndarray]:
        """The ``n_bins`` closed bins ending before ``end_bin`` (default: the newest, open bin).

        Returns (start_ts_s, power_w float32 [n] with NaN where missing, counts float32 [n]).
        """
        end = self.newest_bin if end_bin is None else end_bin
        if end is None:
            return 0.0, np.full(n_bins, np.nan, np.float32), np.zeros(n_bins, np.float32)
        start = end - n_bins
        power = np.full(n_bins, np.nan, np.float32)
        counts = np.zeros(n_bins, np.float32)
        for k, (s, c) in self._bins.items():
            i = k - start
            if 0 <= i < n_bins and c > 0:
                power[i] = s / c
                counts[i] = c
        return start * self.resolution_s, power, counts

    def counters(self, n_bins: int, end_bin: int | None = None) -> np.ndarray:
        """Net energy counter (Wh) at the end of each bin of ``window(n_bins, end_bin)``, float64
        [n], NaN where the bin has no counter reading. The bin's last reading is carried to the bin
        end with the bin's mean power (none: as read)."""
        end = self.newest_bin if end_bin is None else end_bin
        out = np.full(n_bins, np.nan)
        if end is None:
            return out
        start = end - n_bins
        for k, (ts_s, wh) in self._counters.items():
            i = k - start
            if 0 <= i < n_bins:
                acc = self._bins.get(k)
                rest_h = ((k + 1) * self.resolution_s - ts_s) / 3600.0
                out[i] = wh + (acc[0] / acc[1] * rest_h if acc and acc[1] > 0 else 0.0)
        return out
