"""The filler registry: name -> implementation, settings and purpose, and ``fill(method, ...)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.signal.errors import SignalInputError
from edge.signal.gapfill import emd, envelope, gaussian, linear, papoulis, ssa, wiener
from edge.signal.gapfill.auto import auto_fill
from edge.signal.gapfill.base import check_input, find_gaps, finish


@dataclass(frozen=True)
class FillerSpec:
    name: str
    fill_gaps: Callable  # (x, m, t, gaps, cfg) -> estimate array
    config: type
    needs_ts: bool  # uses the clock (not just sample order)
    summary: str

    def __call__(self, values, missing, ts_s=None, config=None, **options) -> np.ndarray:
        """The common interface: ``FILLERS["wiener"](values, missing, ts_s) -> filled``."""
        return fill(self.name, values, missing, ts_s, config, **options)


# The registry, as a data table: name -> implementation, settings, what it is for.
FILLERS: dict[str, FillerSpec] = {
    s.name: s for s in (
        FillerSpec("linear", linear.fill_gaps, linear.LinearConfig, True,
                   "linear in time; exact on lines; best for 1-5 samples (seed 002)"),
        FillerSpec("wiener", wiener.fill_gaps, wiener.WienerConfig, False,
                   "forward + backward AR predictors cross-faded; fast, short gaps"),
        FillerSpec("papoulis", papoulis.fill_gaps, papoulis.PapoulisConfig, False,
                   "Papoulis-Gerchberg band-limited; bandwidth from an artificial gap"),
        FillerSpec("ssa", ssa.fill_gaps, ssa.SSAConfig, False,
                   "Kondrashov-Ghil (M-)SSA; components from an artificial gap"),
        FillerSpec("envelope", envelope.fill_gaps, envelope.EnvelopeConfig, False,
                   "extrema continued into the gap on the envelopes, PCHIP join"),
        FillerSpec("emd", emd.fill_gaps, emd.EMDConfig, False,
                   "EMD; each IMF filled by the envelope method, then summed"),
        FillerSpec("gaussian", gaussian.fill_gaps, gaussian.GaussianConfig, True,
                   "seed 004: per-hour N(mu, sigma) draws clipped to [0, capacity]"),
    )
}


def fill(method: str, values, missing, ts_s=None, config=None, **options) -> np.ndarray:
    """Fill the missing samples of ``values`` with ``method`` (a key of :data:`FILLERS`)."""
    if method == "auto":
        return auto_fill(values, missing, ts_s, **options)
    try:
        spec = FILLERS[method]
    except KeyError as e:
        raise SignalInputError(f"unknown filler {method!r}; known: {sorted(FILLERS)} or 'auto'") from e
    x, m, t = check_input(values, missing, ts_s)
    gaps = find_gaps(m)
    if not gaps:
        return x.copy()
    cfg = config if config is not None else spec.config()
    return finish(x, m, spec.fill_gaps(x, m, t, gaps, cfg, **options))

