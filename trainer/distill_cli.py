"""``unimeter train distill``: arguments and handler, kept apart from ``trainer.distill`` so that
registering the command (every ``unimeter`` start, the Pi's agent included) never imports torch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainer.cli_args import data_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    data_arguments(p)
    p.add_argument("--teacher", required=True, help="fine-tuned task checkpoint (the teacher)")
    p.add_argument("--student-json", help='ModelConfig overrides for the student, e.g. \'{"n_experts": 32}\'')
    p.add_argument("--epochs", type=int, help="default: from the data size (about 1000 steps)")
    p.add_argument("--batch-size", type=int, help="default: from the data size (8..64)")
    p.add_argument("--lr", type=float, help="default: 5e-4 for a student started from the teacher, else 2e-3")
    p.add_argument("--w-kd", type=float, default=1.0, help="weight of the head distillation terms")
    p.add_argument("--w-z", type=float, default=0.0, help="weight of the z matching term (0: off)")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--init", choices=("random", "teacher"), default="random",
                   help="teacher: a student as wide as the teacher starts from its layers and most used experts")
    p.add_argument("--select-on", choices=("loss", "metric"), default="loss",
                   help="keep the epoch with the best validation loss or task metric (imputation, forecast)")
    p.add_argument("--patience", type=int, help="default: from the data size (at least 3)")
    p.add_argument("--out", default="runs/distill")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--no-resume", action="store_true", help="start over even if <task>_last.pt exists")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from trainer.checkpoint import load_checkpoint
    from trainer.cli_data import datasets, history_days, schedule_for
    from trainer.distill import HEADLINE, DistillConfig, distill
    from trainer.model import ModelConfig

    ckpt = load_checkpoint(args.teacher)
    if ckpt.get("kind") != "task":
        print(f"unimeter train distill: {args.teacher} is not a fine-tuned task checkpoint", flush=True)
        return 2
    model_cfg = ModelConfig.from_dict(ckpt["model_config"])
    train, val = datasets(args, ckpt["task"], model_cfg.seq_len, history_days(model_cfg))
    batch, epochs, patience, max_steps = schedule_for(args, f"distil {ckpt['task']}", len(train), 1000)
    cfg = DistillConfig(out_dir=args.out, epochs=epochs, batch_size=batch, lr=args.lr,
                        w_kd=args.w_kd, w_z=args.w_z, temperature=args.temperature, init=args.init,
                        select_on=args.select_on,
                        patience=patience, seed=args.seed, max_steps=max_steps,
                        threads=args.threads, progress=not args.no_progress, resume=not args.no_resume,
                        student_overrides=json.loads(args.student_json) if args.student_json else {})
    path = distill(args.teacher, None, train, val, cfg)
    report = json.loads((Path(args.out) / f"{ckpt['task']}_distill_report.json").read_text())
    metric, _ = HEADLINE[ckpt["task"]]
    print(f"{ckpt['task']}: {metric} teacher {report['teacher'][metric]:.4g} -> student "
          f"{report['student'][metric]:.4g} ({report['teacher_parameters']} -> "
          f"{report['student_parameters']} parameters)")
    print(path)
    return 0
