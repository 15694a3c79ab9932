"""Envelope gap filling (seed 002 §4.2.4).

All local maxima lie on an upper envelope and all minima on a lower one. From the knowledge either
side we take the mean spacing of extrema and continue their rhythm into the gap from the last
extremum before it, alternating maximum and minimum. Each new extremum gets its value from the
envelope through the known extrema of its kind (shape-preserving PCHIP spline, which does not
overshoot the way a cubic one does). The gap is then the PCHIP spline through the known samples
and the new extrema: monotone between consecutive points, so the placed extrema stay extrema. With
no extrema in the knowledge (a flat or monotone stretch) this reduces to a smooth spline join.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.signal import find_peaks

from edge.signal.gapfill.base import Gap, window


@dataclass(frozen=True)
class EnvelopeConfig:
    knowledge: int = 48
    prominence_frac: float = 0.1  # of the 5-95 % spread of the known window


def local_extrema(x: np.ndarray, known: np.ndarray, prominence_frac: float = 0.1
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Maxima and minima among known samples, kept if their prominence exceeds a fraction of
    the spread of the known values (noise wiggles are not part of the envelope rhythm)."""
    kidx = np.flatnonzero(known)
    if kidx.size < 3:
        return np.zeros(0, int), np.zeros(0, int)
    xs = x[kidx]
    spread = float(np.percentile(xs, 95) - np.percentile(xs, 5))
    prom = max(prominence_frac * spread, 1e-12)
    maxima = kidx[find_peaks(xs, prominence=prom)[0]]
    minima = kidx[find_peaks(-xs, prominence=prom)[0]]
    return maxima, minima


def _envelope_at(pos: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Envelope through the known extrema; held constant beyond the outermost ones (a
    polynomial extrapolated across a long gap can run off to any value)."""
    if idx.size >= 2:
        return PchipInterpolator(idx, vals)(np.clip(pos, idx[0], idx[-1]))
    return np.full(pos.shape, vals[0])


def fill_window(xw: np.ndarray, kw: np.ndarray, s: int, e: int, prominence_frac: float = 0.1
                ) -> np.ndarray:
    """Estimate for window positions ``[s, e)`` (the gap) from known samples ``kw`` of ``xw``."""
    kidx = np.flatnonzero(kw)
    maxima, minima = local_extrema(xw, kw, prominence_frac)
    pts_i, pts_v = list(kidx), list(xw[kidx])
    ext = np.sort(np.concatenate([maxima, minima]))
    if ext.size >= 3 and maxima.size and minima.size:
        spacing = float(np.median(np.diff(ext)))
        before = ext[ext < s]
        # continue the rhythm from the last extremum before the gap (else the first after it)
        anchor = before[-1] if before.size else ext[ext >= e][0]
        is_max = anchor in set(maxima.tolist())
        k = np.arange(1, int((e - anchor) / max(spacing, 1.0)) + 2)
        pos = anchor + k * spacing if before.size else anchor - k * spacing
        kind_max = (k % 2 == 0) == is_max
        inside = (pos >= s - 0.5) & (pos <= e - 0.5)
        pos, kind_max = pos[inside], kind_max[inside]
        if pos.size:
            val = np.where(kind_max, _envelope_at(pos, maxima, xw[maxima]),
                           _envelope_at(pos, minima, xw[minima]))
            pts_i += list(pos)
            pts_v += list(val)
    order = np.argsort(pts_i, kind="stable")
    pi, pv = np.asarray(pts_i, float)[order], np.asarray(pts_v, float)[order]
    keep = np.concatenate(([True], np.diff(pi) > 1e-9))
    if keep.sum() < 2:
        return np.full(e - s, pv[0])
    return PchipInterpolator(pi[keep], pv[keep], extrapolate=True)(np.arange(s, e))


def fill_gaps(x: np.ndarray, m: np.ndarray, t: np.ndarray, gaps: list[Gap],
              cfg: EnvelopeConfig = EnvelopeConfig()) -> np.ndarray:
    est = x.copy()
    est[m] = np.interp(t[m], t[~m], x[~m])
    for g in gaps:
        lo, hi = window(g, x.size, cfg.knowledge)
        with np.errstate(over="ignore", invalid="ignore"):  # degenerate splines: caught in finish()
            est[g.start:g.stop] = fill_window(x[lo:hi], ~m[lo:hi], g.start - lo, g.stop - lo,
                                              cfg.prominence_frac)
    return est
