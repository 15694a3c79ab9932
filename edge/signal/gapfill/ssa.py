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
from edge.signal.gapfill.batching import artificial_gap, linear_rows, window_batches, write_back


@dataclass(frozen=True)
class SSAConfig:
    knowledge: int = 48  # samples either side of a gap
    embedding: int = 12  # minimum lag window M (samples); at least 2x the gap, at most N/3
    max_embedding: int = 48
    max_components: int = 4
    inner_iterations: int = 25
    tol: float = 1e-3  # relative change that ends the inner loop


def _hankel_index(n: int, m_lag: int) -> np.ndarray:
    """Series index of every trajectory-matrix cell, flattened ([K*M])."""
    rows = n - m_lag + 1
    return (np.arange(rows)[:, None] + np.arange(m_lag)[None, :]).ravel()


def _trajectory(r: np.ndarray, m_lag: int, extra: np.ndarray | None) -> np.ndarray:
    """[B, K, D] trajectory matrices; extra channels [B, C, N] are stacked beside channel 0."""
    traj = sliding_window_view(r, m_lag, axis=1)  # [B, K, M]
    if extra is None:
        return traj
    b = r.shape[0]
    traj_x = sliding_window_view(extra, m_lag, axis=2).transpose(0, 2, 1, 3)
    return np.concatenate([traj, traj_x.reshape(b, traj.shape[1], -1)], axis=2)


def _leading_subspace(cov: np.ndarray, u: np.ndarray | None, k: int) -> np.ndarray:
    """Leading k eigenvectors of cov [B, D, D], sorted by eigenvalue (largest first).

    A full ``eigh`` the first time; afterwards, since the covariance changes little from one
    K-G iteration to the next, two warm-started subspace (block power) steps with a
    Rayleigh-Ritz rotation: O(D^2 k) instead of O(D^3) per iteration.
    """
    if u is None:
        return np.linalg.eigh(cov)[1][:, :, ::-1][:, :, :k]
    for _ in range(2):
        u, _ = np.linalg.qr(np.matmul(cov, u))
    small = np.matmul(u.transpose(0, 2, 1), np.matmul(cov, u))
    _, w = np.linalg.eigh(small)
    return np.matmul(u, w[:, :, ::-1])


def _diagonal_average(rec: np.ndarray, n: int) -> np.ndarray:
    """Hankel (anti-diagonal) averaging of [B, K, M] back to series [B, N]."""
    b, rows, m_lag = rec.shape
    idx = (np.arange(rows)[:, None] + np.arange(m_lag)[None, :]).ravel()
    flat = (np.arange(b)[:, None] * n + idx[None, :]).ravel()
    sums = np.bincount(flat, weights=rec.ravel(), minlength=b * n).reshape(b, n)
    return sums / np.bincount(idx, minlength=n)


def kondrashov_ghil(r0: np.ndarray, known: np.ndarray, m_lag: int, k_max: int, iters: int,
                    tol: float, extra: np.ndarray | None = None) -> list[np.ndarray]:
    """Run the K-G loops; return the estimate for every k = 1..k_max.

    Kondrashov-Ghil start the missing values at the mean; we start them on the linear path
    between the known neighbours (``r0`` holds it), which has the same fixed point and needs far
    fewer iterations to get there on long gaps.
    """
    r = r0.copy()
    n = r.shape[1]
    outs = []
    u = None
    for k in range(1, k_max + 1):
        for _ in range(iters):
            traj = _trajectory(r, m_lag, extra)
            u = _leading_subspace(np.matmul(traj.transpose(0, 2, 1), traj), u, k_max)
            uk = u[:, :, :k]
            rec = np.matmul(np.matmul(traj, uk), uk[:, :m_lag, :].transpose(0, 2, 1))
            new = np.where(known, r0, _diagonal_average(rec, n))
            change = np.abs(new - r).max() / (np.abs(r0).max() + 1e-9)
            r = new
            if change < tol:
                break
        outs.append(r.copy())
    return outs


def fill_gaps(x: np.ndarray, m: np.ndarray, t: np.ndarray, gaps: list[Gap],
              cfg: SSAConfig = SSAConfig(), channels: np.ndarray | None = None) -> np.ndarray:
    """``channels`` [C, len(x)]: optional fully known extra series (multichannel SSA)."""
    est = x.copy()
    est[m] = np.interp(t[m], t[~m], x[~m])
    for batch in window_batches(x, m, t, gaps, cfg.knowledge):
        n = batch.values.shape[1]
        # the lag window must span the gap or the iteration cannot bridge it (slow, biased)
        longest = max(g.length for g in batch.gaps)
        m_lag = min(max(cfg.embedding, 2 * longest), n // 3, cfg.max_embedding)
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
        r_cv = linear_rows(r0, kw & ~art)  # the artificial gap must not start from its truth
        outs_cv = kondrashov_ghil(r_cv, kw & ~art, m_lag, k_max, cfg.inner_iterations, cfg.tol,
                                  extra)
        errs = np.stack([((o - r0) ** 2 * art).sum(1) for o in outs_cv], axis=1)  # [B, k]
        best = np.where(art.any(1), errs.argmin(1) + 1, 1)
        outs = kondrashov_ghil(r0, kw, m_lag, int(best.max()), cfg.inner_iterations, cfg.tol,
                                  extra)
        chosen = np.stack([outs[k - 1][b] for b, k in enumerate(best)])
        write_back(est, batch, chosen + mu)
    return est
