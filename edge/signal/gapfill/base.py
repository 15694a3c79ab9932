"""What every gap filler shares: input checks, gap runs and knowledge windows.

A filler is ``fill(values, missing, ts_s) -> filled``: ``values`` float array (anything at
missing positions is ignored), ``missing`` bool mask of the same length, ``ts_s`` epoch seconds
(increasing). Known samples are returned bit-for-bit unchanged; only missing ones are written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.signal.errors import FillError, SignalInputError
from edge.signal.runs import runs


@dataclass(frozen=True)
class Gap:
    """Missing run ``[start, stop)`` with the known samples available either side (knowledge)."""

    start: int
    stop: int
    known_before: int
    known_after: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def check_input(values, missing, ts_s=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and convert; raise :class:`SignalInputError` with a clear message on bad input."""
    try:
        x = np.asarray(values, dtype=np.float64)
        m = np.asarray(missing)
    except (TypeError, ValueError) as e:
        raise SignalInputError(f"values must be numeric: {e}") from e
    if x.ndim != 1:
        raise SignalInputError(f"values must be 1-D, got shape {x.shape}")
    if m.shape != x.shape:
        raise SignalInputError(f"missing mask shape {m.shape} != values shape {x.shape}")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise SignalInputError("missing mask must be boolean (or 0/1)")
        m = m.astype(bool)
    if not np.isfinite(x[~m]).all():
        bad = np.flatnonzero(~np.isfinite(x) & ~m)[:5]
        raise SignalInputError(f"known samples must be finite; non-finite at indices {bad.tolist()}"
                               " (mark them missing)")
    if ts_s is None:
        t = np.arange(x.size, dtype=np.float64)
    else:
        t = np.asarray(ts_s, dtype=np.float64)
        if t.shape != x.shape:
            raise SignalInputError(f"ts_s shape {t.shape} != values shape {x.shape}")
        if t.size > 1 and not (np.diff(t) > 0).all():
            raise SignalInputError("ts_s must be strictly increasing")
    if m.any() and m.all():
        raise FillError("every sample is missing: nothing to fill from")
    return x, m, t


def find_gaps(missing: np.ndarray) -> list[Gap]:
    """Runs of missing samples with the number of known samples up to the neighbouring gaps."""
    m = np.asarray(missing, dtype=bool)
    if not m.any():
        return []
    starts, stops = runs(m)
    prev_stop = np.concatenate(([0], stops[:-1]))
    next_start = np.concatenate((starts[1:], [m.size]))
    return [Gap(int(a), int(b), int(a - p), int(n - b))
            for a, b, p, n in zip(starts, stops, prev_stop, next_start, strict=True)]


def window(gap: Gap, n: int, knowledge: int) -> tuple[int, int]:
    """Index range ``[lo, hi)`` around a gap with at most ``knowledge`` samples either side."""
    return max(0, gap.start - knowledge), min(n, gap.stop + knowledge)


def linear_fill(x: np.ndarray, m: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Linear interpolation in time; constant extrapolation at the ends."""
    out = x.copy()
    if m.any():
        out[m] = np.interp(t[m], t[~m], x[~m])
    return out


# A fill may leave the range of the known samples by this share of that range before it counts as
# diverged. Spline-based fillers (envelope, EMD) extrapolate cubics across long gaps and were seen
# to reach thousands of W on a household whose known samples stay below 3 kW.
DIVERGENCE_MARGIN = 1.0


def finish(x: np.ndarray, m: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Write estimates into missing positions only; known samples stay exactly as given.

    Where a filler diverged (non-finite, or further outside the known samples' range than
    ``DIVERGENCE_MARGIN`` times that range) the linear fill is used at those samples instead."""
    out = x.copy()
    est = np.asarray(estimate, dtype=np.float64)
    known = x[~m]
    bad = m & ~np.isfinite(est)
    if known.size and np.isfinite(known).all():
        lo, hi = float(known.min()), float(known.max())
        margin = DIVERGENCE_MARGIN * max(hi - lo, 1e-9)
        with np.errstate(invalid="ignore"):
            bad |= m & ((est < lo - margin) | (est > hi + margin))
    if bad.any():  # a filler diverged somewhere: never return NaN or a blow-up, use linear there
        lin = linear_fill(x, m, np.arange(x.size, dtype=np.float64))
        est = np.where(bad, lin, est)
    out[m] = est[m]
    return out
