"""EMD-based gap filling (seed 002 §4.2.5), with a small empirical mode decomposition of our own.

The knowledge window (gap pre-filled linearly) is split into intrinsic mode functions by sifting:
subtract the mean of the cubic-spline envelopes through the maxima and through the minima until the
Huang SD criterion is met. Each IMF, being simpler than the signal, is filled across the gap by the
envelope method (its own samples in the gap treated as missing); the slow residual is filled
linearly; the sum is the estimate. Splitting a signal that has a gap is not exact (seed 002 notes
this); the linear pre-fill keeps the spurious oscillation that the gap would otherwise cause small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from edge.signal.gapfill.base import Gap, window
from edge.signal.gapfill.envelope import fill_window


@dataclass(frozen=True)
class EMDConfig:
    knowledge: int = 48
    max_imfs: int = 3
    max_sifts: int = 8
    sd_stop: float = 0.2  # Huang's sifting criterion


def _extrema(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.diff(x)
    maxima = np.flatnonzero((d[:-1] > 0) & (d[1:] <= 0)) + 1
    minima = np.flatnonzero((d[:-1] < 0) & (d[1:] >= 0)) + 1
    return maxima, minima


def _envelope(idx: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Spline through extrema, with the end samples added so the ends do not swing freely."""
    n = x.size
    pts = np.unique(np.concatenate(([0], idx, [n - 1])))
    return CubicSpline(pts, x[pts], bc_type="natural")(np.arange(n))


def emd(x: np.ndarray, max_imfs: int = 3, max_sifts: int = 8, sd_stop: float = 0.2
        ) -> tuple[list[np.ndarray], np.ndarray]:
    """Intrinsic mode functions and residual of ``x``; ``sum(imfs) + residual == x``."""
    imfs: list[np.ndarray] = []
    res = np.asarray(x, dtype=np.float64).copy()
    for _ in range(max_imfs):
        h = res.copy()
        maxima, minima = _extrema(h)
        if maxima.size < 2 or minima.size < 2:
            break
        for _ in range(max_sifts):
            maxima, minima = _extrema(h)
            if maxima.size < 2 or minima.size < 2:
                break
            mean = 0.5 * (_envelope(maxima, h) + _envelope(minima, h))
            sd = np.sum(mean**2) / (np.sum(h**2) + 1e-12)
            h = h - mean
            if sd < sd_stop:
                break
        imfs.append(h)
        res = res - h
    return imfs, res


def fill_gaps(x: np.ndarray, m: np.ndarray, t: np.ndarray, gaps: list[Gap],
              cfg: EMDConfig = EMDConfig()) -> np.ndarray:
    est = x.copy()
    est[m] = np.interp(t[m], t[~m], x[~m])
    for g in gaps:
        lo, hi = window(g, x.size, cfg.knowledge)
        xw, kw = est[lo:hi], ~m[lo:hi]
        s, e = g.start - lo, g.stop - lo
        if hi - lo < 8:
            continue
        with np.errstate(over="ignore", invalid="ignore"):  # degenerate splines: caught in finish()
            imfs, res = emd(xw, cfg.max_imfs, cfg.max_sifts, cfg.sd_stop)
        idx = np.arange(hi - lo)
        total = np.interp(idx[s:e], idx[kw], res[kw])
        for imf in imfs:
            total = total + fill_window(imf, kw, s, e)
        est[g.start:g.stop] = total
    return est
