"""The training commands' data: windows from simulated households, a .npy file or Parquet shards,
split by household, and the task sets built on them (``trainer.data``). Imported by the command
handlers only."""

from __future__ import annotations

import argparse
import os

import numpy as np

from edge.errors import ConfigError
from edge.sim import simulate_fleet
from trainer import data as d


def load_windows(args: argparse.Namespace, seq_len: int):
    """(train, val, meta) ArrayDatasets of windows with the household split applied."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if args.profiles_npy:
        ds = d.ArrayDataset({"load_w": np.load(args.profiles_npy).astype("float32")})
        n_val = int(len(ds) * args.val_fraction)
        order = np.random.default_rng(args.seed).permutation(len(ds))
        return ds.subset(order[n_val:]), (ds.subset(order[:n_val]) if n_val else None)
    if args.shards:
        read = d.profiles_from_shards if args.resolution_s >= 1800 else d.nilm_from_shards
        train = read(args.shards, "train", rank, world)
        try:
            val = read(args.shards, "val")
        except d.DataError:
            val = None
        return train, val
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


def task_sets(args: argparse.Namespace, task: str, seq_len: int):
    train, val = load_windows(args, seq_len)
    build = {
        "imputation": lambda ds, s: d.imputation_set(ds.arrays["load_w"], seed=s),
        "anomaly": lambda ds, s: d.anomaly_set(ds.arrays["load_w"], seed=s),
        "forecast": lambda ds, s: d.forecast_set(ds),
        "nilm": lambda ds, s: ds,
    }[task]
    if task == "nilm" and "appliance_w" not in train.arrays:
        raise ConfigError("nilm needs high-rate simulated windows: --sim-households N --resolution-s 60")
    return build(train, args.seed), (build(val, args.seed + 1) if val is not None else None)
