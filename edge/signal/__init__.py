"""Meter-side signal layer (numpy/scipy only, runs on the Pi).

Seed 002's framework (data quality, gap filling, classical NILM, norm filter, multi-home patterns,
natural-language reports) and seed 004's per-hour Gaussian interpolation. These are also the
classical baselines the unified model is judged against.

    from edge.signal.quality import quality_summary
    from edge.signal.gapfill import fill, auto_fill, FILLERS, apply_energy_constraint
    from edge.signal.nilm import detect_events, FHMM, WeissMatcher, ParsonDisaggregator, norm_filter
"""

from edge.signal.errors import SignalError, SignalInputError

__all__ = ["SignalError", "SignalInputError"]
