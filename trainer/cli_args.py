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
                   help="1800: daily 30-min profiles; smaller: high-rate windows of --seq-len points")
    g.add_argument("--profiles-npy", help="a .npy of windows [N, L] in W (pre-training)")
    g.add_argument("--shards", help="a Parquet dataset directory (edge.data.shards): its 'train' "
                   "split trains, 'val' validates; profiles at 1800 s, NILM windows otherwise")
    g.add_argument("--val-fraction", type=float, default=0.2, help="households held out for validation")


def common_arguments(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--out", default=out_default, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true")
