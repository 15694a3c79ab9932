"""Runs of consecutive ``True`` samples in a boolean series: a gap of missing readings, an
appliance's ON session, a use the NILM decision judges. One definition for the signal layer, the
classical NILM methods and the NILM decision."""

from __future__ import annotations

import numpy as np


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of ``True`` starts and stops.

    mask: [T], anything ``np.asarray(mask, bool)`` reads. Returns ``(starts, stops)``, two int64
    arrays [R] in time order with ``stops`` exclusive: run ``r`` is ``mask[starts[r]:stops[r]]``,
    so ``stops - starts`` are the run lengths; R = 0 when nothing is ``True``. Raises
    ``ValueError`` for a mask that is not one-dimensional.
    """
    m = np.asarray(mask, bool)
    if m.ndim != 1:
        raise ValueError(f"runs expects a 1-D mask, got shape {m.shape}")
    d = np.diff(np.concatenate(([0], m.view(np.int8), [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)
