"""Power-change event detection (steady-state "power change" feature, seed 002 §4.3.2).

A sample-to-sample step larger than ``threshold_w`` is an edge; consecutive edges of the same sign
(a ramp spread over two or three samples at 1-10 s resolution) are merged into one event whose
size is the difference between the steady levels before and after it: the median of up to
``steady_samples`` samples each side. Reactive power, when given, is treated the same way, so each
event carries (dP, dQ) for Weiss-style matching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.signal.errors import SignalInputError


@dataclass(frozen=True)
class EventConfig:
    threshold_w: float = 30.0
    steady_samples: int = 3


@dataclass
class Events:
    """Detected events as parallel arrays (index = first sample at the new level)."""

    index: np.ndarray  # int
    ts_s: np.ndarray
    dp_w: np.ndarray
    dq_var: np.ndarray  # NaN without reactive power

    def __len__(self) -> int:
        return int(self.index.size)


def _level(x: np.ndarray, lo: int, hi: int) -> float:
    lo, hi = max(lo, 0), min(hi, x.size)
    return float(np.median(x[lo:hi])) if hi > lo else float("nan")


def detect_events(power_w, ts_s=None, reactive_var=None, cfg: EventConfig = EventConfig()) -> Events:
    p = np.asarray(power_w, dtype=np.float64)
    if p.ndim != 1 or not np.isfinite(p).all():
        raise SignalInputError("power_w must be a finite 1-D array (fill gaps first)")
    t = np.arange(p.size, dtype=np.float64) if ts_s is None else np.asarray(ts_s, dtype=np.float64)
    q = None if reactive_var is None else np.asarray(reactive_var, dtype=np.float64)
    if t.shape != p.shape or (q is not None and q.shape != p.shape):
        raise SignalInputError("power_w, ts_s and reactive_var must have the same length")
    d = np.diff(p)
    sign = np.where(d > cfg.threshold_w, 1, np.where(d < -cfg.threshold_w, -1, 0))
    edge = np.flatnonzero(sign != 0)
    if not edge.size:
        empty = np.zeros(0)
        return Events(np.zeros(0, int), empty, empty, empty)
    # merge runs of adjacent same-sign edges
    new_run = np.concatenate(([True], (np.diff(edge) > 1) | (np.diff(sign[edge]) != 0)))
    starts = edge[new_run]
    ends = np.append(edge[np.flatnonzero(new_run)[1:] - 1], edge[-1])
    k = cfg.steady_samples
    # steady windows stop at the neighbouring edges, so a short use (a kettle for 3 samples)
    # is measured on its own plateau, not on the next transition
    prev_end = np.concatenate(([-1], ends[:-1]))
    next_start = np.concatenate((starts[1:], [p.size - 1]))
    idx, dp, dq = [], [], []
    for s, e, pe, ns in zip(starts, ends, prev_end, next_start, strict=True):
        b0, b1 = max(s + 1 - k, pe + 1), s + 1
        a0, a1 = e + 1, min(e + 1 + k, ns + 1)
        step = _level(p, a0, a1) - _level(p, b0, b1)
        if not abs(step) >= cfg.threshold_w:
            continue  # a spike that returned to its level
        idx.append(e + 1)
        dp.append(step)
        dq.append(_level(q, a0, a1) - _level(q, b0, b1) if q is not None else np.nan)
    index = np.asarray(idx, dtype=np.int64)
    return Events(index, t[index] if index.size else np.zeros(0), np.asarray(dp, float),
                  np.asarray(dq, float))
