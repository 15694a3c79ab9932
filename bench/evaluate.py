"""The committed evaluation: the unified model against the task baselines on a simulated fleet.

    python bench/evaluate.py                 # the committed run (200 households, D = 7)
    python bench/evaluate.py --tiny --name evaluation_smoke   # a smoke run in a few minutes
    python bench/evaluate.py --history-days 0 --tasks forecast,imputation,anomaly,nilm  # the one-day model

Writes bench/results/<name>.json, <name>.md (with this exact command) and <name>_*.png. All
options are those of ``unimeter train evaluate`` (trainer/evaluation/cli.py). With D > 0 (the
default, 7 days of context) the profile tasks' unified model is scored as the product ships it: the
student distilled from the fine-tuned teacher, exported by ``export.bundle_writer.write_bundle``
(int8 ONNX) and run through onnxruntime; ``unimeter train evaluate`` (the trainer layer, which may
not import the export layer) scores the student in PyTorch instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# a source checkout first, before this directory (whose export.py would shadow the export package)
sys.path.insert(0, str(ROOT))

from trainer.evaluation import cli as ev  # noqa: E402

# The committed run's settings (1783 s of wall time at load ~4 on a shared 2-core machine): the
# profile tasks (NILM is measured at the gateway's rate by bench/nilm.py); the no-MoE / no-IB /
# no-context ablations of the context model are bench/ablation.py's.
COMMITTED = dict(households=200, days=60, tasks="forecast,imputation,anomaly", no_ablations=True)


def export_students(students: dict[str, Path], out_dir: Path) -> Path:
    """The evaluation's exporter: the students as the product's bundle (int8 ONNX, no TFLite)."""
    from export.bundle_writer import BundleConfig, write_bundle

    return write_bundle(students, out_dir, model_version="evaluation", overwrite=True,
                        cfg=BundleConfig(include_tflite=False, include_fp32=False),
                        notes="bench/evaluate.py student")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="bench/evaluate.py", description=__doc__.splitlines()[0])
    ev.add_arguments(parser)
    parser.set_defaults(out_dir=os.path.relpath(ROOT / "bench" / "results"), **COMMITTED)
    args = parser.parse_args(argv)
    args.command_line = "python bench/evaluate.py " + shlex.join(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return ev.run_reporting_errors(args, "bench/evaluate.py", export_students)


if __name__ == "__main__":
    sys.exit(main())
