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

import numpy as np

from edge.signal.errors import SignalInputError
from edge.signal.gapfill.base import find_gaps


def apply_energy_constraint(filled_w, missing, ts_s, counter_wh) -> np.ndarray:
    """Return ``filled_w`` with each counter-bracketed gap rescaled to the counter difference.

    ``counter_wh``: cumulative (net) energy counter per sample, NaN where not read.
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
        ia = np.searchsorted(have, g.start) - 1
        ib = np.searchsorted(have, g.stop)
        if ia < 0 or ib >= have.size:
            continue
        a, b = have[ia], have[ib]
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
