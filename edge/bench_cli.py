"""``unimeter bench NAME``: run one of the benchmark scripts under ``bench/`` (source checkout).

Each benchmark runs in its own Python process (``sys.executable bench/NAME.py ARGS``): several of
them load torch and the trainer, which the edge layer never loads into its own process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def available() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_"))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="run a benchmark from bench/ (writes JSON and a markdown table to bench/results/)",
        description="Run bench/NAME.py in its own process; the remaining arguments are passed to it. "
        f"Available here: {', '.join(available()) or 'none (not a source checkout)'}.",
    )
    p.add_argument("name", help="benchmark name, e.g. simulate, gapfill, nilm, bridge, export, agent")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    script = BENCH_DIR / f"{args.name}.py"
    if not script.is_file():
        print(f"unimeter bench: no benchmark {args.name!r}; available: {available()}", file=sys.stderr)
        return 2
    return subprocess.run([sys.executable, str(script), *args.bench_args], check=False).returncode
