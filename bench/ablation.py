"""Ablations of the context model on the simulator: no MoE, no information bottleneck, no context
(D = 0) against the full model, every profile task, the same windows for all.

    python bench/ablation.py --households 60   # preset demo, 60 households: the committed run
    python bench/ablation.py --quick      # smoke run (the quick preset, seconds per stage)

Data: ``export.pipeline.build_profile_sets`` of the preset (simulated households split by household
70/15/15, each household one meter, day-long windows every 12 h with the D = 7 days before them).
Each variant pre-trains its own backbone (seed 000 Alg. 2) on the training households and is
fine-tuned per task (Alg. 1) for the preset's step counts; the teacher size of the preset (the
model the students are distilled from). The variants differ in one thing each:

* ``full``: ``ModelConfig(history_days=7)`` with the noisy top-k MoE and the VIB;
* ``no_moe``: a dense FFN of equal active compute (hidden = k * d_expert) instead of each MoE;
* ``no_ib``: z = mu, no KL term (beta = 0);
* ``no_context``: D = 0, the one-day model of seed 000, fed the same windows without their history.

Judged on the test households (torch, eval mode): imputation MAE (random points and blocks, 10-50 %
missing), forecast day-ahead MAE / RMSE / MAPE (floor 50 W) and hour-ahead MAE, anomaly window AUC
and F1 at logit 0 (seed 000's scaling and ramping attacks, lambda 0.1-0.5, on half the windows).

Writes bench/results/ablation.json, .md and .png (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

HISTORY_DAYS = 7
VARIANTS = {"full": {}, "no_moe": {"moe": False}, "no_ib": {"use_ib": False, "beta": 0.0},
            "no_context": {"history_days": 0}}
TASKS = ("imputation", "forecast", "anomaly")
MAPE_FLOOR_W = 50.0
# (metric, better): the table's columns, the first of each task its headline
METRICS = {"imputation": (("mae_random_w", "lower"), ("mae_block_w", "lower"), ("mae_w", "lower")),
           "forecast": (("day_ahead_mae_w", "lower"), ("day_ahead_rmse_w", "lower"),
                        ("day_ahead_mape_pct", "lower"), ("hour_ahead_mae_w", "lower")),
           "anomaly": (("window_auc", "higher"), ("window_f1", "higher"))}


def roc_auc(label: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    from scipy.stats import rankdata

    label = np.asarray(label) > 0.5
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def run_model(ckpt: Path, arrays: dict[str, np.ndarray], batch: int = 512) -> dict[str, np.ndarray]:
    """A fine-tuned checkpoint's outputs on ``arrays`` (only the inputs the model names)."""
    import torch

    from trainer.checkpoint import load_task_model

    model = load_task_model(ckpt).eval()
    n, outs = len(arrays["load_w"]), []
    with torch.no_grad():
        for s in range(0, n, batch):
            feeds = {k: torch.as_tensor(np.ascontiguousarray(arrays[k][s:s + batch]), dtype=torch.float32)
                     for k in model.input_names}
            outs.append({k: v.numpy() for k, v in model(feeds).items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def judge(task: str, out: dict[str, np.ndarray], a: dict[str, np.ndarray]) -> dict[str, float]:
    """The task's metrics on the test windows (see the module docstring)."""
    if task == "imputation":
        miss = a["observed"] < 0.5
        err = np.abs(out["load_w_filled"] - a["target_w"])
        block = (np.arange(len(err)) % 2 == 1)[:, None]  # profile_sets.imputation_set: odd rows blocks
        return {"mae_w": float(err[miss].mean()), "mae_random_w": float(err[miss & ~block].mean()),
                "mae_block_w": float(err[miss & block].mean())}
    if task == "forecast":
        y, p = a["day_ahead_w"], out["day_ahead_w"]
        return {"day_ahead_mae_w": float(np.abs(p - y).mean()),
                "day_ahead_rmse_w": float(np.sqrt(((p - y) ** 2).mean())),
                "day_ahead_mape_pct": float(100 * (np.abs(p - y) / np.maximum(np.abs(y), MAPE_FLOOR_W)).mean()),
                "hour_ahead_mae_w": float(np.abs(out["hour_ahead_w"] - a["hour_ahead_w"]).mean())}
    y, logit = a["window_label"] > 0.5, out["window_logit"].ravel()
    pred = logit > 0
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    return {"window_auc": roc_auc(y, logit), "window_f1": 2 * tp / max(2 * tp + fp + fn, 1)}


def without_history(ds):
    """The same windows without ``history_w`` / ``history_mask`` (the one-day model's view)."""
    from trainer.data import ArrayDataset

    return ArrayDataset({k: v for k, v in ds.arrays.items() if not k.startswith("history_")}, ds.meta)


def train_variant(name: str, overrides: dict, cfg, sets: dict) -> dict[str, Path]:
    """Pre-train the variant's backbone and fine-tune it for every task; checkpoints by task."""
    if overrides.get("history_days") == 0:
        sets = {t: {k: without_history(ds) for k, ds in sets[t].items()} for t in ("pretrain", *TASKS)}
    from export.pipeline import _model_cfg
    from trainer.checkpoint import DataSpec
    from trainer.finetune import FinetuneConfig, finetune
    from trainer.model import ModelConfig
    from trainer.pretrain import PretrainConfig, pretrain

    out = cfg.out_dir / name
    model_cfg = ModelConfig(**{**_model_cfg(cfg, 48, 12, cfg.history_days).to_dict(), **overrides})
    pcfg = PretrainConfig(model=model_cfg, out_dir=str(out / "pretrain"), epochs=10_000, batch_size=cfg.batch_size,
                          seed=cfg.seed, max_steps=cfg.pretrain_steps, progress=cfg.progress, resume=False,
                          plot=False, data_spec=DataSpec(resolution_s=1800, seq_len=48, n_patches=12))
    backbone = pretrain(pcfg, sets["pretrain"]["train"], sets["pretrain"]["val"])
    ckpts = {}
    for task in TASKS:
        fcfg = FinetuneConfig(task=task, out_dir=str(out / task), epochs=10_000, batch_size=cfg.batch_size,
                              max_steps=cfg.finetune_steps, seed=cfg.seed, progress=cfg.progress,
                              patience=10_000, plot=False)
        ckpts[task] = finetune(fcfg, backbone, sets[task]["train"], sets[task]["val"])
    return ckpts


def relative(res: dict) -> dict:
    """Each variant's metric relative to the full model's: > 0 = the variant is worse by that share."""
    full = res["variants"]["full"]
    out = {}
    for name, metrics in res["variants"].items():
        for task, cols in METRICS.items():
            for key, better in cols:
                a, b = metrics[task][key], full[task][key]
                worse = (a - b) / abs(b) if better == "lower" else (b - a) / abs(b)
                out.setdefault(name, {})[f"{task}.{key}"] = float(worse)
    return out


def markdown(res: dict) -> str:
    lines = [f"# Ablations of the context model (simulator)\n\nCommand: `nice -n 10 {res['command']}`  \n"
             f"Machine: {res['machine']}  \nPreset: {res['preset']} ({res['households']} households x "
             f"{res['days']} days, split by household 70/15/15; {res['test_windows']}), model "
             f"{res['model']}; {res['pretrain_steps']} pre-training and {res['finetune_steps']} fine-tuning "
             f"steps per task and variant, batch {res['batch_size']}, seed {res['seed']}  \n"
             f"Wall time: {res['seconds']:.0f} s"
             + (f" ({res['runs_in_parallel']} runs in parallel, the longest)" if res.get("runs_in_parallel") else "")
             + "\n",
             "| variant | " + " | ".join(f"{t} {k}" for t, cols in METRICS.items() for k, _ in cols) + " |",
             "|---|" + "---|" * sum(len(c) for c in METRICS.values())]
    rel = res["relative_to_full"]
    for name, metrics in res["variants"].items():
        cells = []
        for task, cols in METRICS.items():
            for key, _ in cols:
                v, r = metrics[task][key], rel[name][f"{task}.{key}"]
                cells.append(f"{v:.4g}" if name == "full" else f"{v:.4g} ({'+' if r >= 0 else ''}{r:.1%})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["\n(in brackets: how much worse than the full model, negative = better; MAE / RMSE in W, MAPE "
              f"in % with a {MAPE_FLOOR_W:.0f} W floor, AUC / F1 of the anomaly window score)\n"]
    return "\n".join(lines)


def plot(res: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rel = res["relative_to_full"]
    # F1 at logit 0 of a model near chance swings by tens of % on a few windows: the bars leave it out
    keys = [f"{t}.{k}" for t, cols in METRICS.items() for k, _ in cols if k != "window_f1"]
    fig, ax = plt.subplots(figsize=(11, 4))
    x = np.arange(len(keys))
    names = [n for n in rel if n != "full"]
    for i, name in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * 0.25, [100 * rel[name][k] for k in keys], 0.25, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [k.replace(".", "\n") for k in keys], fontsize=7)
    ax.set_ylabel("% worse than the full model")
    ax.set_title(f"Ablations, context model D = {HISTORY_DAYS} ({res['preset']} preset, simulated test households)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the quick preset (smoke run)")
    p.add_argument("--preset", default="demo", help="export.pipeline preset of the data, model and steps")
    p.add_argument("--households", type=int, help="simulated households (default: the preset's)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="write the report from the variants of these runs' ablation.json (runs of the "
                        "same preset with different --variants, e.g. in parallel) instead of training")
    p.add_argument("--out", default=str(RESULTS), help="results directory")
    p.add_argument("--work", default="/tmp/unimeter-bench-ablation", help="scratch directory")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from export.pipeline import PipelineConfig, build_profile_sets

    torch.set_num_threads(1)
    if args.merge:
        merge(args.merge, Path(args.out), "python bench/ablation.py " + " ".join(sys.argv[1:]))
        return 0
    preset = "quick" if args.quick else args.preset
    extra = {"households": args.households} if args.households else {}
    cfg = PipelineConfig.preset(preset, out_dir=args.work, history_days=HISTORY_DAYS, progress=False, **extra)
    t0 = time.perf_counter()
    sets = build_profile_sets(cfg)
    tests = {t: sets[t]["test"].arrays for t in TASKS}
    res = {"command": "python bench/ablation.py " + " ".join(sys.argv[1:]),
           "machine": f"{platform.machine()} {os.cpu_count()} cores (shared), Python {platform.python_version()}",
           "preset": preset, "households": cfg.households, "days": cfg.days, "seed": cfg.seed,
           "model": {k: v for k, v in cfg.teacher.items() if k != "dropout"}, "history_days": HISTORY_DAYS,
           "pretrain_steps": cfg.pretrain_steps, "finetune_steps": cfg.finetune_steps,
           "batch_size": cfg.batch_size,
           "test_windows": ", ".join(f"{t} {len(a['load_w'])}" for t, a in tests.items()) + " test windows",
           "variants": {}}
    for name in args.variants:
        print(f"variant {name} ...", flush=True)
        ckpts = train_variant(name, VARIANTS[name], cfg, sets)
        res["variants"][name] = {t: judge(t, run_model(ckpts[t], tests[t]), tests[t]) for t in TASKS}
        print(json.dumps(res["variants"][name]), flush=True)
        res["seconds"] = time.perf_counter() - t0
        write(res, Path(args.out))  # after each variant: a stopped run keeps what it measured
    return 0


def write(res: dict, out: Path) -> None:
    """ablation.json, and with the full model among the variants ablation.md and .png."""
    if "full" in res["variants"]:
        res["relative_to_full"] = relative(res)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(res, indent=2) + "\n")
    if "full" in res["variants"]:
        (out / "ablation.md").write_text(markdown(res))
        plot(res, out / "ablation.png")
        print((out / "ablation.md").read_text())


def merge(paths: list[str], out: Path, command: str) -> None:
    """One report from runs of the same preset that trained different variants."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    same = ("preset", "households", "days", "seed", "pretrain_steps", "finetune_steps", "batch_size", "test_windows")
    for r in runs[1:]:
        diff = [k for k in same if r[k] != runs[0][k]]
        if diff:
            raise SystemExit(f"runs differ in {diff}: not one ablation")
    res = {**runs[0], "command": command + "  (" + "; ".join(r["command"] for r in runs) + ")",
           "seconds": max(r["seconds"] for r in runs), "runs_in_parallel": len(runs),
           "variants": {n: v for name in VARIANTS for r in runs for n, v in r["variants"].items() if n == name}}
    write(res, out)


if __name__ == "__main__":
    sys.exit(main())
