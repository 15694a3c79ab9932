"""Training data for pre-training and fine-tuning: in-memory arrays, batches, DDP sharding.

Everything the trainer consumes is an ``ArrayDataset``: a dict of numpy arrays sharing their first
dimension (one row per window). Keys per use:

    pretrain     load_w [N, L]
    imputation   load_w [N, L] (missing set to 0), observed [N, L], target_w [N, L]
    anomaly      load_w [N, L], window_label [N], point_label [N, L]
    forecast     load_w [N, L], covariates [N, C], day_ahead_w [N, 48], hour_ahead_w [N, 2]
    nilm         load_w [N, L], appliance_w [N, A, L], appliance_on [N, A, L]

Builders turn simulator traces (``edge.sim.simulate_fleet``) or Parquet shards
(``edge.data.shards.iter_profile_batches``) into these arrays; missing-data and attack injection
make the imputation and anomaly sets (``edge.sim.inject`` when present, else the definitions here,
which follow seed 000 ref [34]: scaling multiplies a segment by (1 + lambda), ramping adds a
linear ramp up and back down).

Batches: one permutation per epoch from (seed, epoch), identical on every rank; under DDP each
rank takes a contiguous 1/world slice of every global batch, so world x per-rank batch = the
single-process batch and averaged gradients equal the single-process gradient (up to the random
gate noise and the per-rank balance statistics).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

TASK_KEYS: dict[str, tuple[str, ...]] = {
    "pretrain": ("load_w",),
    "imputation": ("load_w", "observed", "target_w"),
    "anomaly": ("load_w", "window_label", "point_label"),
    "forecast": ("load_w", "covariates", "day_ahead_w", "hour_ahead_w"),
    "nilm": ("load_w", "appliance_w", "appliance_on"),
}
STEPS_PER_DAY_30MIN = 48


class DataError(ValueError):
    """Training data that does not fit what the model or task expects."""


@dataclass
class ArrayDataset:
    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.arrays:
            raise DataError("an ArrayDataset needs at least one array")
        lengths = {k: len(v) for k, v in self.arrays.items()}
        if len(set(lengths.values())) != 1:
            raise DataError(f"arrays differ in length: {lengths}")
        for k, v in self.arrays.items():
            if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
                raise DataError(f"array {k!r} holds {int((~np.isfinite(v)).sum())} non-finite values")

    @classmethod
    def coerce(cls, data, task: str = "pretrain") -> ArrayDataset:
        """Accept an ArrayDataset, a dict of arrays, or (pretrain) a plain [N, L] array."""
        if isinstance(data, ArrayDataset):
            ds = data
        elif isinstance(data, dict):
            ds = cls({k: np.asarray(v) for k, v in data.items()})
        elif task == "pretrain":
            ds = cls({"load_w": np.asarray(data, dtype=np.float32)})
        else:
            raise DataError(f"{task} data must be an ArrayDataset or a dict of arrays")
        missing = [k for k in TASK_KEYS[task] if k not in ds.arrays]
        if missing:
            raise DataError(f"{task} data lacks {missing}; it needs {TASK_KEYS[task]}")
        return ds

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def subset(self, idx: np.ndarray) -> ArrayDataset:
        return ArrayDataset({k: v[idx] for k, v in self.arrays.items()}, dict(self.meta))

    def n_batches(self, batch_size: int, drop_last: bool = True) -> int:
        n = len(self)
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(self, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                rank: int = 0, world: int = 1, drop_last: bool = True, skip: int = 0
                ) -> Iterator[dict[str, np.ndarray]]:
        """Global batches of ``batch_size``; this rank's contiguous slice of each. ``skip`` first
        batches are skipped (resume mid-epoch)."""
        if batch_size % world:
            raise DataError(f"batch_size {batch_size} is not divisible by world size {world}")
        n = len(self)
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        for b in range(skip, self.n_batches(batch_size, drop_last)):
            idx = np.array_split(order[b * batch_size:(b + 1) * batch_size], world)[rank]
            if len(idx):
                yield {k: v[idx] for k, v in self.arrays.items()}


# ---------------------------------------------------------------------------------------------
# Profiles from simulator traces and shards


def daily_profiles(ts_s: np.ndarray, power_w: np.ndarray, resolution_s: int = 1800,
                   steps_per_day: int = STEPS_PER_DAY_30MIN) -> tuple[np.ndarray, np.ndarray]:
    """Mean power per ``resolution_s`` bin, cut into whole UTC days: ([D, steps], day_start_s [D])."""
    ts_s = np.asarray(ts_s, dtype=np.int64)
    power_w = np.asarray(power_w, dtype=np.float64)
    if ts_s.shape != power_w.shape or ts_s.size == 0:
        raise DataError("ts_s and power_w must be non-empty and of equal length")
    day_s = resolution_s * steps_per_day
    first_day = -(-int(ts_s[0]) // day_s) * day_s
    bins = (ts_s - first_day) // resolution_s
    n_bins = int(bins.max()) + 1 if bins.max() >= 0 else 0
    n_days = n_bins // steps_per_day
    if n_days == 0:
        return np.zeros((0, steps_per_day), np.float32), np.zeros(0, np.int64)
    keep = (bins >= 0) & (bins < n_days * steps_per_day) & np.isfinite(power_w)
    sums = np.bincount(bins[keep], weights=power_w[keep], minlength=n_days * steps_per_day)
    counts = np.bincount(bins[keep], minlength=n_days * steps_per_day)
    prof = (sums / np.maximum(counts, 1)).reshape(n_days, steps_per_day)
    full = (counts.reshape(n_days, steps_per_day) > 0).all(axis=1)  # only complete days
    starts = first_day + day_s * np.arange(n_days)
    return prof[full].astype(np.float32), starts[full]


def profiles_from_traces(traces: Iterable) -> ArrayDataset:
    """Stack the daily 30-min profiles of simulator traces (any resolution <= 30 min)."""
    rows, households = [], []
    for h, trace in enumerate(traces):
        prof, _ = daily_profiles(trace.ts_s, trace.power_w)
        rows.append(prof)
        households.append(np.full(len(prof), h, np.int32))
    if not rows:
        raise DataError("no traces")
    return ArrayDataset({"load_w": np.concatenate(rows), "household": np.concatenate(households)})


def simulate_profiles(n_households: int, days: int, seed: int = 0) -> ArrayDataset:
    """A pre-training set of daily profiles from the simulator (edge.sim)."""
    from edge.sim import simulate_fleet

    ds = profiles_from_traces(simulate_fleet(n_households=n_households, days=days,
                                             resolution_s=1800, seed=seed))
    ds.meta.update(source=f"sim:{n_households}x{days}d seed={seed}", resolution_s=1800)
    return ds


def high_rate_windows(traces: Iterable, window: int, appliances: Sequence[str] | None = None
                      ) -> ArrayDataset:
    """Non-overlapping NILM windows of high-rate traces: aggregate + per-appliance truth."""
    traces = list(traces)
    if appliances is None:
        appliances = sorted({a for t in traces for a in t.appliances})
    loads, apps, ons, households = [], [], [], []
    for h, tr in enumerate(traces):
        n = len(tr.ts_s) // window * window
        if n == 0:
            continue
        loads.append(np.asarray(tr.power_w[:n], np.float32).reshape(-1, window))
        a_w = np.zeros((len(appliances), n), np.float32)
        a_on = np.zeros((len(appliances), n), np.float32)
        for j, name in enumerate(appliances):
            if name in tr.appliances:
                a_w[j] = np.asarray(tr.appliances[name].power_w[:n], np.float32)
                a_on[j] = np.asarray(tr.appliances[name].on[:n], np.float32)
        apps.append(a_w.reshape(len(appliances), -1, window).transpose(1, 0, 2))
        ons.append(a_on.reshape(len(appliances), -1, window).transpose(1, 0, 2))
        households.append(np.full(n // window, h, np.int32))
    if not loads:
        raise DataError(f"no trace is at least {window} samples long")
    return ArrayDataset({"load_w": np.concatenate(loads), "appliance_w": np.concatenate(apps),
                         "appliance_on": np.concatenate(ons),
                         "household": np.concatenate(households)},
                        {"appliances": list(appliances)})


def profiles_from_shards(paths: Sequence[str], rank: int = 0, world: int = 1) -> ArrayDataset:
    """Profiles from Parquet shards (``edge.data.shards``); under DDP each rank reads every
    world-th shard, so no rank holds the whole corpus."""
    from edge.data.shards import iter_profile_batches

    mine = list(paths)[rank::world]
    if not mine:
        raise DataError(f"rank {rank} of {world} got no shard out of {len(paths)}")
    rows = [np.asarray(b["load_w"] if isinstance(b, dict) else b, np.float32)
            for b in iter_profile_batches(mine)]
    return ArrayDataset({"load_w": np.concatenate(rows)}, {"source": ",".join(map(str, mine))})


def split_by_household(ds: ArrayDataset, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0
                       ) -> list[ArrayDataset]:
    """Disjoint household splits (the ``household`` array), in the given fractions."""
    if "household" not in ds.arrays:
        raise DataError("split_by_household needs a 'household' array")
    hh = np.unique(ds.arrays["household"])
    order = np.random.default_rng(seed).permutation(hh)
    cuts = np.round(np.cumsum(fractions) / sum(fractions) * len(hh)).astype(int)
    groups = np.split(order, cuts[:-1])
    return [ds.subset(np.isin(ds.arrays["household"], g)) for g in groups]


# ---------------------------------------------------------------------------------------------
# Task sets: missing data, attacks, forecasting pairs


def missing_mask(n: int, length: int, rate: float | tuple[float, float], mode: str,
                 rng: np.random.Generator) -> np.ndarray:
    """observed [n, length] float32 (1 observed, 0 missing). ``mode``: "random" points or one
    contiguous "block"; ``rate`` fixed or drawn uniformly per row from (lo, hi)."""
    lo, hi = (rate, rate) if np.isscalar(rate) else rate
    rates = rng.uniform(lo, hi, size=n)
    obs = np.ones((n, length), np.float32)
    for i, r in enumerate(rates):
        k = min(int(round(r * length)), length - 1)
        if k <= 0:
            continue
        if mode == "random":
            obs[i, rng.choice(length, k, replace=False)] = 0
        elif mode == "block":
            s = rng.integers(0, length - k + 1)
            obs[i, s:s + k] = 0
        else:
            raise DataError(f"missing mode must be 'random' or 'block', got {mode!r}")
    return obs


def imputation_set(load_w: np.ndarray, rate: tuple[float, float] = (0.1, 0.5),
                   modes: Sequence[str] = ("random", "block"), seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    n, length = load_w.shape
    which = rng.integers(0, len(modes), size=n)
    obs = np.ones_like(load_w, dtype=np.float32)
    for m, mode in enumerate(modes):
        rows = which == m
        obs[rows] = missing_mask(int(rows.sum()), length, rate, mode, rng)
    load_w = load_w.astype(np.float32)
    return ArrayDataset({"load_w": load_w * obs, "observed": obs, "target_w": load_w})


def inject_attack(window_w: np.ndarray, kind: str, rng: np.random.Generator,
                  magnitude: tuple[float, float] = (0.2, 0.8), steps: tuple[int, int] = (8, 24)
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One scaling or ramping attack (seed 000 ref [34]) on a copy of a window: (window, point label)."""
    x = window_w.astype(np.float32).copy()
    label = np.zeros(len(x), np.float32)
    if kind == "none":
        return x, label
    d = int(rng.integers(steps[0], min(steps[1], len(x)) + 1))
    s = int(rng.integers(0, len(x) - d + 1))
    lam = float(rng.uniform(*magnitude)) * (1 if rng.random() < 0.5 else -1)
    if kind == "scaling":
        factor = np.full(d, 1 + lam)
    elif kind == "ramping":
        half = np.minimum(np.arange(d), d - 1 - np.arange(d)) / max((d - 1) / 2, 1)
        factor = 1 + lam * half
    else:
        raise DataError(f"attack kind must be 'none', 'scaling' or 'ramping', got {kind!r}")
    x[s:s + d] = x[s:s + d] * factor
    label[s:s + d] = 1
    return x, label


def anomaly_set(load_w: np.ndarray, attack_fraction: float = 0.5,
                kinds: Sequence[str] = ("scaling", "ramping"), seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    windows, points, labels = [], [], []
    for row in load_w:
        kind = str(rng.choice(kinds)) if rng.random() < attack_fraction else "none"
        w, p = inject_attack(row, kind, rng)
        windows.append(w)
        points.append(p)
        labels.append(float(kind != "none"))
    return ArrayDataset({"load_w": np.stack(windows), "point_label": np.stack(points),
                         "window_label": np.asarray(labels, np.float32)})


def forecast_set(series_w: np.ndarray, day_start_s: np.ndarray, temperature_c: np.ndarray,
                 is_holiday: np.ndarray, stride_steps: int = 12, hour_ahead_steps: int = 2
                 ) -> ArrayDataset:
    """Forecast windows from per-household 30-min series [H, D*48] with daily calendars [H, D].

    Origins every ``stride_steps``: input = the 48 steps before the origin, targets = the next 48
    (day-ahead) and the next ``hour_ahead_steps``; covariates from ``edge.features`` for the
    calendar day the horizon starts in, with the horizon's 48 temperatures.
    """
    from edge.features import forecast_covariates

    H, T = series_w.shape
    L = STEPS_PER_DAY_30MIN
    xs, covs, days, hours = [], [], [], []
    for h in range(H):
        for o in range(L, T - L + 1, stride_steps):
            day = o // L
            date = np.datetime64(int(day_start_s[h, day]), "s")
            xs.append(series_w[h, o - L:o])
            covs.append(forecast_covariates(date, temperature_c[h, o:o + L], bool(is_holiday[h, day])))
            days.append(series_w[h, o:o + L])
            hours.append(series_w[h, o:o + hour_ahead_steps])
    if not xs:
        raise DataError("series too short for one forecast window (needs 2 days)")
    f = np.float32
    return ArrayDataset({"load_w": np.asarray(xs, f), "covariates": np.asarray(covs, f),
                         "day_ahead_w": np.asarray(days, f), "hour_ahead_w": np.asarray(hours, f)})


def synthetic_profiles(n: int, length: int = 48, seed: int = 0) -> np.ndarray:
    """Household-like daily profiles (base load + morning/evening peaks + noise), for tests and
    benchmarks that must not depend on the simulator. float32 [n, length] in W."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 24, length, endpoint=False)[None, :]
    base = rng.uniform(100, 400, (n, 1))
    morning = rng.uniform(200, 1500, (n, 1)) * np.exp(-0.5 * ((t - rng.uniform(6, 9, (n, 1))) / 1.0) ** 2)
    evening = rng.uniform(500, 2500, (n, 1)) * np.exp(-0.5 * ((t - rng.uniform(17, 21, (n, 1))) / 1.5) ** 2)
    noise = rng.gamma(1.0, 60.0, (n, length))
    return (base + morning + evening + noise).astype(np.float32)
