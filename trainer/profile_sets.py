"""Training and validation sets from meters' own days, split by time, at any profile resolution.

A user's data is a few meters (often one) and weeks to a year of local days
(``edge.data.profiles.MeterProfiles``, L = 96 / 48 / 24 points at 15 min / 30 min / hourly),
split by time (``edge.data.userdata.time_split``: train | validation | test = the latest days).
Windows are one day long (L points, the model's input) and slide over each meter's continuous
series every ``stride`` points, so 60 days of one meter give ~1,400 training windows at 24 a day
rather than 60; a window never reaches into another part of the split and never holds a missing
point (imputation hides points itself). A context model's history days (``history_w`` [N, D, L],
``history_mask`` [N, D], ``edge.data.userdata.history_context``) are the days before the window
and may reach back into earlier parts: that is the past, which the model has at run time too.

Sets (``trainer.data.ArrayDataset`` with the keys of ``trainer.data.TASK_KEYS``; ``meta`` holds
``resolution_s``, and for forecast the covariate spec):

- pretrain: ``load_w`` [N, L];
- imputation: half the windows lose random points, half blocks of 4-12 samples, at 10-50 %;
- anomaly: seed 000's scaling and ramping attacks (lambda 0.1-0.5, 2-12 hours at any
  resolution, ``edge.data.userdata.attack_config``) on half of the unlabelled windows; windows
  touching the user's labelled intervals (``edge.data.labels``) are positives. ``AttackDraw``
  (the simulated fleet's route, ``export.pipeline``) draws them wider: lambda 0.1-0.8 either
  sign, inside the window, ongoing at its end (what the agent's rolling window sees while an
  attack lasts) or over all of it, and a quarter of them are gateway faults (spikes, a stuck
  value, a zero run, sign errors);
- forecast: input = the L points before the origin, day-ahead = the next L, hour-ahead = the
  next hour (3600 / resolution_s points); covariates (``edge.features.CovariateSpec``) of the
  local day the horizon starts in, with the horizon's temperatures where the data has them and
  withheld in ``WEATHER_DROPOUT`` of the windows, so the model also runs without a weather feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.data.profiles import MeterProfiles
from edge.data.userdata import TimeSplit, attack_config, block_mask, history_context, point_mask
from edge.errors import DataError
from edge.features import CovariateSpec
from edge.sim import inject
from edge.sim.inject import Injected, random_attack
from trainer.data import ArrayDataset

WEATHER_DROPOUT = 0.2  # share of forecast windows trained without their temperature
IMPUTATION_RATE = (0.1, 0.5)


@dataclass
class MeterPart:
    """One meter's profiles and the day range [start, stop) of one part of its split."""

    prof: MeterProfiles
    start: int
    stop: int
    labels: np.ndarray | None = None  # uint8 [D, L]: 1 = a labelled anomalous slot

    @property
    def L(self) -> int:
        return self.prof.steps_per_day

    def series(self) -> tuple[np.ndarray, np.ndarray]:
        """(load [D*L] W with NaN where missing, labelled [D*L]) over the meter's whole series."""
        x = self.prof.load_w.reshape(-1).astype(np.float32)
        lab = self.labels.reshape(-1) if self.labels is not None else np.zeros(len(x), np.uint8)
        return x, lab

    def starts(self, span: int, stride: int) -> np.ndarray:
        """Absolute starts of windows of ``span`` points inside the part's days, every ``stride``
        points, without a missing point."""
        x, _ = self.series()
        lo, hi = self.start * self.L, self.stop * self.L
        return lo + window_starts(x[lo:hi], span, stride)


def meter_parts(profiles: Sequence[MeterProfiles], splits: Sequence[TimeSplit], part: str,
                labels: Sequence[np.ndarray | None] | None = None) -> list[MeterPart]:
    """The ``part`` ("train", "val" or "test") of every meter."""
    labels = labels if labels is not None else [None] * len(profiles)
    return [MeterPart(p, *getattr(s, part), lab) for p, s, lab in zip(profiles, splits, labels, strict=True)]


def window_starts(x: np.ndarray, length: int, stride: int) -> np.ndarray:
    """Start indices of windows of ``length`` without a missing point, every ``stride`` steps."""
    if len(x) < length:
        return np.zeros(0, np.int64)
    bad = np.concatenate([[0], np.cumsum(~np.isfinite(x))])
    starts = np.arange(0, len(x) - length + 1, stride)
    return starts[(bad[starts + length] - bad[starts]) == 0]


def _resolution(parts: Sequence[MeterPart]) -> int:
    res = {p.prof.resolution_s for p in parts}
    if len(res) != 1:
        raise DataError(f"meters at different resolutions {sorted(res)} cannot share a model")
    return res.pop()


def day_windows(parts: Sequence[MeterPart], stride: int, history_days: int = 0) -> dict[str, np.ndarray]:
    """Day-long windows of every part: ``load_w`` [N, L], ``labelled`` [N, L] and, for a context
    model (``history_days`` D > 0), ``history_w`` [N, D, L] and ``history_mask`` [N, D]."""
    out: dict[str, list] = {}
    for part in parts:
        x, lab = part.series()
        s = part.starts(part.L, stride)
        idx = s[:, None] + np.arange(part.L)[None, :]
        arrays = {"load_w": x[idx], "labelled": lab[idx]}
        if history_days > 0:
            arrays["history_w"], arrays["history_mask"] = history_context(x, s, part.L, history_days)
        for k, v in arrays.items():
            out.setdefault(k, []).append(v)
    if not out or sum(len(v) for v in out["load_w"]) == 0:
        raise DataError("no complete day-long window in these days")
    return {k: np.concatenate(v) for k, v in out.items()}


def _dataset(arrays: dict[str, np.ndarray], parts: Sequence[MeterPart], **meta) -> ArrayDataset:
    return ArrayDataset(arrays, {"resolution_s": _resolution(parts), **meta})


def pretrain_set(parts: Sequence[MeterPart], stride: int, history_days: int = 0) -> ArrayDataset:
    w = day_windows(parts, stride, history_days)
    w.pop("labelled")
    return _dataset(w, parts)


def imputation_set(parts: Sequence[MeterPart], stride: int, seed: int, history_days: int = 0,
                   rate: tuple[float, float] = IMPUTATION_RATE) -> ArrayDataset:
    """Even windows lose random points, odd ones blocks of 4-12 samples, at ``rate`` (10-50 %)."""
    w = day_windows(parts, stride, history_days)
    target = w.pop("load_w")
    w.pop("labelled")
    rng = np.random.default_rng(seed)
    n, L = target.shape
    obs = np.ones((n, L), np.float32)
    for i in range(n):
        r = float(rng.uniform(*rate))
        obs[i, point_mask(L, r, rng) if i % 2 == 0 else block_mask(L, r, rng)] = 0
    return _dataset({**w, "load_w": target * obs, "observed": obs, "target_w": target}, parts)


ATTACK_COVERAGE = ("inside", "ongoing", "whole")


@dataclass(frozen=True)
class AttackDraw:
    """How training attacks are drawn for a day window of L points (Cui et al.'s templates,
    ``edge.sim.inject``): a kind of ``kinds`` and |lambda| uniform in ``lam`` with either sign
    (p' = p (1 + lambda): over- and under-reporting), then where it lies, with the probabilities
    ``coverage`` of ``ATTACK_COVERAGE``:

    - inside: 2-12 hours anywhere in the window (seed 000's attacks);
    - ongoing: from 2 hours up to the whole window, ending on its last point: the agent scores
      the window ending now, so an attack in progress is always at the window's end;
    - whole: every point of the window (an attack that has lasted a day or more).

    Ramps reach 1 + lambda: ramp_i at the last attacked point, ramp_ii (up, then down) at the
    middle of the span (between two points of an even span, a little below).

    A share ``fault_share`` of the draws is a gateway fault of ``fault_kinds`` instead
    (``edge.sim.inject``): 1-3 spikes (5 x the window's std, >= 1 kW), a stuck value or a zero run
    over a span drawn as above, 1-4 sign errors (-|p|); only the points a fault changed are labelled.
    """

    kinds: tuple[str, ...] = ("scaling", "ramp_i", "ramp_ii")
    lam: tuple[float, float] = (0.1, 0.8)
    coverage: tuple[float, float, float] = (0.5, 0.3, 0.2)
    hours: tuple[float, float] = field(default=(2.0, 12.0))  # length of an "inside" attack
    fault_kinds: tuple[str, ...] = ("spike", "stuck", "zero_run", "sign_error")
    fault_share: float = 0.25

    def span(self, L: int, rng: np.random.Generator) -> tuple[int, int]:
        """(t_s, t_e) inclusive of one attack in a window of L points (L points = one day)."""
        per_hour = L / 24.0
        shortest = max(2, int(round(self.hours[0] * per_hour)))
        where = ATTACK_COVERAGE[int(rng.choice(len(ATTACK_COVERAGE), p=np.asarray(self.coverage) / sum(self.coverage)))]
        if where == "whole":
            return 0, L - 1
        if where == "ongoing":
            return L - int(rng.integers(shortest, L + 1)), L - 1
        n = int(rng.integers(shortest, max(shortest, int(round(self.hours[1] * per_hour))) + 1))
        t_s = int(rng.integers(0, L - n + 1))
        return t_s, t_s + n - 1

    def attack(self, x: np.ndarray, rng: np.random.Generator) -> Injected:
        """One attack (or, at ``fault_share``, one fault) on the window ``x`` [L] (W)."""
        if self.fault_kinds and rng.random() < self.fault_share:
            return self.fault(x, rng)
        t_s, t_e = self.span(len(x), rng)
        kind = str(rng.choice(self.kinds))
        lam = float(rng.uniform(*self.lam)) * (-1.0 if rng.random() < 0.5 else 1.0)
        if kind == "scaling":
            return inject.scaling(x, t_s, t_e, lam)
        if kind == "ramp_i":
            return inject.ramp_i(x, t_s, t_e, lam / max(t_e - t_s, 1))
        if kind == "ramp_ii":
            return inject.ramp_ii(x, t_s, t_e, peak=lam)
        raise DataError(f"AttackDraw kind must be scaling, ramp_i or ramp_ii, got {kind!r}")

    def fault(self, x: np.ndarray, rng: np.random.Generator) -> Injected:
        """One fault of ``fault_kinds`` on the window ``x`` [L] (W); ``point_mask`` marks the
        points it changed."""
        kind = str(rng.choice(self.fault_kinds))
        if kind == "spike":
            inj = inject.spikes(x, rng, int(rng.integers(1, 4)))
        elif kind == "sign_error":
            inj = inject.negative(x, rng, int(rng.integers(1, 5)))
        elif kind in ("stuck", "zero_run"):
            t_s, t_e = self.span(len(x), rng)
            inj = inject.stuck(x, t_s, t_e) if kind == "stuck" else inject.scaling(x, t_s, t_e, -1.0)
        else:
            raise DataError(f"AttackDraw fault must be spike, stuck, zero_run or sign_error, got {kind!r}")
        inj.point_mask = inj.point_mask & (inj.values != np.asarray(x, np.float64))
        return inj


def anomaly_set(parts: Sequence[MeterPart], stride: int, seed: int, history_days: int = 0,
                attack_fraction: float = 0.5, draw: AttackDraw | None = None) -> ArrayDataset:
    """Attacks on ``attack_fraction`` of the unlabelled windows; windows with labelled slots are
    positives as they are. The history stays clean (an attack starts today). ``draw``: how the
    attacks are drawn (default: ``edge.data.userdata.attack_config``, 2-12 hours inside the
    window at lambda 0.1-0.5)."""

    w = day_windows(parts, stride, history_days)
    rng = np.random.default_rng(seed)
    cfg = attack_config(w["load_w"].shape[1])
    x = w.pop("load_w").astype(np.float64)
    points = w.pop("labelled").astype(np.float32)
    for i in np.flatnonzero(points.sum(axis=1) == 0):
        if rng.random() < attack_fraction:
            inj = draw.attack(x[i], rng) if draw is not None else random_attack(x[i], rng, cfg)
            x[i], points[i] = inj.values, inj.point_mask
    return _dataset({**w, "load_w": x.astype(np.float32), "observed": np.ones_like(points),
                     "point_label": points, "window_label": (points.sum(axis=1) > 0).astype(np.float32)}, parts)


def forecast_set(parts: Sequence[MeterPart], spec: CovariateSpec, stride: int, seed: int, history_days: int = 0,
                 weather_dropout: float = WEATHER_DROPOUT) -> ArrayDataset:
    """Origins every ``stride`` points with two complete days around them (see the module
    docstring); ``meta["covariates"]`` is ``spec`` (its ``weather`` says whether temperatures
    were used)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {}
    for part in parts:
        L, hour = part.L, max(1, 3600 // part.prof.resolution_s)
        x, _ = part.series()
        temp = part.prof.temperature_c.reshape(-1)
        starts = part.starts(2 * L, stride)
        for s in starts:
            o = s + L
            t = temp[o:o + L]
            t = t if np.isfinite(t).any() and rng.random() >= weather_dropout else None
            row = {"load_w": x[s:o], "covariates": spec.vector(part.prof.dates[o // L], t),
                   "day_ahead_w": x[o:o + L], "hour_ahead_w": x[o:o + hour]}
            for k, v in row.items():
                cols.setdefault(k, []).append(v)
        if len(starts) and history_days > 0:
            hist, mask = history_context(x, starts, L, history_days)
            cols.setdefault("history_w", []).append(hist)
            cols.setdefault("history_mask", []).append(mask)
    if not cols:
        raise DataError("no two consecutive complete days for a forecast window")
    out = {k: (np.concatenate(v) if k.startswith("history") else np.asarray(v, np.float32)) for k, v in cols.items()}
    out["observed"] = np.ones_like(out["load_w"])
    return _dataset(out, parts, covariates=spec.to_dict())


def task_set(task: str, parts: Sequence[MeterPart], spec: CovariateSpec, stride: int, seed: int,
             history_days: int = 0, draw: AttackDraw | None = None) -> ArrayDataset:
    """The set of ``task`` ("pretrain" or a profile task) from ``parts``; ``draw``: the anomaly
    set's attacks (``anomaly_set``)."""
    if task == "pretrain":
        return pretrain_set(parts, stride, history_days)
    if task == "imputation":
        return imputation_set(parts, stride, seed, history_days)
    if task == "anomaly":
        return anomaly_set(parts, stride, seed, history_days, draw=draw)
    if task == "forecast":
        return forecast_set(parts, spec, stride, seed, history_days)
    raise DataError(f"no profile set for task {task!r} (NILM trains on high-rate appliance windows)")


def stride_for(n_days: int, steps_per_day: int, windows_per_day: int | None = None,
               max_windows: int = 100_000) -> int:
    """Points between window starts: ``windows_per_day`` windows a day when given, else as many
    as keep ``n_days`` under ``max_windows`` windows (at most one per point, at least one a day)."""
    per_day = windows_per_day or int(np.clip(max_windows // max(n_days, 1), 1, steps_per_day))
    return max(1, steps_per_day // max(1, per_day))
