"""The energy-counter constraint: filled power integrates to the counter difference across a gap.

Convention (stated because the answer depends on it): sample ``i`` carries the energy of one
sample interval and the counter is read at the end of it -- edge.sim's convention (``ts_s`` marks
the interval start, ``import_wh`` its end) and equally that of a meter whose ``power_w[i]`` is the
mean over ``(ts_s[i-1], ts_s[i]]``. So ``counter_wh[b] - counter_wh[a] = sum_{i=a+1..b} power_w[i] *
(ts_s[i] - ts_s[i-1]) / 3600``. For each gap, ``a`` is the last sample before it and ``b`` the first
sample after it that carry a counter reading; the known samples in ``(a, b]`` stay fixed and the
missing ones absorb the difference. The shape of the fill is kept by scaling when the filled
energy and the energy still owed have the same sign and are within a factor of 4 of each other;
otherwise (e.g. a fill near zero, where a scale factor would explode) a constant power is added. Gaps not bracketed by counters are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.signal.errors import SignalInputError
from edge.signal.gapfill.base import Gap, check_input, find_gaps, linear_fill


def _bracket(gap: Gap, have: np.ndarray, e: np.ndarray) -> tuple[int, int] | None:
    """(a, b): the last sample before ``gap`` and the first after it with a counter reading, or
    None when the gap is not bracketed, or the counter went backwards across it (a reset or a
    swapped meter: the difference says nothing about the gap)."""
    ia = np.searchsorted(have, gap.start) - 1
    ib = np.searchsorted(have, gap.stop)
    if ia < 0 or ib >= have.size:
        return None
    a, b = int(have[ia]), int(have[ib])
    return (a, b) if e[b] >= e[a] else None


def apply_energy_constraint(filled_w, missing, ts_s, counter_wh) -> np.ndarray:
    """Return ``filled_w`` with each counter-bracketed gap rescaled to the counter difference.

    ``counter_wh``: cumulative (net) energy counter per sample, NaN where not read. Shapes [n].
    """
    p = np.asarray(filled_w, dtype=np.float64).copy()
    m = np.asarray(missing, dtype=bool)
    t = np.asarray(ts_s, dtype=np.float64)
    e = np.asarray(counter_wh, dtype=np.float64)
    if not (p.shape == m.shape == t.shape == e.shape):
        raise SignalInputError("filled_w, missing, ts_s and counter_wh must have the same shape")
    if not np.isfinite(p).all():
        raise SignalInputError("filled_w must be finite everywhere (fill the gaps first)")
    dt_h = np.diff(t, prepend=np.nan) / 3600.0
    have = np.flatnonzero(np.isfinite(e))
    for g in find_gaps(m):
        ends = _bracket(g, have, e)
        if ends is None:
            continue
        a, b = ends
        span = np.arange(a + 1, b + 1)
        free = span[m[span]]
        owed_wh = (e[b] - e[a]) - np.sum(p[span[~m[span]]] * dt_h[span[~m[span]]])
        have_wh = np.sum(p[free] * dt_h[free])
        ratio = owed_wh / have_wh if have_wh != 0 else np.inf
        if 0.25 <= ratio <= 4.0:  # same sign and comparable: keep the shape
            p[free] *= ratio
        else:
            p[free] += (owed_wh - have_wh) / np.sum(dt_h[free])
    return p


@dataclass(frozen=True)
class EnergyFill:
    """A filled series and what was filled how (energies in Wh, over the missing samples)."""

    filled_w: np.ndarray  # float64 [n]: known samples as given, missing ones filled
    gaps: int  # runs of missing samples
    samples_filled: int  # missing samples, all filled
    samples_energy_exact: int  # of those, in counter-bracketed gaps: their energy is the counted one
    energy_filled_wh: float  # energy of every filled sample
    energy_counted_wh: float  # the counted energy the exact samples were given (counter differences
    # minus the known samples between the two counter readings)

    def summary(self) -> dict:
        """JSON-friendly: what the quality message reports."""
        return {"gaps": self.gaps, "samples_filled": self.samples_filled,
                "samples_energy_exact": self.samples_energy_exact,
                "samples_linear": self.samples_filled - self.samples_energy_exact,
                "energy_filled_wh": round(self.energy_filled_wh, 3),
                "energy_counted_wh": round(self.energy_counted_wh, 3)}


def energy_exact_fill(values, missing, ts_s, counter_wh) -> EnergyFill:
    """Linear interpolation in time (ends held), then every gap bracketed by two counter readings
    rescaled so that its energy is the counted energy (seed 002's energy-aware filling; the
    convention of this module's docstring: ``ts_s[i]`` ends sample i's interval, the counter is read
    then). Gaps without counters on both sides stay linear. ``values``, ``missing``, ``ts_s``,
    ``counter_wh``: shape [n]; ``counter_wh`` NaN where not read. Raises SignalInputError on bad
    input, FillError if every sample is missing."""
    x, m, t = check_input(values, missing, ts_s)
    e = np.asarray(counter_wh, dtype=np.float64)
    if e.shape != x.shape:
        raise SignalInputError(f"counter_wh shape {e.shape} != values shape {x.shape}")
    gaps = find_gaps(m)
    if not gaps:
        return EnergyFill(x.copy(), 0, 0, 0, 0.0, 0.0)
    filled = apply_energy_constraint(linear_fill(x, m, t), m, t, e)
    dt_h = np.diff(t, prepend=t[0] - (t[1] - t[0] if t.size > 1 else 0.0)) / 3600.0
    have = np.flatnonzero(np.isfinite(e))
    exact = np.zeros(x.size, dtype=bool)
    for g in gaps:
        if _bracket(g, have, e) is not None:
            exact[g.start:g.stop] = True
    return EnergyFill(filled, len(gaps), int(m.sum()), int(exact.sum()),
                      float(np.sum(filled[m] * dt_h[m])), float(np.sum(filled[exact] * dt_h[exact])))
