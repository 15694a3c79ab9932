"""Factorial HMM disaggregation (seed 002 §4.3.5, eqs. 8-10), learned from sub-metered data.

One chain per appliance plus an "other" chain for everything not modelled (and noise). Each
chain's states are found by 1-D k-means on its sub-metered power; its transition matrix is counted
from the state sequence (Laplace-smoothed); chains evolve independently (eq. 10). The aggregate
emission given the joint state is Gaussian with the sum of the state means and the sum of the state
variances. Inference is exact Viterbi on the product space: a dense (S x S) step while the space is
small, and a factorised max-product (one chain at a time, exact because the transition log-prob
is a sum over chains) for larger spaces, e.g. 10 two-state appliances and a 3-state other chain
(3072 joint states).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.signal.errors import NilmError, SignalInputError

OTHER = "other"


@dataclass(frozen=True)
class FHMMConfig:
    states: int = 2  # per appliance (2 = Type-1 ON/OFF, 3 for multi-state)
    states_by_appliance: dict[str, int] = field(default_factory=dict)
    other_states: int = 3
    on_threshold_w: float = 10.0  # a state with mean above this is ON
    dense_limit: int = 512  # joint states up to which the dense Viterbi step is used
    min_var_w2: float = 25.0


def kmeans_1d(x: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Sorted 1-D k-means centres (quantile initialisation, deterministic)."""
    x = np.asarray(x, float)
    centres = np.quantile(x, (np.arange(k) + 0.5) / k) if k > 1 else np.array([x.mean()])
    if k > 1:
        centres[0] = min(centres[0], x.min())  # OFF/low state anchored at the minimum
    for _ in range(iters):
        lab = np.argmin(np.abs(x[:, None] - centres[None, :]), axis=1)
        new = np.array([x[lab == j].mean() if np.any(lab == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(np.unique(centres))


@dataclass
class Chain:
    name: str
    means_w: np.ndarray  # [K]
    vars_w2: np.ndarray  # [K]
    log_trans: np.ndarray  # [K, K], rows = from
    log_start: np.ndarray  # [K]


def fit_chain(name: str, power_w: np.ndarray, k: int, min_var: float) -> Chain:
    centres = kmeans_1d(power_w, k)
    k = centres.size
    lab = np.argmin(np.abs(power_w[:, None] - centres[None, :]), axis=1)
    var = np.array([max(power_w[lab == j].var() if np.sum(lab == j) > 1 else min_var, min_var)
                    for j in range(k)])
    counts = np.ones((k, k)) + np.histogram2d(lab[:-1], lab[1:], bins=(k, k),
                                              range=((0, k), (0, k)))[0]
    trans = counts / counts.sum(1, keepdims=True)
    start = np.bincount(lab, minlength=k) + 1.0
    return Chain(name, centres, var, np.log(trans), np.log(start / start.sum()))


class FHMM:
    """``FHMM(cfg).fit(appliance_power_w, aggregate_w).predict(aggregate_w)``."""

    def __init__(self, cfg: FHMMConfig = FHMMConfig()):
        self.cfg = cfg
        self.chains: list[Chain] = []

    @property
    def appliances(self) -> list[str]:
        return [c.name for c in self.chains if c.name != OTHER]

    def fit(self, appliance_power_w: dict[str, np.ndarray], aggregate_w: np.ndarray) -> FHMM:
        agg = np.asarray(aggregate_w, float)
        if not appliance_power_w:
            raise SignalInputError("need at least one sub-metered appliance")
        rest = agg.copy()
        self.chains = []
        for name, p in appliance_power_w.items():
            p = np.asarray(p, float)
            if p.shape != agg.shape:
                raise SignalInputError(f"{name}: length {p.shape} != aggregate {agg.shape}")
            k = self.cfg.states_by_appliance.get(name, self.cfg.states)
            self.chains.append(fit_chain(name, p, k, self.cfg.min_var_w2))
            rest -= p
        self.chains.append(fit_chain(OTHER, rest, self.cfg.other_states, self.cfg.min_var_w2))
        return self

    def _joint(self) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
        shape = tuple(c.means_w.size for c in self.chains)
        mean, var = np.zeros(shape), np.zeros(shape)
        for i, c in enumerate(self.chains):
            bshape = [1] * len(shape)
            bshape[i] = -1
            mean = mean + c.means_w.reshape(bshape)
            var = var + c.vars_w2.reshape(bshape)
        return shape, mean.ravel(), var.ravel()

    def viterbi(self, aggregate_w: np.ndarray) -> np.ndarray:
        """Most likely joint state per sample, as chain state indices [T, n_chains]."""
        if not self.chains:
            raise NilmError("FHMM.predict before fit")
        y = np.asarray(aggregate_w, float)
        if y.ndim != 1 or not np.isfinite(y).all():
            raise SignalInputError("aggregate_w must be a finite 1-D array (fill gaps first)")
        shape, mean, var = self._joint()
        s = int(np.prod(shape))
        if s > 32767:
            raise NilmError(f"{s} joint states is too many for exact Viterbi; model fewer appliances")
        log_norm = -0.5 * np.log(2 * np.pi * var)

        def emit(t0: int, t1: int) -> np.ndarray:
            return log_norm - 0.5 * (y[t0:t1, None] - mean) ** 2 / var

        log_start = np.zeros(shape)
        for i, c in enumerate(self.chains):
            bshape = [1] * len(shape)
            bshape[i] = -1
            log_start = log_start + c.log_start.reshape(bshape)
        step = self._dense_step(shape) if s <= self.cfg.dense_limit else self._factored_step(shape)
        bp = np.empty((y.size, s), dtype=np.int16)
        delta = log_start.ravel() + emit(0, 1)[0]
        chunk = 512
        for t0 in range(1, y.size, chunk):
            em = emit(t0, min(t0 + chunk, y.size))
            for j in range(em.shape[0]):
                delta, bp[t0 + j] = step(delta)
                delta = delta + em[j]
                delta -= delta.max()
        path = np.empty(y.size, dtype=np.int64)
        path[-1] = int(np.argmax(delta))
        for t in range(y.size - 1, 0, -1):
            path[t - 1] = bp[t, path[t]]
        return np.stack(np.unravel_index(path, shape), axis=1)

    def _dense_step(self, shape):
        log_a = np.zeros((1, 1))
        for c in self.chains:
            log_a = (log_a[:, None, :, None] + c.log_trans[None, :, None, :]).reshape(
                log_a.shape[0] * c.log_trans.shape[0], -1)

        def step(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            scores = delta[:, None] + log_a
            arg = scores.argmax(0)
            return scores[arg, np.arange(arg.size)], arg

        return step

    def _factored_step(self, shape):
        n = len(shape)
        trans = []
        for i, c in enumerate(self.chains):
            # broadcast [.., prev_i at axis i, cur_i at axis i+1, ..] on an (n+1)-d array
            bshape = [1] * (n + 1)
            bshape[i], bshape[i + 1] = c.log_trans.shape
            trans.append(c.log_trans.reshape(bshape))
        grids = np.indices(shape).reshape(n, -1)  # the current joint states

        def step(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            m = delta.reshape(shape)
            args = []
            for i in range(n):  # axes: cur_0..cur_{i-1}, prev_i..prev_{n-1}
                scores = np.expand_dims(m, i + 1) + trans[i]
                args.append(scores.argmax(axis=i))
                m = scores.max(axis=i)
            prev = np.empty_like(grids)
            for i in range(n - 1, -1, -1):  # args[i] axes: cur_0..cur_i, prev_{i+1}..
                index = tuple(grids[:i + 1]) + tuple(prev[i + 1:])
                prev[i] = args[i][index]
            return m.ravel(), np.ravel_multi_index(tuple(prev), shape)

        return step

    def predict(self, aggregate_w: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Per appliance: ``power_w`` (state mean) and ``on`` (state mean above threshold)."""
        states = self.viterbi(aggregate_w)
        out = {}
        for i, c in enumerate(self.chains):
            if c.name == OTHER:
                continue
            p = c.means_w[states[:, i]]
            out[c.name] = {"power_w": p, "on": p > self.cfg.on_threshold_w}
        return out
