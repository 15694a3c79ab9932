"""Per-meter resampling of irregular readings to the model's fixed resolution.

A bin holds the mean of the power samples whose ``ts_s`` falls in ``[k*res, (k+1)*res)``. For the
meters we read (DSMR every 1-10 s, ZigBee on change or every few seconds) the sample mean is the
sound choice: a time-weighted mean would need the previous sample across bin borders and changes
nothing at these rates. Bins with no sample are missing (NaN) and are left to the gap filler or the
imputation model; only closed bins (before the bin of the newest reading) enter a model window.
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
    newest_bin: int | None = None

    def add(self, ts_s: float, power_w: float | None) -> None:
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

    def _evict(self) -> None:
        assert self.newest_bin is not None
        oldest = self.newest_bin - self.keep_bins
        for k in [k for k in self._bins if k <= oldest]:
            del self._bins[k]

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
