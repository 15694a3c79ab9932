"""Seed 004's Gaussian interpolation: per-hour Gaussian sampling under wide-sense stationarity.

For each hour of the day the known samples give a mean and standard deviation; a missing sample in
that hour is drawn as ``mu_h + sigma_h * Z`` with ``Z ~ N(0, 1)`` and clipped to ``[0, capacity]``
(seed 004 clipped to the plant's 2000 kW capacity and to zero). The draw preserves the hourly
distribution (and so the jitter power), not the sample value: it is meant for very sparse data.
An hour with fewer than ``min_samples`` known values uses the statistics of all known samples.
``capacity_w=None`` uses the largest known value (a household's fuse limit is rarely known). The
lower clip is 0, as in the seed, unless the known data are negative somewhere (a net meter
exporting PV): then the lowest known value, since clipping export to 0 would bias the fill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.signal.errors import SignalInputError
from edge.signal.gapfill.base import Gap


@dataclass(frozen=True)
class GaussianConfig:
    capacity_w: float | None = None
    utc_offset_s: float = 0.0  # hours of the local day: ts_s + offset
    min_samples: int = 2
    seed: int = 0  # draws are reproducible


def hourly_stats(x: np.ndarray, known: np.ndarray, hour: np.ndarray, min_samples: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per hour of day [24], pooled fallback for thin hours."""
    cnt = np.bincount(hour[known], minlength=24).astype(float)
    s1 = np.bincount(hour[known], weights=x[known], minlength=24)
    s2 = np.bincount(hour[known], weights=x[known] ** 2, minlength=24)
    mu = s1 / np.maximum(cnt, 1)
    sigma = np.sqrt(np.maximum(s2 / np.maximum(cnt, 1) - mu**2, 0.0))
    thin = cnt < min_samples
    mu[thin], sigma[thin] = x[known].mean(), x[known].std()
    return mu, sigma


def fill_gaps(x: np.ndarray, m: np.ndarray, t: np.ndarray, gaps: list[Gap],
              cfg: GaussianConfig = GaussianConfig()) -> np.ndarray:
    known = x[~m]
    floor = 0.0 if known.min() >= 0 else float(known.min())  # a net meter exporting PV
    capacity = cfg.capacity_w if cfg.capacity_w is not None else max(float(known.max()), floor)
    if capacity < floor:
        raise SignalInputError(f"capacity_w ({capacity}) is below the lowest value ({floor})")
    hour = (np.floor((t + cfg.utc_offset_s) / 3600.0) % 24).astype(np.int64)
    mu, sigma = hourly_stats(x, ~m, hour, cfg.min_samples)
    est = x.copy()
    idx = np.concatenate([np.arange(g.start, g.stop) for g in gaps]) if gaps else np.zeros(0, int)
    z = np.random.default_rng(cfg.seed).standard_normal(idx.size)
    est[idx] = np.clip(mu[hour[idx]] + sigma[hour[idx]] * z, floor, capacity)
    return est
