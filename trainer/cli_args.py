"""Options the training commands share (data source, output, seed): argparse only, so that
registering the commands imports nothing heavy."""

from __future__ import annotations

import argparse


def data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (one source)")
    g.add_argument("--sim-households", type=int, default=0, help="simulate this many households")
    g.add_argument("--sim-days", type=int, default=30)
    g.add_argument("--sim-seed", type=int, default=0)
    g.add_argument("--resolution-s", type=int, default=1800,
                   help="simulator: 1800 for daily 30-min profiles; smaller: high-rate windows of --seq-len points")
    g.add_argument("--profiles-npy", help="a .npy of one meter's days [N, L] in W, in time order")
    g.add_argument("--shards", help="a Parquet dataset directory (edge.data.shards: unimeter import-data or "
                   "simulate): daily profiles of every meter in it (L and resolution from its manifest), or "
                   "its NILM windows ('train' split trains, 'val' validates)")
    g.add_argument("--val-fraction", type=float, default=0.2,
                   help="simulator: households held out for validation; --profiles-npy: the latest share of days")
    g.add_argument("--val-days", type=int, help="--shards profiles: each meter's latest days (before any test "
                   "days) that validate (default: n/8, 7..28)")
    g.add_argument("--test-days", type=int, default=0, help="--shards profiles: each meter's latest days left "
                   "out of training and validation (as 'train all' keeps them for its report)")
    g.add_argument("--windows-per-day", type=int, help="--shards profiles: day-long windows starting every "
                   "L/N points (default: as many as keep the set under 100,000 windows, at most one per point)")


def common_arguments(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--out", default=out_default, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true")
