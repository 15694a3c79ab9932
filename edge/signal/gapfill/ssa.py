"""Spatio-temporal gap filling by singular spectrum analysis (Kondrashov & Ghil 2006).

The window around a gap is embedded in a trajectory (Hankel) matrix of lag ``embedding``; with
extra channels (neighbouring meters, reactive power) their trajectory matrices are stacked beside
it (multichannel SSA: the "spatio" part). Missing samples start at the mean of the known ones; then,
for k = 1, 2, ... components, the signal is reconstructed from the k leading eigenvectors of the
lag-covariance matrix and the reconstruction replaces the missing samples until they converge
(the inner loop), each k warm-started from k-1 (the outer loop), as in Kondrashov-Ghil.

The number of components is chosen as seed 002 §4.2.3 describes: an artificial gap of known
samples next to the real one is filled alongside it, and k stops where its mean square error is
smallest. The real gap is then filled with that k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edge.signal.gapfill.base import Gap
from edge.signal.gapfill.batching import artificial_gap, window_batches, write_back


@dataclass(frozen=True)
class SSAConfig:
    knowledge: int = 48  # samples either side of a gap
    embedding: int = 12  # minimum lag window M (samples); at least 2x the gap, at most N/3
    max_components: int = 6
    inner_iterations: int = 15
    tol: float = 1e-3  # relative change that ends the inner loop


def _reconstruct(r: np.ndarray, m_lag: int, k: int, extra: np.ndarray | None) -> np.ndarray:
    """Rank-k SSA reconstruction of channel 0 for every row of r [B, N]."""
    b, n = r.shape
    traj = sliding_window_view(r, m_lag, axis=1)  # [B, K, M]
    if extra is not None:  # [B, C, N] -> [B, K, C*M]
        traj_x = sliding_window_view(extra, m_lag, axis=2).transpose(0, 2, 1, 3)
        traj = np.concatenate([traj, traj_x.reshape(b, traj.shape[1], -1)], axis=2)
    cov = np.einsum("bki,bkj->bij", traj, traj)
    _, vecs = np.linalg.eigh(cov)  # ascending
    u = vecs[:, :, ::-1][:, :, :k]  # [B, D, k]
    proj = np.einsum("bkd,bde->bke", traj, u)
    rec = np.einsum("bke,bde->bkd", proj, u[:, :m_lag, :])  # channel 0 columns only
    out = np.zeros((b, n))
    counts = np.zeros(n)
    rows = rec.shape[1]
    for j in range(m_lag):  # diagonal averaging back to a series
        out[:, j:j + rows] += rec[:, :, j]
        counts[j:j + rows] += 1
    return out / counts


def kondrashov_ghil(r0: np.ndarray, known: np.ndarray, m_lag: int, k_max: int, iters: int,
                    tol: float, extra: np.ndarray | None = None,
                    score_mask: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Run the K-G loops; return the estimate for every k and, if scored, errors [B, k_max]."""
    r = np.where(known, r0, 0.0)
    outs, errs = [], np.zeros((r0.shape[0], k_max))
    for k in range(1, k_max + 1):
        for _ in range(iters):
            rec = _reconstruct(r, m_lag, k, extra)
            new = np.where(known, r0, rec)
            change = np.abs(new - r).max() / (np.abs(r0).max() + 1e-9)
            r = new
            if change < tol:
                break
        outs.append(r.copy())
        if score_mask is not None:
            errs[:, k - 1] = ((r - r0) ** 2 * score_mask).sum(1)
    return outs, errs


def fill_gaps(x: np.ndarray, m: np.ndarray, t: np.ndarray, gaps: list[Gap],
              cfg: SSAConfig = SSAConfig(), channels: np.ndarray | None = None) -> np.ndarray:
    """``channels`` [C, len(x)]: optional fully known extra series (multichannel SSA)."""
    est = x.copy()
    est[m] = np.interp(t[m], t[~m], x[~m])
    for batch in window_batches(x, m, t, gaps, cfg.knowledge):
        n = batch.values.shape[1]
        # the lag window must span the gap or the iteration cannot bridge it (slow, biased)
        longest = max(g.length for g in batch.gaps)
        m_lag = min(max(cfg.embedding, 2 * longest), n // 3)
        if m_lag < 2:
            continue
        kw = batch.known
        mu = (batch.values * kw).sum(1, keepdims=True) / np.maximum(kw.sum(1, keepdims=True), 1)
        r0 = batch.values - mu
        extra = None
        if channels is not None:
            idx = batch.lo[:, None] + np.arange(n)[None, :]
            extra = np.stack([c[idx] for c in np.atleast_2d(channels)], axis=1)
            extra = extra - extra.mean(axis=2, keepdims=True)
        k_max = min(cfg.max_components, m_lag)
        art = artificial_gap(batch)
        _, errs = kondrashov_ghil(r0, kw & ~art, m_lag, k_max, cfg.inner_iterations, cfg.tol,
                                  extra, art)
        best = np.where(art.any(1), errs.argmin(1) + 1, 1)
        outs, _ = kondrashov_ghil(r0, kw, m_lag, int(best.max()), cfg.inner_iterations, cfg.tol,
                                  extra)
        chosen = np.stack([outs[k - 1][b] for b, k in enumerate(best)])
        write_back(est, batch, chosen + mu)
    return est
