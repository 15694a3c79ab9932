"""``unimeter signal quality|fill|report``: the signal layer on CSV files.

    unimeter signal quality meter.csv --sample-period-s 60          # JSON quality summary
    unimeter signal fill meter.csv -o filled.csv --method auto --counter-column import_wh
    unimeter signal fill --list                                     # the filler registry
    unimeter signal report sessions.csv --home "Home 2" --tz Europe/Copenhagen

Meter CSV: a header with ``ts_s`` and ``power_w`` (empty, ``nan`` or ``NaN`` = missing), optionally
a cumulative counter column. Sessions CSV: ``appliance,start_s,end_s`` (and optionally ``home_id``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge.signal.errors import SignalError


class CsvError(SignalError, ValueError):
    pass


def _float(cell: str) -> float:
    cell = cell.strip()
    return math.nan if cell == "" or cell.lower() in ("nan", "null", "none") else float(cell)


def read_columns(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise CsvError(f"{path}: missing column(s) {missing}; header is {header}")
            cols: dict[str, list[float]] = {c: [] for c in header}
            for line, row in enumerate(reader, start=2):
                for c in header:
                    try:
                        cols[c].append(_float(row[c] or ""))
                    except ValueError as e:
                        raise CsvError(f"{path}:{line}: column {c}: {e}") from e
    except OSError as e:
        raise CsvError(f"cannot read {path}: {e}") from e
    return {c: np.asarray(v) for c, v in cols.items()}


def _quality(args: argparse.Namespace) -> int:
    from edge.signal.quality import quality_summary

    cols = read_columns(args.csv, ("ts_s", "power_w"))
    summary = quality_summary(args.meter_id or args.csv.stem, cols["ts_s"], cols["power_w"],
                              args.sample_period_s, epsilon_w=args.epsilon_w)
    print(json.dumps(summary, indent=None if args.compact else 2))
    return 0


def _fill(args: argparse.Namespace) -> int:
    from edge.signal.gapfill import FILLERS, fill

    if args.list:
        for name, spec in FILLERS.items():
            print(f"{name:10s} {spec.summary}")
        print(f"{'auto':10s} chooses by gap length and knowledge; honours energy counters")
        return 0
    if args.csv is None or args.output is None:
        raise CsvError("fill needs an input CSV and -o OUTPUT")
    if args.output.resolve() == args.csv.resolve():
        raise CsvError("refusing to overwrite the input file; choose another -o")
    need = ("ts_s", "power_w") + ((args.counter_column,) if args.counter_column else ())
    cols = read_columns(args.csv, need)
    missing = ~np.isfinite(cols["power_w"])
    options = {}
    if args.counter_column:
        if args.method != "auto":
            raise CsvError("--counter-column needs --method auto")
        options["counter_wh"] = cols[args.counter_column]
    filled = fill(args.method, cols["power_w"], missing, cols["ts_s"], **options)
    fd, tmp = tempfile.mkstemp(dir=args.output.parent or ".", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts_s", "power_w", "filled"])
        for t, p, m in zip(cols["ts_s"], filled, missing, strict=True):
            w.writerow([repr(float(t)), f"{p:.6g}", int(m)])
    os.replace(tmp, args.output)
    print(f"filled {int(missing.sum())} of {missing.size} samples with {args.method} -> {args.output}",
          file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from edge.signal.nilm.normfilter import Session
    from edge.signal.reports import home_report

    try:
        with open(args.csv, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise CsvError(f"cannot read {args.csv}: {e}") from e
    try:
        sessions = [Session(r["appliance"], float(r["start_s"]), float(r["end_s"]),
                            r.get("home_id", "")) for r in rows]
    except (KeyError, ValueError) as e:
        raise CsvError(f"{args.csv}: need appliance,start_s,end_s columns: {e}") from e
    for line in home_report(sessions, args.home, args.tz):
        print(line)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("signal", help="data quality, gap filling and reports on CSV files",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="signal_command", metavar="SUBCOMMAND", required=True)
    q = sub.add_parser("quality", help="quality summary (availability, gaps, activity) as JSON")
    q.add_argument("csv", type=Path)
    q.add_argument("--sample-period-s", type=float, required=True)
    q.add_argument("--meter-id", default=None)
    q.add_argument("--epsilon-w", type=float, default=None, help="activity threshold (default: robust)")
    q.add_argument("--compact", action="store_true")
    q.set_defaults(func=_quality)
    f = sub.add_parser("fill", help="fill missing power samples")
    f.add_argument("csv", type=Path, nargs="?")
    f.add_argument("-o", "--output", type=Path)
    f.add_argument("--method", default="auto", help="auto or a filler name (see --list)")
    f.add_argument("--counter-column", default=None, help="cumulative Wh column to honour")
    f.add_argument("--list", action="store_true", help="list the fillers and exit")
    f.set_defaults(func=_fill)
    r = sub.add_parser("report", help="natural-language report of a sessions CSV")
    r.add_argument("csv", type=Path)
    r.add_argument("--home", default="Home 1")
    r.add_argument("--tz", default="UTC")
    r.set_defaults(func=_report)
