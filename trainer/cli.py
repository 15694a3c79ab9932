"""``unimeter train pretrain|finetune|evaluate|distill`` (found through the unimeter.cli entry point).

torch is imported only inside the handlers, so ``unimeter --help`` works without it. Every
training command also runs under ``torchrun --nproc_per_node=N --no-python unimeter train ...``
(DistributedDataParallel; gloo on CPU, nccl on GPU).

Examples:
    unimeter train pretrain --sim-households 200 --sim-days 60 --out runs/pretrain
    unimeter train pretrain --model table1 --seq-len 240 --n-patches 24 --resolution-s 60 \\
        --sim-households 50 --sim-days 4 --out runs/pretrain_nilm      # high-rate, for NILM
    unimeter train finetune --task forecast --pretrained runs/pretrain/pretrain.pt --out runs/ft
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from edge.task_io import TASKS
from trainer.cli_args import common_arguments, data_arguments


def register(subparsers: argparse._SubParsersAction, groups=None) -> None:
    """``unimeter train ...``; the group is opened in ``groups`` (``edge.cli.CommandGroups``) so
    export/ can add ``train all``."""
    train = subparsers.add_parser("train", help="pre-train, fine-tune, evaluate and distil the model")
    sub = train.add_subparsers(dest="train_command", metavar="TRAIN_COMMAND", required=True)
    if groups is not None:
        groups.open("train", sub)

    p = sub.add_parser("pretrain", help="self-supervised pre-training (seed 000 Alg. 2)")
    data_arguments(p)
    p.add_argument("--model", default="table1", help="named config: table1, teacher, teacher_large, tiny")
    p.add_argument("--seq-len", type=int, default=48, help="points per window (L)")
    p.add_argument("--n-patches", type=int, default=12, help="patches per window (P)")
    p.add_argument("--model-json", help="JSON object of ModelConfig overrides")
    p.add_argument("--history-days", type=int, default=0,
                   help="D: days of the meter's history the profile model sees beside its window (0: the "
                        "one-day model; 7: the context model, needs --shards profiles)")
    p.add_argument("--epochs", type=int, help="default: from the data size (about 2000 steps)")
    p.add_argument("--batch-size", type=int, help="default: from the data size (8..64)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--mask-ratio", type=float, default=0.4)
    p.add_argument("--noise-std", type=float, default=0.1)
    p.add_argument("--no-resume", action="store_true", help="start over even if last.pt exists")
    common_arguments(p, "runs/pretrain")
    p.set_defaults(func=_run_pretrain)

    f = sub.add_parser("finetune", help="fine-tune a pre-trained model for one task (Alg. 1)")
    data_arguments(f)
    f.add_argument("--task", choices=TASKS, required=True)
    f.add_argument("--pretrained", required=True, help="checkpoint written by 'train pretrain'")
    f.add_argument("--epochs", type=int, help="default: from the data size (about 1000 steps)")
    f.add_argument("--batch-size", type=int, help="default: from the data size (8..64)")
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--regularizer", choices=("none", "l2sp", "frozen"), default="l2sp")
    f.add_argument("--reg-lambda", type=float, default=1e-3)
    f.add_argument("--patience", type=int, help="epochs without validation gain before stopping "
                   "(default: from the data size, at least 3)")
    f.add_argument("--no-resume", action="store_true", help="start over even if <task>_last.pt exists")
    common_arguments(f, "runs/finetune")
    f.set_defaults(func=_run_finetune)

    for name, help_text in (("evaluate", "unified model against task baselines on held-out households"),
                            ("distill", "distil a teacher into the Pi-sized student")):
        _delegate(sub, name, help_text)


def _delegate(sub, name: str, help_text: str) -> None:
    """``train evaluate`` / ``train distill`` live in their own modules, imported lazily."""
    p = sub.add_parser(name, help=help_text)
    module_name = {"distill": "trainer.distill_cli", "evaluate": "trainer.evaluation.cli"}[name]
    try:
        module = importlib.import_module(module_name)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    except (ImportError, AttributeError) as e:
        error = e

        def unavailable(_args: argparse.Namespace) -> int:
            print(f"unimeter train {name}: {module_name} is not available ({error})", file=sys.stderr)
            return 2
        p.set_defaults(func=unavailable)


# ---------------------------------------------------------------------------------------------
# Handlers (torch imported here only)


def _run_pretrain(args: argparse.Namespace) -> int:
    from trainer.cli_data import datasets, history_days, schedule_for
    from trainer.model import ModelConfig
    from trainer.pretrain import PretrainConfig, pretrain

    overrides = json.loads(args.model_json) if args.model_json else {}
    overrides = {"history_days": args.history_days, **overrides}
    model_cfg = ModelConfig.named(args.model, seq_len=args.seq_len, n_patches=args.n_patches, **overrides)
    train, val = datasets(args, "pretrain", model_cfg.seq_len, history_days(model_cfg))
    batch, epochs, _, max_steps = schedule_for(args, "pretrain", len(train), 2000, early_stop=False)
    cfg = PretrainConfig(model=model_cfg, out_dir=args.out, epochs=epochs,
                         batch_size=batch, lr=args.lr, lr_schedule=args.lr_schedule,
                         mask_ratio=args.mask_ratio, noise_std=args.noise_std, seed=args.seed,
                         max_steps=max_steps, resume=not args.no_resume,
                         progress=not args.no_progress, threads=args.threads)
    path = pretrain(cfg, train, val)
    print(path)
    return 0


def _run_finetune(args: argparse.Namespace) -> int:
    from trainer.checkpoint import load_checkpoint
    from trainer.cli_data import datasets, history_days, schedule_for
    from trainer.finetune import FinetuneConfig, finetune
    from trainer.model import ModelConfig

    ckpt = load_checkpoint(args.pretrained)
    model_cfg = ModelConfig.from_dict(ckpt["model_config"])
    train, val = datasets(args, args.task, model_cfg.seq_len, history_days(model_cfg))
    batch, epochs, patience, max_steps = schedule_for(args, f"fine-tune {args.task}", len(train), 1000)
    cfg = FinetuneConfig(task=args.task, out_dir=args.out, epochs=epochs,
                         batch_size=batch, lr=args.lr, regularizer=args.regularizer,
                         reg_lambda=args.reg_lambda, patience=patience, seed=args.seed,
                         max_steps=max_steps, progress=not args.no_progress, resume=not args.no_resume,
                         threads=args.threads, appliances=list(train.meta.get("appliances", [])))
    path = finetune(cfg, Path(args.pretrained), train, val)
    print(path)
    return 0
