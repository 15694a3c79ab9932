"""``unimeter train all``: its arguments and handler (torch is imported inside the handler only).

    unimeter train all --data house.csv --tz Europe/London --country GB --out my-model/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.data.cli import add_format_options, loader_options
from edge.data.loaders import LOADERS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("A user's own meter files -> import, pretrain, fine-tune every profile task, distil, "
                     "calibrate the anomaly threshold, export an int8 bundle, verify it, and a report of the "
                     "bundle on the held-out latest days against naive baselines (OUT/report.md, .json, .png). "
                     "Every choice is said on stderr and kept in OUT/choices.json.")
    p.add_argument("--data", required=True, nargs="+", type=Path, metavar="FILE",
                   help="the meter files (or one dataset directory written by import-data, with --format shards)")
    p.add_argument("--format", default="generic", choices=sorted([*LOADERS, "shards"]),
                   help="file format (default: generic CSV/Parquet)")
    p.add_argument("--out", required=True, type=Path, help="output directory (bundle/, report.md, data/, ...)")
    add_format_options(p)
    g = p.add_argument_group("training")
    g.add_argument("--labels", type=Path, help="CSV of labelled anomaly intervals (start,end[,meter_id][,kind])")
    g.add_argument("--meter", action="append", default=[], help="train on this meter only (repeatable)")
    g.add_argument("--fleet-checkpoint", type=Path,
                   help="a pretrained checkpoint at the same resolution (e.g. on the simulator) to fine-tune from "
                   "instead of pretraining on the user's days")
    g.add_argument("--tasks", default="imputation,anomaly,forecast", help="comma-separated profile tasks")
    g.add_argument("--preset", default="small", choices=("tiny", "small", "full"),
                   help="model sizes and step budgets (tiny: seconds, for tests; small: minutes; full: hours)")
    g.add_argument("--history-days", type=int, default=None, metavar="D",
                   help="days before each window the model sees (0: the one-day model; 7: a week of context; "
                   "default: 7 when every meter has 28 training days, else 0; said on stderr)")
    g.add_argument("--test-days", type=int, help="latest days held out for the report (default: n/6, 7..28)")
    g.add_argument("--val-days", type=int, help="days before them for validation (default: n/8, 7..28)")
    g.add_argument("--false-alarms-per-month", type=float, default=1.0,
                   help="anomaly false-alarm budget per meter per month the threshold is fitted to")
    g.add_argument("--compare-saits", action="store_true",
                   help="also judge PyPOTS SAITS, trained on the same days, as an imputation baseline (needs pypots, "
                   "in the dev extra)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=1, help="torch threads")
    g.add_argument("--no-tflite", action="store_true", help="leave the TFLite models out of the bundle")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (the stage lines stay)")


def run_train_all_command(args: argparse.Namespace) -> int:
    from export.train_all import TrainAllConfig, run_train_all

    cfg = TrainAllConfig(
        data=list(args.data), out_dir=args.out, format=args.format, tz=args.tz, resolution_s=args.resolution,
        loader_options={} if args.format == "shards" else loader_options(args), country=args.country,
        subdiv=args.subdiv, labels=args.labels, meters=list(args.meter), fleet_checkpoint=args.fleet_checkpoint,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()), preset=args.preset,
        history_days=args.history_days,
        test_days=args.test_days, val_days=args.val_days, target_false_alarms_per_month=args.false_alarms_per_month,
        compare_saits=args.compare_saits,
        seed=args.seed, include_tflite=not args.no_tflite, progress=not args.no_progress, threads=args.threads)
    result = run_train_all(cfg)
    missed = [c["check"] for c in result["checks"] if not c["met"]]
    print(json.dumps({"bundle": result["bundle"], "report": str(args.out / "report.md"),
                      "targets_met": len(result["checks"]) - len(missed), "targets": len(result["checks"]),
                      "missed": missed}))
    return 0
