"""Wiener filling: forward and backward linear (AR) predictors combined across the gap.

The Wiener predictor assumes the next sample is a linear combination of the previous ``order``
samples (seed 002 §4.2.2). The coefficients are fitted by least squares on the fully known
stretches of the knowledge window (covariance method), after removing the window mean. Under the
wide-sense-stationarity the method assumes, the backward predictor of the time-reversed signal
has the same coefficients, so one fit serves both directions. The forward prediction runs from the
samples before the gap, the backward one from the samples after it, and the two are cross-faded
with weights falling linearly across the gap, so each side dominates near its own edge (the
prediction error grows with distance from the known samples, as the seed notes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edge.signal.gapfill.base import Gap, window


@dataclass(frozen=True)
class WienerConfig:
    order: int = 6  # AR order (samples)
    knowledge: int = 96  # samples either side used to fit and predict
    ridge: float = 1e-6  # relative Tikhonov term, keeps the normal equations well posed


def fit_ar(x: np.ndarray, known: np.ndarray, order: int, ridge: float) -> np.ndarray | None:
    """Coefficients ``a`` with ``x[n] ~ a @ x[n-order:n]`` from rows where all samples are known."""
    if x.size <= order + 1:
        return None
    rows = sliding_window_view(x, order + 1)
    ok = sliding_window_view(known, order + 1).all(axis=1)
    if ok.sum() < 2 * order:
        return None
    a_mat, b = rows[ok, :order], rows[ok, order]
    gram = a_mat.T @ a_mat
    gram += ridge * (np.trace(gram) / order + 1e-12) * np.eye(order)
    try:
        return np.linalg.solve(gram, a_mat.T @ b)
    except np.linalg.LinAlgError:
        return None


def stabilise(coef: np.ndarray, max_radius: float = 0.98) -> np.ndarray:
    """Pull the predictor's poles inside ``max_radius`` (coefficient k scaled by g^k): an
    unstable least-squares fit would otherwise grow without bound across a long gap."""
    # x[n] = sum_j coef[j] x[n-order+j]  ->  characteristic polynomial z^p - a_1 z^(p-1) - ...
    a = coef[::-1]  # a_1 .. a_p (lag 1 first)
    radius = np.abs(np.roots(np.concatenate(([1.0], -a)))).max() if a.size else 0.0
    if radius < max_radius:
        return coef
    g = max_radius / radius
    return (a * g ** np.arange(1, a.size + 1))[::-1]


def _predict(history: np.ndarray, coef: np.ndarray, steps: int) -> np.ndarray:
    buf = list(history[-coef.size:])
    out = np.empty(steps)
    for i in range(steps):
        out[i] = float(np.dot(coef, buf[-coef.size:]))
        buf.append(out[i])
    # an unstable fitted model must not explode across a long gap
    lim = 4.0 * (np.abs(history).max() + 1e-9)
    return np.clip(out, -lim, lim)


def fill_gaps(x: np.ndarray, m: np.ndarray, t: np.ndarray, gaps: list[Gap],
              cfg: WienerConfig = WienerConfig()) -> np.ndarray:
    est = np.interp(t, t[~m], x[~m])  # linear fallback everywhere
    for g in gaps:
        lo, hi = window(g, x.size, cfg.knowledge)
        xw, kw = x[lo:hi], ~m[lo:hi]
        mu = xw[kw].mean()
        r = np.where(kw, xw - mu, 0.0)
        before, after = min(g.known_before, g.start - lo), min(g.known_after, hi - g.stop)
        order = min(cfg.order, max(before, after) // 2)
        coef = fit_ar(r, kw, order, cfg.ridge) if order >= 1 else None
        if coef is None:
            continue
        coef = stabilise(coef)
        n, s, e = g.length, g.start - lo, g.stop - lo
        fwd = _predict(r[s - before:s], coef, n) if before >= coef.size else None
        bwd = _predict(r[e:e + after][::-1], coef, n)[::-1] if after >= coef.size else None
        if fwd is not None and bwd is not None:
            w = np.arange(n, 0, -1) / (n + 1.0)
            pred = w * fwd + (1 - w) * bwd
        elif fwd is not None or bwd is not None:
            one = fwd if fwd is not None else bwd
            # only one side usable: still pin the far end to the linear path
            lin = est[g.start:g.stop] - mu
            w = np.arange(n, 0, -1) / (n + 1.0)
            pred = w * one + (1 - w) * lin if fwd is not None else (1 - w) * one + w * lin
        else:
            continue
        est[g.start:g.stop] = pred + mu
    return est
