"""``unimeter simulate``: simulate a fleet of households and write the dataset shards."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from edge.errors import ConfigError
from edge.sim.household import (
    HouseholdConfig,
    appliance_names,
    fleet_member,
    parse_resolution,
    parse_start,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate N households and write Parquet shards (profiles, NILM windows)",
        description="Simulate a fleet of diverse households (appliance-level, with weather, PV, EV "
        "and heating) and write daily 30-min profiles (and optionally high-rate NILM windows) as "
        "Parquet shards split by household, with manifest.json. Deterministic given --seed.",
    )
    p.add_argument("--households", type=int, default=20, help="number of households (default 20)")
    p.add_argument("--days", type=int, default=28, help="days per household (default 28)")
    p.add_argument("--resolution", default="1min", help="sampling: 1s, 10s, 1min, 15min, 30min (default 1min)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="fleet seed (default 0)")
    p.add_argument("--start", default="2024-01-01", help="first day, UTC (default 2024-01-01)")
    p.add_argument("--tz", default=None,
                   help="households live by this clock incl. daylight saving, e.g. Europe/London (default: UTC)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, max 8)")
    p.add_argument("--split", default="train=0.8,val=0.1,test=0.1",
                   help="split fractions by household (default train=0.8,val=0.1,test=0.1)")
    p.add_argument("--nilm-windows", type=int, default=0, metavar="N",
                   help="also write N random NILM windows per household (default 0: none)")
    p.add_argument("--nilm-window", type=int, default=240, metavar="SAMPLES",
                   help="NILM window length in samples (default 240)")
    p.add_argument("--attack-fraction", type=float, default=0.0,
                   help="fraction of profile days with an injected FDI attack (default 0)")
    p.add_argument("--plot", action="store_true", help="write simulated_week.png: one week of one household, appliances stacked")
    p.set_defaults(func=run)


def _fractions(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError as e:
            raise ConfigError(f"bad --split part {part!r} (use train=0.8,val=0.1,test=0.1)") from e
    return out


def showcase_household(n_households: int, seed: int) -> int:
    """A household worth plotting: many appliances and no EV dominating the scale."""
    for i in range(min(n_households, 20)):
        names = appliance_names(fleet_member(i, seed)[0])
        if len(names) >= 13 and "ev" not in names:
            return i
    return 0


def run(args: argparse.Namespace) -> int:

    try:
        from edge.data.shards import write_fleet
    except ImportError as e:  # pyarrow is in the 'data' extra, not on every gateway
        print(f"unimeter simulate: writing shards needs pyarrow ({e}); pip install 'unimeter[data]'",
              file=sys.stderr)
        return 2

    res = parse_resolution(args.resolution)  # a SimulationError is printed by edge.cli (exit 2)
    parse_start(args.start)
    if args.tz:
        HouseholdConfig(tz=args.tz)  # validates the zone name
    if args.households < 1 or args.days < 1:
        print("unimeter simulate: --households and --days must be >= 1", file=sys.stderr)
        return 2
    workers = args.workers or min(os.cpu_count() or 1, 8)
    t0 = time.perf_counter()
    manifest, trace = write_fleet(
        args.out, args.households, args.days, res, seed=args.seed, start=args.start, workers=workers,
        fractions=_fractions(args.split), nilm_window=args.nilm_window,
        nilm_per_household=args.nilm_windows, attack_fraction=args.attack_fraction,
        keep_trace_of=showcase_household(args.households, args.seed) if args.plot else None, tz=args.tz,
        meta={"source": "simulator", "days": args.days, "resolution_s": res, "start": args.start, "tz": args.tz},
    )
    elapsed = time.perf_counter() - t0
    summary = {"out": str(args.out),
               "profiles": sum(s["rows"] for s in manifest["profiles"]["splits"].values()),
               "seconds": round(elapsed, 1),
               "household_days_per_s": round(args.households * args.days / elapsed, 1)}
    if trace is not None:
        from edge.sim.plot import plot_week

        summary["plot"] = str(plot_week(trace, args.out / "simulated_week.png", days=min(7, args.days)))
    print(json.dumps(summary))
    return 0
