"""``unimeter train evaluate`` and ``bench/evaluate.py``: options, config, handler.

Building the parser imports no torch (the ``unimeter`` plugin rule); the handler imports the
run module, which does.

    unimeter train evaluate --tiny --name evaluation_smoke     # a smoke run in a few minutes
    python -m trainer.evaluation --households 200 --days 60    # the committed run's settings
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from edge.errors import UnimeterError
from trainer.evaluation.config import TASKS, EvalConfig
from trainer.evaluation.report import render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``unimeter train evaluate`` (defaults: the committed 200-household run)."""
    d = EvalConfig()
    parser.add_argument("--households", type=int, default=d.n_households, help="simulated households")
    parser.add_argument("--days", type=int, default=d.days, help="days per household (30-min profiles)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--tasks", default=",".join(d.tasks), help=f"comma list of {','.join(TASKS)}")
    parser.add_argument("--methods", default="", help="comma list of method names (default: all)")
    parser.add_argument("--missing-rates", default=",".join(str(r) for r in d.missing_rates))
    parser.add_argument("--model", default=d.unified_model, help="unified model config name (table1, tiny, ...)")
    parser.add_argument("--pretrain-epochs", type=int, default=d.pretrain_epochs)
    parser.add_argument("--finetune-epochs", type=int, default=d.finetune_epochs)
    parser.add_argument("--baseline-epochs", type=int, default=d.baseline_epochs)
    parser.add_argument("--max-train-windows", type=int, default=d.max_train_windows)
    parser.add_argument("--max-eval-windows", type=int, default=d.max_eval_windows)
    parser.add_argument("--imputation-test-days", type=int, default=d.max_imputation_test_days)
    parser.add_argument("--epoch-windows", type=int, default=d.epoch_windows,
                        help="learned baselines: windows per epoch")
    parser.add_argument("--pretrain-profiles", type=int, default=d.pretrain_profiles)
    parser.add_argument("--finetune-windows", type=int, default=d.finetune_windows)
    parser.add_argument("--nilm-households", type=int, default=d.nilm_households)
    parser.add_argument("--nilm-days", type=int, default=d.nilm_days)
    parser.add_argument("--no-ablations", action="store_true", help="skip the no-MoE / no-IB variants")
    parser.add_argument("--history-days", type=int, default=d.history_days,
                        help="D: days of history the unified model sees (0: the one-day model)")
    parser.add_argument("--distill-epochs", type=int, default=d.distill_epochs)
    parser.add_argument("--saits-epochs", type=int, default=d.saits_epochs)
    parser.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")
    parser.add_argument("--tiny", action="store_true", help="a tiny fleet and budgets (smoke run)")
    parser.add_argument("--out-dir", default=d.out_dir)
    parser.add_argument("--name", default=d.name, help="output file stem")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--render-only", action="store_true",
                        help="only rewrite the markdown and plots from <out-dir>/<name>.json")


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    def csv(s: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in s.split(",") if x.strip())

    values = dict(n_households=args.households, days=args.days, seed=args.seed, tasks=csv(args.tasks),
                  methods=csv(args.methods), missing_rates=tuple(float(r) for r in csv(args.missing_rates)),
                  unified_model=args.model, pretrain_epochs=args.pretrain_epochs,
                  finetune_epochs=args.finetune_epochs, baseline_epochs=args.baseline_epochs,
                  max_train_windows=args.max_train_windows, max_eval_windows=args.max_eval_windows,
                  max_imputation_test_days=args.imputation_test_days, epoch_windows=args.epoch_windows,
                  pretrain_profiles=args.pretrain_profiles, finetune_windows=args.finetune_windows,
                  nilm_households=args.nilm_households, nilm_days=args.nilm_days,
                  ablations=not args.no_ablations, history_days=args.history_days,
                  distill_epochs=args.distill_epochs, saits_epochs=args.saits_epochs, threads=args.threads,
                  out_dir=args.out_dir,
                  name=args.name, progress=not args.no_progress)
    if args.tiny:
        defaults = asdict(EvalConfig())
        changed = {k: v for k, v in values.items() if v != defaults[k]}
        return EvalConfig.tiny(**changed)
    return EvalConfig(**values)


def run(args: argparse.Namespace, exporter=None) -> int:
    """Handler of ``unimeter train evaluate``; an ``EvaluationError`` reaches ``edge.cli`` (exit 2).
    ``exporter``: see ``trainer.evaluation.run.evaluate`` (``bench/evaluate.py`` passes the export
    layer's, so the context model's student is scored as exported int8 ONNX)."""
    cfg = config_from_args(args)
    if getattr(args, "render_only", False):
        paths = render(Path(cfg.out_dir) / f"{cfg.name}.json")
        print(f"rewrote {paths['md']} and its plots")
        return 0
    from trainer.evaluation.run import evaluate  # torch: only when a run is asked for

    command = getattr(args, "command_line", None) or "unimeter " + shlex.join(sys.argv[1:])
    results = evaluate(cfg, command=command, exporter=exporter)
    n_pass = sum(t["pass"] for t in results["targets"])
    print(f"wrote {cfg.out_dir}/{cfg.name}.json and .md: {n_pass}/{len(results['targets'])} target checks pass")
    return 0


def run_reporting_errors(args: argparse.Namespace, prog: str, exporter=None) -> int:
    """``run`` for entry points outside ``edge.cli``: an error of ours is one line and exit 2/1."""
    try:
        return run(args, exporter)
    except UnimeterError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.evaluation", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = "python -m trainer.evaluation " + shlex.join(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_reporting_errors(args, "python -m trainer.evaluation")
