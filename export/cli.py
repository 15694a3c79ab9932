"""``unimeter export`` and ``unimeter demo`` (found through the unimeter.cli entry point).

torch, onnx and the converters are imported inside the handlers only, so ``unimeter --help``
works on an install without them.

    unimeter export --checkpoint runs/distill/imputation.pt --checkpoint runs/distill/anomaly.pt \\
        --out bundles/unimeter-1 --model-version 1.0.0
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from edge.errors import ConfigError


def register(subparsers: argparse._SubParsersAction, groups=None) -> None:
    """``unimeter export`` and ``unimeter demo``; ``groups``: ``edge.cli.CommandGroups``."""
    p = subparsers.add_parser(
        "export", help="export task checkpoints to a verified model bundle (ONNX fp32/int8, TFLite int8)",
        description="Export fine-tuned or distilled task checkpoints into one bundle directory: sparse "
        "top-k ONNX fp32 and int8 (gate kept float), TFLite int8, and a manifest with sha256 hashes.",
    )
    p.add_argument("--checkpoint", action="append", required=True, metavar="[TASK=]PATH",
                   help="a task checkpoint; repeat for several tasks (task read from the file)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--model-version", default="0.1.0", help="version string stored in the manifest")
    p.add_argument("--dense", action="store_true", help="also store the dense fp32 ONNX reference")
    p.add_argument("--no-tflite", action="store_true", help="skip the TFLite model (no litert-torch)")
    p.add_argument("--no-fp32", action="store_true",
                   help="ship int8 models only (ONNX int8 + TFLite int8): about half the bundle size")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle directory")
    p.add_argument("--notes", default="", help="free text stored in the manifest")
    p.add_argument("--sign", metavar="KEY", default=None,
                   help="sign the bundle with this ed25519 private key (PEM; unimeter bundle keygen)")
    p.set_defaults(func=run_export)

    train = groups.get("train") if groups is not None else None
    if train is not None:
        from export.train_all_cli import add_arguments, run_train_all_command

        a = train.add_parser("all", help="a user's own meter files -> import, train every task, calibrate, export "
                             "and a report against naive baselines on the latest days")
        add_arguments(a)
        a.set_defaults(func=run_train_all_command)

    d = subparsers.add_parser("demo", help="simulate meters, train, export, run the agent and publish to a broker")
    try:
        demo = importlib.import_module("export.demo")
    except ImportError as e:
        error = e

        def unavailable(_args: argparse.Namespace) -> int:
            print(f"unimeter demo: export.demo is not available ({error})", file=sys.stderr)
            return 2

        d.set_defaults(func=unavailable)
        return
    demo.add_arguments(d)
    d.set_defaults(func=demo.run)


def _checkpoint_map(specs: list[str]) -> dict[str, Path]:
    from trainer.checkpoint import load_checkpoint

    tasks: dict[str, Path] = {}
    for spec in specs:
        task, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        ckpt = load_checkpoint(path)
        found = ckpt.get("task")
        if ckpt.get("kind") != "task" or not found:
            raise ConfigError(f"{path} is not a task checkpoint (kind {ckpt.get('kind')!r})")
        if task and task != found:
            raise ConfigError(f"{path} holds task {found!r}, not {task!r}")
        if found in tasks:
            raise ConfigError(f"two checkpoints for task {found!r}")
        tasks[found] = Path(path)
    return tasks


def run_export(args: argparse.Namespace) -> int:
    from edge.bundle import BundleError
    from edge.signing import SigningError, load_private_key
    from export.bundle_writer import BundleConfig, write_bundle
    from export.errors import ExportError
    from trainer.checkpoint import CheckpointError

    try:
        signing_key = load_private_key(args.sign) if args.sign else None  # fail before the long export
        tasks = _checkpoint_map(args.checkpoint)
        cfg = BundleConfig(include_tflite=not args.no_tflite, include_dense=args.dense,
                           include_fp32=not args.no_fp32)
        out = write_bundle(tasks, args.out, model_version=args.model_version, cfg=cfg,
                           overwrite=args.overwrite, notes=args.notes, signing_key=signing_key)
    except (ExportError, CheckpointError, BundleError, SigningError, OSError) as e:
        print(f"unimeter export: {e}", file=sys.stderr)
        return 1
    from edge.bundle import load_bundle

    bundle = load_bundle(out)
    total = bundle.manifest["total_bytes"]
    print(f"bundle {out}: {len(bundle.tasks)} task(s), {total / 1e6:.3f} MB"
          + (" (signed: signature.json)" if args.sign else " (unsigned)"))
    for name, spec in bundle.tasks.items():
        files = ", ".join(p.name for p in spec.artifacts.values())
        print(f"  {name}: {files}")
        verification = bundle.manifest["tasks"][name].get("verification", {})
        if verification:
            print("    " + ", ".join(f"{k}={v:.3g}" for k, v in verification.items()))
    return 0
