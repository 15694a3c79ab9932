"""Papoulis-Gerchberg gap filling with the bandwidth estimated from known samples.

P-G assumes a periodic, band-limited signal with ``F`` frequency components (seed 002 §4.2.1):
alternately project onto the band (zero every FFT bin above ``F``) and onto the data (re-impose
the known samples). Each gap is handled in a window of ``knowledge`` samples either side, after
removing a straight line fitted to the window's known samples, so the window edges do not leak a
jump into the band.

Bandwidth: the seed estimates ``F`` "by varying the frequency components and analysing the mean
square error on the known signal". Taken literally the in-sample error only falls as ``F`` grows
(the full band reproduces every known sample), so its minimum would always be "no band limit". We
therefore score each candidate ``F`` on known samples that are hidden in an artificial gap next to
the real one and pick the minimum: the same error on known samples, measured out of sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.signal.gapfill.base import Gap
from edge.signal.gapfill.batching import artificial_gap, linear_rows, window_batches, write_back


@dataclass(frozen=True)
class PapoulisConfig:
    knowledge: int = 64  # samples either side of a gap
    iterations: int = 40
    n_candidates: int = 8  # bandwidth candidates, spaced geometrically from 1 to N/2


def detrend(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Least-squares line through the known samples of each row, evaluated everywhere: [B, N]."""
    n = values.shape[-1]
    u = np.linspace(-1.0, 1.0, n)
    w = known.astype(np.float64)
    sw, su, suu = w.sum(-1), (w * u).sum(-1), (w * u * u).sum(-1)
    sy, suy = (w * values).sum(-1), (w * u * values).sum(-1)
    det = sw * suu - su * su
    safe = np.abs(det) > 1e-12
    slope = np.where(safe, (sw * suy - su * sy) / np.where(safe, det, 1.0), 0.0)
    icpt = (sy - slope * su) / np.maximum(sw, 1e-12)
    return icpt[..., None] + slope[..., None] * u


def pg_iterate(x0: np.ndarray, known: np.ndarray, band: np.ndarray, iterations: int) -> np.ndarray:
    """P-G iterations on the last axis; ``band`` is the rfft bin mask (broadcast against x0)."""
    x = x0.copy()
    fixed = x0[known] if known.shape == x0.shape else None
    for _ in range(iterations):
        x = np.fft.irfft(np.fft.rfft(x, axis=-1) * band, n=x.shape[-1], axis=-1)
        if fixed is not None:
            x[known] = fixed
        else:
            x = np.where(known, x0, x)
    return x


def _bands(n: int, f: np.ndarray) -> np.ndarray:
    """Masks [len(f), n//2+1] keeping bins 0..F."""
    return (np.arange(n // 2 + 1)[None, :] <= f[:, None]).astype(np.float64)


def fill_gaps(x: np.ndarray, m: np.ndarray, t: np.ndarray, gaps: list[Gap],
              cfg: PapoulisConfig = PapoulisConfig()) -> np.ndarray:
    est = x.copy()
    est[m] = np.interp(t[m], t[~m], x[~m])
    for batch in window_batches(x, m, t, gaps, cfg.knowledge):
        n = batch.values.shape[1]
        if n < 4:
            continue
        trend = detrend(batch.values, batch.known)
        r0 = batch.values - trend  # gaps start from the linear path
        cands = np.unique(np.round(np.geomspace(1, n // 2, cfg.n_candidates)).astype(int))
        art = artificial_gap(batch)
        known_cv = batch.known & ~art  # [B, N]
        r_cv = linear_rows(r0, known_cv)  # the artificial gap must not start from its truth
        # candidates on a new axis: [B, C, N]
        x_cv = pg_iterate(np.broadcast_to(r_cv[:, None, :], (len(r0), cands.size, n)).copy(),
                          np.broadcast_to(known_cv[:, None, :], (len(r0), cands.size, n)),
                          _bands(n, cands)[None], cfg.iterations)
        err = ((x_cv - r0[:, None, :]) ** 2 * art[:, None, :]).sum(-1)  # [B, C]
        best = cands[np.argmin(err, axis=1)]
        # rows without an artificial gap (too little knowledge) keep the lowest bandwidth
        best = np.where(art.any(1), best, cands[0])
        x_fin = pg_iterate(r0, batch.known, _bands(n, best), cfg.iterations)
        write_back(est, batch, x_fin + trend)
    return est
