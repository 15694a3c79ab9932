"""The committed evaluation: the unified model against the task baselines on a simulated fleet.

    python bench/evaluate.py                 # the committed run (200 households), ~25 min on 2 cores
    python bench/evaluate.py --tiny --name evaluation_smoke   # a smoke run in about a minute
    unimeter bench evaluate [ARGS]           # the same through the CLI

Writes bench/results/<name>.json, <name>.md (with this exact command) and <name>_*.png. All
options are those of ``unimeter train evaluate`` (trainer/evaluation/cli.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from trainer.evaluation import cli as ev  # noqa: E402

# The committed run's settings (budgeted to ~25 min of wall time on a shared 2-core machine).
COMMITTED = dict(households=200, days=60)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="bench/evaluate.py", description=__doc__.splitlines()[0])
    ev.add_arguments(parser)
    parser.set_defaults(out_dir=os.path.relpath(ROOT / "bench" / "results"), **COMMITTED)
    args = parser.parse_args(argv)
    args.command_line = "python bench/evaluate.py " + shlex.join(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return ev.run_reporting_errors(args, "bench/evaluate.py")


if __name__ == "__main__":
    sys.exit(main())
