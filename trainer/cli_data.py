"""The training commands' data and schedule: windows from simulated households, a .npy file or
Parquet shards, the task sets built on them, and the batch size / epochs / patience chosen from
the data size. Imported by the command handlers only.

Validation: simulated households are split by household; a user's days (``--shards`` profiles,
``--profiles-npy``) by time, the latest days validate (``trainer.profile_sets``), so nothing is
validated on the past with the future in training. Every choice made from the data is said on
stderr (``unimeter train <command>: ...``).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from edge.data.realdata import meter_profiles_from_shards
from edge.data.shards import read_manifest
from edge.data.userdata import attack_config, time_split
from edge.errors import ConfigError
from edge.features import CovariateSpec
from edge.sim import simulate_fleet
from trainer import data as d
from trainer import profile_sets as S
from trainer.schedule import adapt_schedule

PROFILE_L = (24, 48, 96)


def say(args: argparse.Namespace, text: str) -> None:
    """A choice the command made from the data, on stderr (the log of a stand-alone run)."""
    print(f"unimeter train {getattr(args, 'train_command', '')}: {text}", file=sys.stderr, flush=True)


def history_days(model_cfg) -> int:
    """Days of context a model takes (0: the one-day model)."""
    return int(getattr(model_cfg, "history_days", 0) or 0)


def datasets(args: argparse.Namespace, task: str, seq_len: int, history: int = 0):
    """(train, val) ArrayDatasets of ``task`` (or "pretrain") from the chosen source; val may be None."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if args.shards and task != "nilm" and "profiles" in read_manifest(args.shards):
        return _from_profile_shards(args, task, seq_len, history)
    if args.profiles_npy:
        train, val = _from_npy(args, seq_len)
    elif args.shards:
        train = d.nilm_from_shards(args.shards, "train", rank, world)
        try:
            val = d.nilm_from_shards(args.shards, "val")
        except d.DataError:
            val = None
    else:
        train, val = _simulated(args, seq_len)
    return _task_build(task, train, args.seed), (_task_build(task, val, args.seed + 1) if val is not None else None)


def load_windows(args: argparse.Namespace, seq_len: int):
    """(train, val) pre-training windows (``load_w``) of the chosen source."""
    return datasets(args, "pretrain", seq_len)


def task_sets(args: argparse.Namespace, task: str, seq_len: int, history: int = 0):
    """(train, val) of a task from the chosen source."""
    return datasets(args, task, seq_len, history)


def _from_profile_shards(args: argparse.Namespace, task: str, seq_len: int, history: int):
    """Every meter of a profile dataset: day-long windows sliding over its earlier days, its
    latest days validating (and ``--test-days`` left out)."""
    manifest = read_manifest(args.shards)
    profiles = meter_profiles_from_shards(args.shards)
    L = profiles[0].steps_per_day
    if seq_len != L:
        raise d.DataError(f"{args.shards} holds days of {L} points ({profiles[0].resolution_s} s); the model "
                          f"takes {seq_len}: pretrain with --seq-len {L} or re-import at the model's resolution")
    splits = [time_split(len(p.dates), args.test_days, args.val_days) for p in profiles]
    for p, split in zip(profiles, splits, strict=True):
        say(args, f"{p.household_id}: time-ordered split {split.describe(p.dates)}")
    spec = CovariateSpec(tz=manifest.get("tz"), country=manifest.get("country"), subdiv=manifest.get("subdiv"),
                         weather="temperature_c" if all(p.has_temperature for p in profiles) else None)
    stride = S.stride_for(sum(s.train[1] for s in splits), L, args.windows_per_day)
    say(args, f"windows: one day ({L} points at {profiles[0].resolution_s} s) starting every {stride} points")
    out = []
    for i, part in enumerate(("train", "val")):
        ds = S.task_set(task, S.meter_parts(profiles, splits, part), spec, stride, args.seed + i, history)
        ds.meta["source"] = str(args.shards)
        out.append(ds)
    return out[0], out[1]


def _from_npy(args: argparse.Namespace, seq_len: int):
    """One meter's days [N, L] in time order: the latest ``--val-fraction`` of them validate."""
    rows = np.load(args.profiles_npy).astype("float32")
    if rows.ndim != 2 or rows.shape[1] != seq_len:
        raise d.DataError(f"{args.profiles_npy}: windows of shape {rows.shape}; the model takes [N, {seq_len}]")
    n_val = int(round(len(rows) * args.val_fraction))
    ds = d.ArrayDataset({"load_w": rows}, {"source": str(args.profiles_npy), "resolution_s": 86400 // seq_len}
                        if seq_len in PROFILE_L else {"source": str(args.profiles_npy)})
    say(args, f"{args.profiles_npy}: the latest {n_val} of {len(rows)} days validate (time-ordered)")
    order = np.arange(len(rows))
    return ds.subset(order[:len(rows) - n_val]), (ds.subset(order[len(rows) - n_val:]) if n_val else None)


def _simulated(args: argparse.Namespace, seq_len: int):
    """Simulated households, split by household."""
    if args.sim_households <= 0:
        raise ConfigError("give a data source: --sim-households N, --profiles-npy or --shards")
    if args.resolution_s >= 1800:
        ds = d.simulate_profiles(args.sim_households, args.sim_days, args.sim_seed)
    else:
        ds = d.high_rate_windows(simulate_fleet(args.sim_households, args.sim_days,
                                                resolution_s=args.resolution_s, seed=args.sim_seed),
                                 seq_len)
        ds.meta["resolution_s"] = args.resolution_s
    if ds.arrays["load_w"].shape[1] != seq_len:
        raise d.DataError(f"windows have {ds.arrays['load_w'].shape[1]} points, the model expects {seq_len}")
    if args.val_fraction <= 0 or args.sim_households < 2:
        return ds, None
    train, val = d.split_by_household(ds, (1 - args.val_fraction, args.val_fraction), args.seed)
    for part in (train, val):
        part.meta.update(ds.meta)
    return train, (val if len(val) else None)


def _task_build(task: str, ds, seed: int):
    """A task's set from day rows (simulator, .npy) or NILM windows."""
    if task == "pretrain":
        return ds
    if task == "nilm":
        if "appliance_w" not in ds.arrays:
            raise ConfigError("nilm needs high-rate simulated windows: --sim-households N --resolution-s 60")
        return ds
    if task == "imputation":
        out = d.imputation_set(ds.arrays["load_w"], seed=seed)
    elif task == "anomaly":
        L = ds.arrays["load_w"].shape[1]
        out = d.anomaly_set(ds.arrays["load_w"], seed=seed, config=attack_config(L) if L in PROFILE_L else None)
    elif "day" not in ds.arrays:
        raise d.DataError("forecasting needs dated days: import the files (unimeter import-data) and train "
                          "with --shards")
    else:
        out = d.forecast_set(ds)
    out.meta.update({k: v for k, v in ds.meta.items() if k not in out.meta})
    return out


def schedule_for(args: argparse.Namespace, stage: str, n_windows: int, target_steps: int, early_stop: bool = True):
    """(batch size, epochs, patience, max_steps): what the command line gives, the rest from the
    data size (``trainer.schedule.adapt_schedule``), said on stderr."""
    sched = adapt_schedule(n_windows, target_steps)
    batch = args.batch_size or sched.batch_size
    epochs = args.epochs or sched.epochs
    patience = getattr(args, "patience", None) or sched.patience
    max_steps = args.max_steps or (None if args.epochs else sched.max_steps)
    chosen = [name for name, v in (("batch", args.batch_size), ("epochs", args.epochs)) if not v]
    if chosen:
        say(args, sched.describe(stage, early_stop) + f" ({', '.join(chosen)} from the data size)")
    return batch, epochs, patience, max_steps
