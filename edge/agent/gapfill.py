"""Gap filling of the agent's resampled windows, energy-exact where the meter's counters allow.

A window is L bins of mean power; a bin without readings is a gap (NaN). The fill is linear in
time, and then every gap bracketed by two energy counter readings is rescaled so that the filled
bins hold exactly the energy the meter counted across the gap (seed 002's energy-aware filling,
``edge.signal.gapfill.energy``): a kettle that ran while the link was down is in the filled
energy, not interpolated away. Gaps at the window's edges, or without counters on both sides,
stay linear. Only ``edge.signal.gapfill.energy`` is imported (numpy only; the full filler registry
would load scipy, ~69 MB RSS on the Pi).

Time convention: bin i covers ``[start + i*res, start + (i+1)*res)``; its counter (see
``Resampler.counters``) is the counter at the bin's end, which is where the energy module reads
it (a sample's energy is counted at the end of its interval).
"""

from __future__ import annotations

import numpy as np

from edge.signal.gapfill.energy import EnergyFill, energy_exact_fill

METHOD_ENERGY = "linear, rescaled to the energy counters where they bracket the gap"
METHOD_LINEAR = "linear (no energy counter on both sides of any gap)"


def fill_window(window_w: np.ndarray, start_ts_s: float, resolution_s: float,
                counter_wh: np.ndarray | None = None) -> EnergyFill:
    """Fill the NaN bins of ``window_w`` (W, [L]); ``counter_wh`` ([L], NaN where not read) makes
    bracketed gaps energy-exact. An all-missing window comes back as zeros (nothing to fill from)."""
    x = np.asarray(window_w, dtype=np.float64)
    missing = ~np.isfinite(x)
    if missing.all():
        return EnergyFill(np.zeros_like(x), 1 if x.size else 0, int(x.size), 0, 0.0, 0.0)
    ends_s = start_ts_s + resolution_s * np.arange(1, x.size + 1, dtype=np.float64)
    counters = np.full(x.size, np.nan) if counter_wh is None else np.asarray(counter_wh, np.float64)
    return energy_exact_fill(np.where(missing, 0.0, x), missing, ends_s, counters)


def fill_report(fill: EnergyFill, resolution_s: float, window_start_s: float) -> dict:
    """The quality message's ``gap_fill`` part: how much of the window was filled, and how."""
    body = fill.summary()
    body.update(resolution_s=resolution_s, window_start_s=window_start_s,
                method=METHOD_ENERGY if fill.samples_energy_exact else METHOD_LINEAR)
    return body


def window_fill_report(resampler, n_bins: int) -> dict:
    """``fill_report`` of a resampler's current window of ``n_bins``."""
    start_s, window, _ = resampler.window(n_bins)
    fill = fill_window(window, start_s, resampler.resolution_s, resampler.counters(n_bins))
    return fill_report(fill, resampler.resolution_s, start_s)
