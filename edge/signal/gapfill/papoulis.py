"""Papoulis-Gerchberg gap filling with the bandwidth estimated from known samples.

P-G assumes a periodic, band-limited signal with ``F`` frequency components (seed 002 §4.2.1):
alternately project onto the band (zero every FFT bin above ``F``) and onto the data (re-impose
the known samples). It is a multi-gap method: nearby gaps are filled together in one block (the
gaps plus ``knowledge`` samples either side, grown while gaps are close, up to ``max_block``
samples), so information is shared across them. A straight line through the block's two ends is
removed first, making the block continuous where the FFT wraps it around; a block that is one
period of a band-limited signal is left intact by this.

Bandwidth: the seed estimates ``F`` "by varying the frequency components and analysing the mean
square error on the known signal". Taken literally the in-sample error only falls as ``F`` grows
(the full band reproduces every known sample), so its minimum would always be "no band limit". We
therefore score each candidate ``F`` on known samples hidden in artificial gaps next to the real
ones (as long as each gap) and pick the minimum: the error on known samples, out of sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.signal.gapfill.base import Gap


@dataclass(frozen=True)
class PapoulisConfig:
    knowledge: int = 64  # samples either side of a gap
    max_block: int = 1024  # gaps closer than this are filled together
    iterations: int = 30
    n_candidates: int = 7  # bandwidth candidates, spaced geometrically from 1 to N/2


def blocks(gaps: list[Gap], n: int, knowledge: int, max_block: int) -> list[tuple[int, int, list[Gap]]]:
    """Group gaps into blocks ``[lo, hi)`` that hold each gap plus its knowledge."""
    out: list[tuple[int, int, list[Gap]]] = []
    for g in gaps:
        lo, hi = max(0, g.start - knowledge), min(n, g.stop + knowledge)
        if out and lo < out[-1][1] and hi - out[-1][0] <= max_block:
            out[-1] = (out[-1][0], hi, out[-1][2] + [g])
        else:
            out.append((lo, hi, [g]))
    return out


def end_line(values: np.ndarray, known: np.ndarray, k: int = 3) -> np.ndarray:
    """Line through the mean of the first and last ``k`` known samples."""
    idx = np.flatnonzero(known)
    a, b = idx[:k], idx[-k:]
    ya, yb, xa, xb = values[a].mean(), values[b].mean(), a.mean(), b.mean()
    slope = (yb - ya) / (xb - xa) if xb > xa else 0.0
    return ya + slope * (np.arange(values.size) - xa)


def pg_iterate(x0: np.ndarray, known: np.ndarray, band: np.ndarray, iterations: int) -> np.ndarray:
    """P-G iterations on the last axis; ``band`` is the rfft bin mask (broadcast against x0)."""
    x = x0.copy()
    n = x.shape[-1]
    for _ in range(iterations):
        x = np.fft.irfft(np.fft.rfft(x, axis=-1) * band, n=n, axis=-1)
        x = np.where(known, x0, x)
    return x


def _linear(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    idx = np.arange(values.size)
    out = values.copy()
    out[~known] = np.interp(idx[~known], idx[known], values[known])
    return out


def _artificial(known: np.ndarray, gaps: list[Gap], lo: int) -> np.ndarray:
    art = np.zeros_like(known)
    n = known.size
    for g in gaps:
        s, e = g.start - lo, g.stop - lo
        before, after = min(g.known_before, s), min(g.known_after, n - e)
        length = min(g.length, max(before, after) // 2)
        if length >= 1:
            if before >= after:
                art[s - length:s] = True
            else:
                art[e:e + length] = True
    return art & known


def fill_block(xw: np.ndarray, kw: np.ndarray, gaps: list[Gap], lo: int, cfg: PapoulisConfig
               ) -> np.ndarray:
    n = xw.size
    trend = end_line(xw, kw)
    r = _linear(np.where(kw, xw, 0.0), kw) - trend
    cands = np.unique(np.round(np.geomspace(1, n // 2, cfg.n_candidates)).astype(int))
    bins = np.arange(n // 2 + 1)
    art = _artificial(kw, gaps, lo)
    best = cands[0]
    if art.any():
        k_cv = kw & ~art
        r_cv = _linear(r, k_cv)  # the artificial gaps must not start from their truth
        bands = (bins[None, :] <= cands[:, None]).astype(float)
        x_cv = pg_iterate(np.broadcast_to(r_cv, (cands.size, n)), k_cv, bands, cfg.iterations)
        best = cands[np.argmin(((x_cv - r) ** 2)[:, art].sum(1))]
    return pg_iterate(r, kw, (bins <= best).astype(float), cfg.iterations) + trend


def fill_gaps(x: np.ndarray, m: np.ndarray, t: np.ndarray, gaps: list[Gap],
              cfg: PapoulisConfig = PapoulisConfig()) -> np.ndarray:
    est = x.copy()
    est[m] = np.interp(t[m], t[~m], x[~m])
    for lo, hi, group in blocks(gaps, x.size, cfg.knowledge, cfg.max_block):
        kw = ~m[lo:hi]
        if hi - lo < 4 or kw.sum() < 2:
            continue
        out = fill_block(x[lo:hi], kw, group, lo, cfg)
        for g in group:
            est[g.start:g.stop] = out[g.start - lo:g.stop - lo]
    return est
