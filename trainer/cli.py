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
import os
import sys
from pathlib import Path

from edge.task_io import TASKS


def register(subparsers: argparse._SubParsersAction, groups=None) -> None:
    """``unimeter train ...``; the group is opened in ``groups`` (``edge.cli.CommandGroups``) so
    export/ can add ``train all``."""
    train = subparsers.add_parser("train", help="pre-train, fine-tune, evaluate and distil the model")
    sub = train.add_subparsers(dest="train_command", metavar="TRAIN_COMMAND", required=True)
    if groups is not None:
        groups.open("train", sub)

    p = sub.add_parser("pretrain", help="self-supervised pre-training (seed 000 Alg. 2)")
    _data_arguments(p)
    p.add_argument("--model", default="table1", help="named config: table1, teacher, teacher_large, tiny")
    p.add_argument("--seq-len", type=int, default=48, help="points per window (L)")
    p.add_argument("--n-patches", type=int, default=12, help="patches per window (P)")
    p.add_argument("--model-json", help="JSON object of ModelConfig overrides")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--mask-ratio", type=float, default=0.4)
    p.add_argument("--noise-std", type=float, default=0.1)
    p.add_argument("--no-resume", action="store_true", help="start over even if last.pt exists")
    _common_arguments(p, "runs/pretrain")
    p.set_defaults(func=_run_pretrain)

    f = sub.add_parser("finetune", help="fine-tune a pre-trained model for one task (Alg. 1)")
    _data_arguments(f)
    f.add_argument("--task", choices=TASKS, required=True)
    f.add_argument("--pretrained", required=True, help="checkpoint written by 'train pretrain'")
    f.add_argument("--epochs", type=int, default=20)
    f.add_argument("--batch-size", type=int, default=64)
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--regularizer", choices=("none", "l2sp", "frozen"), default="l2sp")
    f.add_argument("--reg-lambda", type=float, default=1e-3)
    f.add_argument("--patience", type=int, default=5)
    f.add_argument("--no-resume", action="store_true", help="start over even if <task>_last.pt exists")
    _common_arguments(f, "runs/finetune")
    f.set_defaults(func=_run_finetune)

    for name, help_text in (("evaluate", "unified model against task baselines on held-out households"),
                            ("distill", "distil a teacher into the Pi-sized student")):
        _delegate(sub, name, help_text)


def _data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (one source)")
    g.add_argument("--sim-households", type=int, default=0, help="simulate this many households")
    g.add_argument("--sim-days", type=int, default=30)
    g.add_argument("--sim-seed", type=int, default=0)
    g.add_argument("--resolution-s", type=int, default=1800,
                   help="1800: daily 30-min profiles; smaller: high-rate windows of --seq-len points")
    g.add_argument("--profiles-npy", help="a .npy of windows [N, L] in W (pre-training)")
    g.add_argument("--shards", help="a Parquet dataset directory (edge.data.shards): its 'train' "
                   "split trains, 'val' validates; profiles at 1800 s, NILM windows otherwise")
    g.add_argument("--val-fraction", type=float, default=0.2, help="households held out for validation")


def _common_arguments(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--out", default=out_default, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true")


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


def _load_windows(args: argparse.Namespace, seq_len: int):
    """(train, val, meta) ArrayDatasets of windows with the household split applied."""
    from trainer import data as d

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if args.profiles_npy:
        import numpy as np

        ds = d.ArrayDataset({"load_w": np.load(args.profiles_npy).astype("float32")})
        n_val = int(len(ds) * args.val_fraction)
        order = np.random.default_rng(args.seed).permutation(len(ds))
        return ds.subset(order[n_val:]), (ds.subset(order[:n_val]) if n_val else None)
    if args.shards:
        read = d.profiles_from_shards if args.resolution_s >= 1800 else d.nilm_from_shards
        train = read(args.shards, "train", rank, world)
        try:
            val = read(args.shards, "val")
        except d.DataError:
            val = None
        return train, val
    if args.sim_households <= 0:
        raise SystemExit("give a data source: --sim-households N, --profiles-npy or --shards")
    if args.resolution_s >= 1800:
        ds = d.simulate_profiles(args.sim_households, args.sim_days, args.sim_seed)
    else:
        from edge.sim import simulate_fleet

        ds = d.high_rate_windows(simulate_fleet(args.sim_households, args.sim_days,
                                                resolution_s=args.resolution_s, seed=args.sim_seed),
                                 seq_len)
        ds.meta["resolution_s"] = args.resolution_s
    if ds.arrays["load_w"].shape[1] != seq_len:
        raise SystemExit(f"windows have {ds.arrays['load_w'].shape[1]} points, the model expects {seq_len}")
    if args.val_fraction <= 0 or args.sim_households < 2:
        return ds, None
    train, val = d.split_by_household(ds, (1 - args.val_fraction, args.val_fraction), args.seed)
    for part in (train, val):
        part.meta.update(ds.meta)
    return train, (val if len(val) else None)


def _run_pretrain(args: argparse.Namespace) -> int:
    from trainer.model import ModelConfig
    from trainer.pretrain import PretrainConfig, pretrain

    overrides = json.loads(args.model_json) if args.model_json else {}
    model_cfg = ModelConfig.named(args.model, seq_len=args.seq_len, n_patches=args.n_patches, **overrides)
    train, val = _load_windows(args, model_cfg.seq_len)
    cfg = PretrainConfig(model=model_cfg, out_dir=args.out, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
                         mask_ratio=args.mask_ratio, noise_std=args.noise_std, seed=args.seed,
                         max_steps=args.max_steps, resume=not args.no_resume,
                         progress=not args.no_progress, threads=args.threads)
    path = pretrain(cfg, train, val)
    print(path)
    return 0


def _task_sets(args: argparse.Namespace, task: str, seq_len: int):
    from trainer import data as d

    train, val = _load_windows(args, seq_len)
    build = {
        "imputation": lambda ds, s: d.imputation_set(ds.arrays["load_w"], seed=s),
        "anomaly": lambda ds, s: d.anomaly_set(ds.arrays["load_w"], seed=s),
        "forecast": lambda ds, s: d.forecast_set(ds),
        "nilm": lambda ds, s: ds,
    }[task]
    if task == "nilm" and "appliance_w" not in train.arrays:
        raise SystemExit("nilm needs high-rate simulated windows: --sim-households N --resolution-s 60")
    return build(train, args.seed), (build(val, args.seed + 1) if val is not None else None)


def _run_finetune(args: argparse.Namespace) -> int:
    from trainer.checkpoint import load_checkpoint
    from trainer.finetune import FinetuneConfig, finetune

    ckpt = load_checkpoint(args.pretrained)
    seq_len = int(ckpt["model_config"]["seq_len"])
    train, val = _task_sets(args, args.task, seq_len)
    cfg = FinetuneConfig(task=args.task, out_dir=args.out, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, regularizer=args.regularizer,
                         reg_lambda=args.reg_lambda, patience=args.patience, seed=args.seed,
                         max_steps=args.max_steps, progress=not args.no_progress, resume=not args.no_resume,
                         threads=args.threads, appliances=list(train.meta.get("appliances", [])))
    path = finetune(cfg, Path(args.pretrained), train, val)
    print(path)
    return 0
