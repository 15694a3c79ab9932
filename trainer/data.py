"""Training data for pre-training and fine-tuning: in-memory arrays, batches, DDP sharding.

Everything the trainer consumes is an ``ArrayDataset``: a dict of numpy arrays sharing their first
dimension (one row per window). Keys per use:

    pretrain     load_w [N, L]
    imputation   load_w [N, L] (missing set to 0), observed [N, L], target_w [N, L]
    anomaly      load_w [N, L], window_label [N], point_label [N, L]
    forecast     load_w [N, L], covariates [N, C], day_ahead_w [N, L], hour_ahead_w [N, 3600/resolution_s]
    nilm         load_w [N, L], appliance_w [N, A, L], appliance_on [N, A, L]

Builders turn simulator traces (``edge.sim.simulate_fleet``) or Parquet shards
(``edge.data.shards.iter_profile_batches``) into these arrays; missing-data and attack injection
make the imputation and anomaly sets (``edge.sim.inject``: missing points/blocks, and the scaling
and ramping attacks of seed 000 ref [34]).

Batches: one permutation per epoch from (seed, epoch), identical on every rank; under DDP each
rank takes a contiguous 1/world slice of every global batch, so world x per-rank batch = the
single-process batch and averaged gradients equal the single-process gradient (up to the random
gate noise and the per-rank balance statistics).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.data.shards import iter_nilm_batches, iter_profile_batches, read_manifest
from edge.data.split import households_by_split
from edge.errors import DataError
from edge.features import forecast_covariates
from edge.sim import inject, simulate_fleet

TASK_KEYS: dict[str, tuple[str, ...]] = {
    "pretrain": ("load_w",),
    "imputation": ("load_w", "observed", "target_w"),
    "anomaly": ("load_w", "window_label", "point_label"),
    "forecast": ("load_w", "covariates", "day_ahead_w", "hour_ahead_w"),
    "nilm": ("load_w", "appliance_w", "appliance_on"),
}
STEPS_PER_DAY_30MIN = 48
# arrays where NaN means "not known" rather than bad data: a meter without a weather column has no
# temperature (the forecast covariates then carry the weather mask at 0, edge.features)
MAY_BE_UNKNOWN = ("temperature_c",)


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
            if k in MAY_BE_UNKNOWN:
                if np.isinf(v).any():
                    raise DataError(f"array {k!r} holds {int(np.isinf(v).sum())} infinite values")
            elif np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
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
    """Stack the daily 30-min profiles (``HouseholdTrace.to_profiles``: complete local days) of
    simulator traces, with their calendar and temperature (for forecast sets)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("load_w", "household", "day", "temperature_c", "is_holiday")}
    for h, trace in enumerate(traces):
        prof = trace.to_profiles()
        n = len(prof.load_w)
        parts["load_w"].append(np.asarray(prof.load_w, np.float32))
        parts["household"].append(np.full(n, h, np.int32))
        parts["day"].append(prof.dates.astype("datetime64[D]").astype(np.int64))
        parts["temperature_c"].append(np.asarray(prof.temperature_c, np.float32))
        parts["is_holiday"].append(np.asarray(prof.is_holiday, bool))
    if not parts["load_w"]:
        raise DataError("no traces")
    return ArrayDataset({k: np.concatenate(v) for k, v in parts.items()},
                        {"resolution_s": 1800})


def simulate_profiles(n_households: int, days: int, seed: int = 0) -> ArrayDataset:
    """A pre-training set of daily profiles from the simulator (edge.sim)."""
    ds = profiles_from_traces(simulate_fleet(n_households=n_households, days=days,
                                             resolution_s=1800, seed=seed))
    ds.meta.update(source=f"sim:{n_households}x{days}d seed={seed}", resolution_s=1800)
    return ds


def high_rate_windows(traces: Iterable, window: int, appliances: Sequence[str] | None = None,
                      stride: int | None = None) -> ArrayDataset:
    """NILM windows of high-rate traces: aggregate + per-appliance truth, the household index
    (the trace's position) and each window's first timestamp (``start_ts_s``, UTC s). Windows
    start every ``stride`` samples (default ``window``: non-overlapping); a stride below the
    window gives training the same uses at other positions in the window."""
    traces = list(traces)
    stride = window if stride is None else int(stride)
    if not 0 < stride <= window:
        raise DataError(f"window stride must be in 1..{window}, got {stride}")
    if appliances is None:
        appliances = sorted({a for t in traces for a in t.appliances})
    loads, apps, ons, households, starts = [], [], [], [], []
    for h, tr in enumerate(traces):
        n = len(tr.ts_s)
        first = np.arange(0, n - window + 1, stride)
        if first.size == 0:
            continue
        idx = first[:, None] + np.arange(window)[None, :]  # [N, window]
        loads.append(np.asarray(tr.power_w, np.float32)[idx])
        starts.append(np.asarray(tr.ts_s, np.int64)[first])
        a_w = np.zeros((len(first), len(appliances), window), np.float32)
        a_on = np.zeros((len(first), len(appliances), window), np.float32)
        for j, name in enumerate(appliances):
            if name in tr.appliances:
                a_w[:, j] = np.asarray(tr.appliances[name].power_w, np.float32)[idx]
                a_on[:, j] = np.asarray(tr.appliances[name].on, np.float32)[idx]
        apps.append(a_w)
        ons.append(a_on)
        households.append(np.full(len(first), h, np.int32))
    if not loads:
        raise DataError(f"no trace is at least {window} samples long")
    return ArrayDataset({"load_w": np.concatenate(loads), "appliance_w": np.concatenate(apps),
                         "appliance_on": np.concatenate(ons),
                         "household": np.concatenate(households), "start_ts_s": np.concatenate(starts)},
                        {"appliances": list(appliances), "resolution_s": int(traces[0].resolution_s)})


def balance_appliance_windows(ds: ArrayDataset, min_share: float, max_repeat: int = 4) -> ArrayDataset:
    """NILM training windows with the rare appliances' uses repeated: for every appliance whose
    ON samples appear in fewer than ``min_share`` of the windows, those windows are repeated
    (at most ``max_repeat`` times in all) until they make up about ``min_share``. A kettle is on
    a few minutes a day; without this most batches never show one. Applied to training only:
    validation and test keep the households' real frequencies, which the calibration needs."""
    if not 0.0 <= min_share < 1.0:
        raise DataError(f"min_share must be in [0, 1), got {min_share}")
    has_use = ds.arrays["appliance_on"].max(axis=2) > 0.5  # [N, A]
    repeat = np.ones(len(ds), np.int64)
    for a in range(has_use.shape[1]):
        share = has_use[:, a].mean()
        if 0 < share < min_share:
            k = min(int(np.ceil(min_share * (1 - share) / (share * (1 - min_share)))), max_repeat)
            repeat[has_use[:, a]] = np.maximum(repeat[has_use[:, a]], k)
    return ds.subset(np.repeat(np.arange(len(ds)), repeat))


def _shard_files(data_dir: str, kind: str, split: str, rank: int, world: int) -> tuple[list, dict]:
    """This rank's share (every world-th file) of a dataset split, and the manifest section."""

    section = read_manifest(data_dir).get(kind)
    if section is None or split not in section["splits"]:
        raise DataError(f"{data_dir}: no {kind} split {split!r}")
    files = [Path(data_dir) / f for f in section["splits"][split]["files"]]
    mine = files[rank::world]
    if not mine:
        raise DataError(f"rank {rank} of {world} got no {kind} shard out of {len(files)}; "
                        "write the dataset with more, smaller shards")
    return mine, section


def profiles_from_shards(data_dir: str, split: str = "train", rank: int = 0, world: int = 1,
                         column: str = "load_w") -> ArrayDataset:
    """Daily profiles of a Parquet dataset (``edge.data.shards``) split, with household, day,
    temperature and holiday (so ``forecast_set`` works on them). Under DDP each rank reads every
    world-th shard, so no rank holds the whole corpus. Rows with a missing point are dropped
    (pre-training needs complete days); ``column="load_clean_w"`` reads the attack-free truth.
    L and ``meta["resolution_s"]`` come from the manifest; ``temperature_c`` is NaN where the
    data has no temperature (a user's meter without a weather column)."""
    files, section = _shard_files(data_dir, "profiles", split, rank, world)
    cols = ("household_id", "date", column, "temperature_c", "is_holiday")
    parts: dict[str, list] = {k: [] for k in cols}
    for b in iter_profile_batches(files, columns=list(cols)):
        keep = np.isfinite(b[column]).all(axis=1)
        for k in cols:
            parts[k].append(b[k][keep])
    if not parts[column]:
        raise DataError(f"{data_dir}: split {split!r} has no complete profile")
    hh = np.concatenate(parts["household_id"])
    _, codes = np.unique(hh, return_inverse=True)
    return ArrayDataset({"load_w": np.concatenate(parts[column]).astype(np.float32),
                         "household": codes.astype(np.int32),
                         "day": np.concatenate(parts["date"]).astype("datetime64[D]").astype(np.int64),
                         "temperature_c": np.concatenate(parts["temperature_c"]).astype(np.float32),
                         "is_holiday": np.concatenate(parts["is_holiday"]).astype(bool)},
                        {"source": f"{data_dir}:{split}", "resolution_s": int(section.get("resolution_s", 1800))})


def nilm_from_shards(data_dir: str, split: str = "train", rank: int = 0, world: int = 1
                     ) -> ArrayDataset:
    """High-rate NILM windows of a Parquet dataset split (appliance order from the manifest)."""
    _, section = _shard_files(data_dir, "nilm", split, rank, world)
    cols = ("load_w", "appliance_w", "appliance_on")
    parts: dict[str, list] = {k: [] for k in cols}
    for i, b in enumerate(iter_nilm_batches(data_dir, split=split, columns=list(cols))):
        if i % world == rank:  # batches, not files: NILM files are few
            for k in cols:
                parts[k].append(b[k])
    if not parts["load_w"]:
        raise DataError(f"{data_dir}: no NILM window for rank {rank} in split {split!r}")
    arrays = {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}
    return ArrayDataset(arrays, {"appliances": list(section["appliances"]), "source": f"{data_dir}:{split}",
                                 "resolution_s": int(section["resolution_s"])})


def split_by_household(ds: ArrayDataset, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0
                       ) -> list[ArrayDataset]:
    """Disjoint household splits (the ``household`` array) in the given fractions, by the
    project's one splitter (``edge.data.split.split_households``)."""
    if "household" not in ds.arrays:
        raise DataError("split_by_household needs a 'household' array")
    groups = households_by_split(ds.arrays["household"].tolist(),
                                 {str(i): f for i, f in enumerate(fractions)}, seed)
    return [ds.subset(np.isin(ds.arrays["household"], g)) for g in groups.values()]


# ---------------------------------------------------------------------------------------------
# Task sets: missing data, attacks, forecasting pairs


def missing_mask(n: int, length: int, rate: float | tuple[float, float], mode: str,
                 rng: np.random.Generator) -> np.ndarray:
    """observed [n, length] float32 (1 observed, 0 missing) from ``edge.sim.inject``: "random"
    points (each missing with probability rate) or one contiguous "block" of round(rate * L);
    ``rate`` fixed or drawn uniformly per row from (lo, hi). At least one point stays observed."""
    lo, hi = (rate, rate) if np.isscalar(rate) else rate
    obs = np.ones((n, length), np.float32)
    ones = np.ones(length)
    for i, r in enumerate(rng.uniform(lo, hi, size=n)):
        if mode == "random":
            miss = inject.missing_points(ones, rng, float(r)).point_mask
        elif mode == "block":
            k = min(max(int(round(r * length)), 1), length - 1)
            miss = inject.missing_block(ones, rng, k).point_mask
        else:
            raise DataError(f"missing mode must be 'random' or 'block', got {mode!r}")
        if miss.all():
            miss[rng.integers(length)] = False
        obs[i, miss] = 0
    return obs


def imputation_set(load_w: np.ndarray, rate: tuple[float, float] = (0.1, 0.5),
                   modes: Sequence[str] = ("random", "block"), seed: int = 0) -> ArrayDataset:
    """Missing points/blocks at 10-50 % (seed 000's range); missing load_w set to 0."""
    rng = np.random.default_rng(seed)
    n, length = load_w.shape
    which = rng.integers(0, len(modes), size=n)
    obs = np.ones_like(load_w, dtype=np.float32)
    for m, mode in enumerate(modes):
        rows = which == m
        obs[rows] = missing_mask(int(rows.sum()), length, rate, mode, rng)
    load_w = load_w.astype(np.float32)
    return ArrayDataset({"load_w": load_w * obs, "observed": obs, "target_w": load_w})


ANOMALY_KINDS = ("scaling", "ramp_i", "ramp_ii")  # seed 000: scaling and ramping attacks


def anomaly_set(load_w: np.ndarray, attack_fraction: float = 0.5,
                kinds: Sequence[str] = ANOMALY_KINDS, seed: int = 0, config=None) -> ArrayDataset:
    """Cui et al. scaling/ramping attacks (``edge.sim.inject.attack_batch``) on a share of rows;
    ``config``: an ``edge.sim.inject.AttackConfig`` (e.g. ``edge.data.userdata.attack_config(L)``
    for attack lengths in hours at any resolution), else the default with ``kinds``."""
    rng = np.random.default_rng(seed)
    x, points, window, codes = inject.attack_batch(load_w, rng, attack_fraction,
                                                   config or inject.AttackConfig(kinds=tuple(kinds)))
    return ArrayDataset({"load_w": x, "point_label": points.astype(np.float32),
                         "window_label": window.astype(np.float32), "attack_code": codes})


def forecast_set(profiles: ArrayDataset, stride_steps: int | None = None, hour_ahead_steps: int | None = None
                 ) -> ArrayDataset:
    """Forecast windows from daily profiles [D, L] with ``household``, ``day``, ``temperature_c``
    (NaN = unknown) and ``is_holiday`` (``profiles_from_traces``, ``profiles_from_shards``). Each
    household's consecutive days are joined into one series; origins every ``stride_steps``
    (default L/4): input = the L steps before the origin, targets = the next L (day-ahead) and the
    next ``hour_ahead_steps`` (default one hour: 3600 / ``meta["resolution_s"]``); covariates
    (``edge.features``) for the calendar day the horizon starts in, with the horizon's
    temperatures, or the weather mask at 0 where there are none. A gap in the days (a dropped
    incomplete day) starts a new series, so no window spans it."""
    need = ("household", "day", "temperature_c", "is_holiday")
    if any(k not in profiles.arrays for k in need):
        raise DataError(f"forecast_set needs profile arrays {need}")
    a = profiles.arrays
    L = a["load_w"].shape[1]
    resolution_s = int(profiles.meta.get("resolution_s", 86400 // L))
    stride_steps = stride_steps or max(1, L // 4)
    hour_ahead_steps = hour_ahead_steps or max(1, 3600 // resolution_s)
    cols: dict[str, list] = {"load_w": [], "covariates": [], "day_ahead_w": [], "hour_ahead_w": [],
                             "household": []}
    order = np.lexsort((a["day"], a["household"]))
    breaks = np.flatnonzero((np.diff(a["household"][order]) != 0) | (np.diff(a["day"][order]) != 1)) + 1
    for run in np.split(order, breaks):
        series, temp = a["load_w"][run].reshape(-1), a["temperature_c"][run].reshape(-1)
        for o in range(L, len(series) - L + 1, stride_steps):
            d = run[o // L]
            date = np.datetime64(int(a["day"][d]), "D")
            t = temp[o:o + L]
            cols["load_w"].append(series[o - L:o])
            cols["covariates"].append(forecast_covariates(date, t if np.isfinite(t).any() else None,
                                                          bool(a["is_holiday"][d])))
            cols["day_ahead_w"].append(series[o:o + L])
            cols["hour_ahead_w"].append(series[o:o + hour_ahead_steps])
            cols["household"].append(a["household"][d])
    if not cols["load_w"]:
        raise DataError("no household has two consecutive days for a forecast window")
    return ArrayDataset({k: np.asarray(v, np.int32 if k == "household" else np.float32)
                         for k, v in cols.items()}, {"resolution_s": resolution_s})


def check_history(data: ArrayDataset | None, history_days: int, what: str) -> None:
    """A context model (``history_days`` D > 0) needs ``history_w`` [N, D, L] and ``history_mask``
    [N, D] beside ``load_w``; a DataError naming what is missing otherwise (a context model trained
    without its history would learn to ignore it and say nothing)."""
    if data is None or not history_days:
        return
    hist, mask = data.arrays.get("history_w"), data.arrays.get("history_mask")
    if hist is None or mask is None:
        raise DataError(f"{what}: the model takes {history_days} history days but the data has no "
                        "history_w/history_mask (profile shards or a user's import build them: --shards)")
    n, L = data.arrays["load_w"].shape
    if hist.shape != (n, history_days, L) or mask.shape != (n, history_days):
        raise DataError(f"{what}: history_w {hist.shape} / history_mask {mask.shape} do not fit "
                        f"{n} windows of {L} points with {history_days} history days")


def day_contexts(days_w: np.ndarray, history_days: int) -> ArrayDataset:
    """Rows of ``days_w`` [N, L] taken as consecutive days of one meter: windows = days D..N-1,
    each with the D days before it (``history_w`` [N-D, D, L], oldest first; ``history_mask``
    all 1). For tests and benchmarks of the context model on plain day arrays."""
    days_w = np.asarray(days_w, np.float32)
    D = int(history_days)
    if len(days_w) <= D:
        raise DataError(f"{len(days_w)} days leave no window after {D} history days")
    n = len(days_w) - D
    hist = np.stack([days_w[k:k + n] for k in range(D)], 1) if D else np.zeros((n, 0, days_w.shape[1]), np.float32)
    return ArrayDataset({"load_w": days_w[D:], "history_w": hist, "history_mask": np.ones((n, D), np.float32)})


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
