"""``unimeter import-data``: real meter files (CER, LCL, REDD, UK-DALE, PJM, Home Assistant
history, CSV/Parquet) -> shards."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMMAND = "import-data"


def register(subparsers: argparse._SubParsersAction) -> None:
    if COMMAND in subparsers.choices:  # registered already (listed directly and via edge.sim.cli)
        return
    p = subparsers.add_parser(
        COMMAND,
        help="convert real meter files into Parquet profile (and NILM) shards",
        description="Load real smart-meter files with edge.data.loaders and write daily 30-min "
        "profiles (and NILM windows for REDD/UK-DALE houses) as shards split by meter, like "
        "'unimeter simulate' does for simulated households.",
    )
    p.add_argument("format", choices=["cer", "lcl", "redd", "ukdale", "pjm", "generic", "homeassistant"])
    p.add_argument("paths", nargs="+", type=Path, help="files (or REDD/UK-DALE house directories)")
    p.add_argument("--out", required=True, type=Path, help="output dataset directory")
    p.add_argument("--tz", default=None, help="local time zone for the daily profiles, e.g. Europe/London")
    p.add_argument("--split", default="train=0.8,val=0.1,test=0.1", help="split fractions by meter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nilm-window", type=int, default=0, metavar="SAMPLES",
                   help="also write NILM windows of this length from houses with appliance channels")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.data.loaders import LoaderError, load

    try:
        from edge.data.realdata import write_series
    except ImportError as e:
        print(f"unimeter {COMMAND}: needs pyarrow ({e}); pip install 'unimeter[data]'", file=sys.stderr)
        return 2
    series = []
    try:
        for path in args.paths:
            series += load(path, args.format)
    except LoaderError as e:
        print(f"unimeter {COMMAND}: {e}", file=sys.stderr)
        return 2
    fractions = {k.strip(): float(v) for k, _, v in (part.partition("=") for part in args.split.split(","))}
    manifest = write_series(series, args.out, [s.meter_id for s in series], fractions, args.seed,
                            args.tz, args.nilm_window, meta={"inputs": [str(p) for p in args.paths]})
    rows = sum(s["rows"] for s in manifest.get("profiles", {}).get("splits", {}).values())
    windows = sum(s["rows"] for s in manifest.get("nilm", {}).get("splits", {}).values())
    if rows == 0:
        print(f"unimeter {COMMAND}: warning: no day had an observed half-hour", file=sys.stderr)
    print(json.dumps({"out": str(args.out), "meters": len(series), "profiles": rows, "nilm_windows": windows}))
    return 0
