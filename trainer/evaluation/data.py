"""The evaluation's data: one simulated fleet of daily profiles and each task's windows.

Built on the project's data preparation: daily profiles and NILM windows from
``trainer.data`` (``profiles_from_traces``, ``high_rate_windows``), households split by
``edge.data.split``, missing masks and attacks from ``edge.sim.inject``. What is specific to the
evaluation is how windows are drawn (a week of history before each forecast origin and each
anomaly day, fixed random test subsets) and the batch types the methods take
(``trainer.baselines``: ``ForecastBatch``, ``ImputationBatch``, ``AnomalyBatch``, ``NILMBatch``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from edge.data.split import households_by_split
from edge.data.userdata import history_context
from edge.features import forecast_covariates
from edge.sim import inject, simulate_fleet
from trainer.baselines import AnomalyBatch, ForecastBatch, ImputationBatch, NILMBatch
from trainer.data import ArrayDataset, high_rate_windows, profiles_from_traces
from trainer.evaluation.config import (
    ATTACK_KINDS,
    HISTORY_DAYS,
    STEPS_PER_DAY,
    EvalConfig,
    EvaluationError,
)

SLOT_S = 86_400 // STEPS_PER_DAY  # 1800 s


@dataclass
class FleetProfiles:
    """Daily 30-min profiles of a fleet, aligned on (local) midnights."""
    power_w: np.ndarray  # [H, D, 48] float64
    temperature_c: np.ndarray  # [H, D, 48] float64
    is_holiday: np.ndarray  # [H, D] bool
    day_start_s: np.ndarray  # [H, D] int64, midnight of each day

    @property
    def n_households(self) -> int:
        return self.power_w.shape[0]

    @property
    def n_days(self) -> int:
        return self.power_w.shape[1]

    def households(self, idx: np.ndarray) -> FleetProfiles:
        return FleetProfiles(self.power_w[idx], self.temperature_c[idx], self.is_holiday[idx],
                             self.day_start_s[idx])

    @classmethod
    def from_dataset(cls, ds: ArrayDataset, max_days: int | None = None) -> FleetProfiles:
        """Stack the daily profiles of ``trainer.data.profiles_from_traces`` (or ``_shards``) per
        household: the first ``max_days`` days, cut to the shortest household. ``day_start_s`` is
        the local midnight counted as if it were UTC, so calendar features follow the household's
        clock."""
        a = ds.arrays
        rows = [np.flatnonzero(a["household"] == h) for h in np.unique(a["household"])]
        rows = [r[np.argsort(a["day"][r], kind="stable")][:max_days] for r in rows]
        n_days = min(len(r) for r in rows)
        if n_days == 0:
            raise EvaluationError("a household has no complete day")
        idx = np.stack([r[:n_days] for r in rows])
        return cls(np.asarray(a["load_w"][idx], float), np.asarray(a["temperature_c"][idx], float),
                   np.asarray(a["is_holiday"][idx], bool), a["day"][idx].astype(np.int64) * 86_400)


def simulate_profiles(n_households: int, days: int, seed: int, progress: bool = True) -> FleetProfiles:
    """Simulate a fleet at 30 min with ``edge.sim`` (one day more than asked, so ``days`` complete
    local days remain) and stack its daily profiles."""
    traces = simulate_fleet(n_households=n_households, days=days + 1, resolution_s=SLOT_S, seed=seed)
    return FleetProfiles.from_dataset(profiles_from_traces(progress_bar(traces, progress, "simulate fleet",
                                                                        total=n_households)), days)


def split_households(n_households: int, split: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Disjoint train / val / test household indices (``edge.data.split``), each non-empty."""
    if n_households < 3:
        raise EvaluationError(f"need at least 3 households to split, got {n_households}")
    parts = households_by_split(range(n_households), dict(zip(("train", "val", "test"), split, strict=True)),
                                seed)
    empty = [k for k, v in parts.items() if not v]
    if empty:
        raise EvaluationError(f"split {split} of {n_households} households leaves {empty} empty")
    return {k: np.asarray(v, dtype=np.int64) for k, v in parts.items()}


def progress_bar(iterable: Iterable, enabled: bool, desc: str, total: int | None = None):
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=False)


def cap(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of a fixed random subset of at most ``limit`` of ``n`` samples (sorted)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def window_context(power_w: np.ndarray, rows: np.ndarray, starts: np.ndarray, history_days: int
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The ``history_days`` days before day-long windows, as a context model takes them: the
    window of row i is ``power_w[rows[i], starts[i] : starts[i] + 48]`` of the households'
    continuous series ``power_w`` [H, T] (W). Returns ``history_w`` [N, D, 48] (oldest day first)
    and ``history_mask`` [N, D] from ``edge.data.userdata.history_context``, the one context code
    of the trainer and the gateway (a day before the series starts is masked); (None, None) for
    D = 0."""
    if history_days <= 0:
        return None, None
    hist = np.zeros((len(rows), history_days, STEPS_PER_DAY), np.float32)
    mask = np.zeros((len(rows), history_days), np.float32)
    for h in np.unique(rows):
        sel = rows == h
        hist[sel], mask[sel] = history_context(power_w[h], starts[sel], STEPS_PER_DAY, history_days)
    return hist, mask


def day_contexts(fleet: FleetProfiles, households: np.ndarray, history_days: int) -> dict[str, np.ndarray]:
    """Every day of the households as a context model's pre-training window: ``load_w`` [N, 48]
    with its ``history_w`` [N, D, 48] and ``history_mask`` [N, D] (``window_context``)."""
    sub = fleet.households(households)
    power = sub.power_w.reshape(sub.n_households, -1)
    rows = np.repeat(np.arange(sub.n_households), sub.n_days)
    starts = np.tile(np.arange(sub.n_days) * STEPS_PER_DAY, sub.n_households)
    hist, mask = window_context(power, rows, starts, history_days)
    return {"load_w": sub.power_w.reshape(-1, STEPS_PER_DAY).astype(np.float32), "history_w": hist,
            "history_mask": mask}


def _windows(series: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """series [H, T], starts [N, 2] of (household, step) -> [N, length]."""
    return series[starts[:, :1], starts[:, 1:] + np.arange(length)[None, :]]


# --- forecasting -------------------------------------------------------------------------------


def forecast_data(fleet: FleetProfiles, households: np.ndarray, cfg: EvalConfig, limit: int | None,
                  rng: np.random.Generator) -> ForecastBatch:
    """Forecast windows of the given households: 7 days of history before each origin (every
    ``origin_stride_steps``), the next 48 steps as target, and the covariates of the 24 h being
    forecast (``edge.features.forecast_covariates`` for the calendar day the horizon starts in,
    with the horizon's 48 temperatures) plus sin/cos of the origin's time of day."""
    sub = fleet.households(households)
    h_count, t_total = sub.n_households, sub.n_days * STEPS_PER_DAY
    hist = HISTORY_DAYS * STEPS_PER_DAY
    origins = np.arange(hist, t_total - STEPS_PER_DAY + 1, cfg.origin_stride_steps)
    if len(origins) == 0:
        raise EvaluationError(f"forecasting needs more than {HISTORY_DAYS + 1} days per household")
    pairs = np.stack(np.meshgrid(np.arange(h_count), origins, indexing="ij"), -1).reshape(-1, 2)
    pairs = pairs[cap(len(pairs), limit, rng)]
    power = sub.power_w.reshape(h_count, -1)
    temp = sub.temperature_c.reshape(h_count, -1)
    tod = np.arange(t_total) % STEPS_PER_DAY * (2 * np.pi / STEPS_PER_DAY)
    ts_s = (sub.day_start_s[:, :, None] + SLOT_S * np.arange(STEPS_PER_DAY)).reshape(h_count, -1)
    weekend = ((ts_s // 86_400 + 3) % 7 >= 5).astype(float)  # 1970-01-01 was a Thursday
    h, o = pairs[:, 0], pairs[:, 1]
    cov = np.stack([
        np.concatenate([forecast_covariates(np.datetime64(int(ts_s[hh, oo]), "s"),
                                            temp[hh, oo : oo + STEPS_PER_DAY],
                                            bool(sub.is_holiday[hh, oo // STEPS_PER_DAY])),
                        [np.sin(tod[oo]), np.cos(tod[oo])]])
        for hh, oo in zip(h, o, strict=True)]).astype(np.float32)
    start = np.stack([h, o - hist], 1)
    step_cov = np.stack([np.broadcast_to(np.sin(tod), power.shape), np.broadcast_to(np.cos(tod), power.shape),
                         weekend, temp / 10.0], -1)
    step = step_cov[start[:, :1], start[:, 1:] + np.arange(hist)[None, :]].astype(np.float32)
    # a context model's window is the day before the origin; its context the D days before that
    context = window_context(power, h, o - STEPS_PER_DAY, cfg.history_days)
    return ForecastBatch(_windows(power, start, hist), cov, step,
                         _windows(power, np.stack([h, o], 1), STEPS_PER_DAY), households[h], *context)


# --- imputation --------------------------------------------------------------------------------


def imputation_days(fleet: FleetProfiles, households: np.ndarray, limit: int | None,
                    rng: np.random.Generator, history_days: int = 0) -> ImputationBatch:
    """Complete days of the households, all observed: day >= 1 (yesterday exists), and with
    ``history_days`` D > 0 day >= D, each with its D days of context (``window_context``), so
    every method that reads last week has it."""
    sub = fleet.households(households)
    first = max(1, history_days)
    if sub.n_days <= first:
        raise EvaluationError(f"imputation with {history_days} days of context needs more than {first} days")
    pairs = np.stack(np.meshgrid(np.arange(sub.n_households), np.arange(first, sub.n_days), indexing="ij"),
                     -1).reshape(-1, 2)
    pairs = pairs[cap(len(pairs), limit, rng)]
    h, d = pairs[:, 0], pairs[:, 1]
    ts_s = sub.day_start_s[h, d][:, None] + SLOT_S * np.arange(STEPS_PER_DAY)[None, :]
    context = window_context(sub.power_w.reshape(sub.n_households, -1), h, d * STEPS_PER_DAY, history_days)
    return ImputationBatch(sub.power_w[h, d], np.ones((len(h), STEPS_PER_DAY), bool),
                           sub.power_w[h, d - 1], ts_s, households[h], *context)


def with_mask(days: ImputationBatch, observed: np.ndarray) -> ImputationBatch:
    return ImputationBatch(days.load_w, observed, days.previous_w, days.ts_s, days.household,
                           days.context_w, days.context_mask)


def missing_masks(n: int, rate: float, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """[n, 48] observed masks with exactly round(rate * 48) missing points per day
    (``edge.sim.inject.exact_missing_mask``); an unknown pattern is an ``EvaluationError``."""
    try:
        return inject.exact_missing_mask(n, STEPS_PER_DAY, rate, pattern, rng)
    except inject.InjectionError as e:
        raise EvaluationError(str(e)) from e


# --- anomaly detection -------------------------------------------------------------------------

def attack_day(window_w: np.ndarray, kind: str, rng: np.random.Generator,
               cfg: EvalConfig) -> tuple[np.ndarray, np.ndarray]:
    """One attack on one day over a random interval of ``attack_steps_range`` steps
    (``edge.sim.inject``, Cui, Wang, Yue 2019); returns (attacked window, 0/1 point labels).

    scaling: x'(t) = (1 + s lambda) x(t), lambda ~ U(scaling_range), s = +-1.
    ramp_ii: x'(t) = (1 + s lambda_r r(t)) x(t), r rising linearly from 0 to 1 at the middle of the
    interval and falling back, peak lambda_r ~ U(ramp_peak_range). Loads stay >= 0.
    """
    if kind not in ATTACK_KINDS:
        raise EvaluationError(f"unknown attack {kind!r} ({' | '.join(ATTACK_KINDS)})")
    t_s, t_e = inject.random_window(rng, window_w.shape[0], *cfg.attack_steps_range)
    sign = rng.choice([-1.0, 1.0])
    if kind == "scaling":
        inj = inject.scaling(window_w, t_s, t_e, sign * rng.uniform(*cfg.scaling_range))
    else:
        inj = inject.ramp_ii(window_w, t_s, t_e, peak=sign * rng.uniform(*cfg.ramp_peak_range))
    return np.maximum(inj.values, 0.0), inj.point_mask.astype(np.int8)


def anomaly_data(fleet: FleetProfiles, households: np.ndarray, cfg: EvalConfig, limit: int | None,
                 rng: np.random.Generator) -> AnomalyBatch:
    """Days >= 7 (a week of clean history each); ``attack_fraction`` of them attacked, half by
    scaling and half by ramp_ii."""
    sub = fleet.households(households)
    pairs = np.stack(np.meshgrid(np.arange(sub.n_households), np.arange(HISTORY_DAYS, sub.n_days),
                                 indexing="ij"), -1).reshape(-1, 2)
    if len(pairs) == 0:
        raise EvaluationError(f"anomaly detection needs more than {HISTORY_DAYS} days per household")
    pairs = pairs[cap(len(pairs), limit, rng)]
    h, d = pairs[:, 0], pairs[:, 1]
    window = sub.power_w[h, d].copy()
    history = np.stack([sub.power_w[h, d - k] for k in range(HISTORY_DAYS, 0, -1)], 1).reshape(len(h), -1)
    attacked = rng.random(len(h)) < cfg.attack_fraction
    kind = np.where(attacked, np.where(rng.random(len(h)) < 0.5, *ATTACK_KINDS), "none")
    point = np.zeros(window.shape, dtype=np.int8)
    for i in np.flatnonzero(attacked):
        window[i], point[i] = attack_day(window[i], str(kind[i]), rng, cfg)
    context = window_context(sub.power_w.reshape(sub.n_households, -1), h, d * STEPS_PER_DAY, cfg.history_days)
    return AnomalyBatch(window, history, attacked.astype(np.int8), point, kind, *context)


# --- NILM --------------------------------------------------------------------------------------


@dataclass
class NILMData:
    train: NILMBatch
    val: NILMBatch
    test: NILMBatch
    appliances: list[str]


def nilm_appliances(traces: list, min_on: float = 1e-3, max_on: float = 0.95) -> list[str]:
    """Appliances worth disaggregating: seen in the training traces, ON between ``min_on`` and
    ``max_on`` of the time (always-on loads such as a router have no ON/OFF to detect)."""
    on_time: dict[str, list[float]] = {}
    for tr in traces:
        for name, a in tr.appliances.items():
            on_time.setdefault(name, []).append(float(np.mean(a.on)) if np.max(a.power_w, initial=0) > 1 else 0.0)
    return sorted(n for n, v in on_time.items() if min_on <= np.mean(v) <= max_on)


def nilm_batch(traces: list, appliances: list[str], window: int) -> NILMBatch:
    """Non-overlapping windows of the traces (``trainer.data.high_rate_windows``) as a batch."""
    ds = high_rate_windows(traces, window, appliances)
    res = int(ds.meta["resolution_s"])
    a = ds.arrays
    ts_s = a["start_ts_s"][:, None] + res * np.arange(window)[None, :]
    return NILMBatch(np.asarray(a["load_w"], float), np.asarray(a["appliance_w"], float),
                     a["appliance_on"] > 0.5, ts_s, appliances, res)


def nilm_data(cfg: EvalConfig) -> NILMData:
    """High-rate windows (``nilm_window`` steps at ``nilm_resolution_s``) of a separate simulated
    fleet, split by household; appliances as chosen by ``nilm_appliances`` on the training split."""
    traces = list(progress_bar(simulate_fleet(n_households=cfg.nilm_households, days=cfg.nilm_days,
                                              resolution_s=cfg.nilm_resolution_s, seed=cfg.seed + 1),
                               cfg.progress, "simulate NILM fleet", total=cfg.nilm_households))
    split = split_households(len(traces), cfg.split, cfg.seed + 1)
    appliances = nilm_appliances([traces[i] for i in split["train"]])
    batches = {k: nilm_batch([traces[i] for i in idx], appliances, cfg.nilm_window) for k, idx in split.items()}
    return NILMData(batches["train"], batches["val"], batches["test"], appliances)
