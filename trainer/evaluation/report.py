"""The evaluation's outputs: results.json, a markdown report with the exact command, one PNG per task.

``render`` rewrites the markdown and plots of a finished run from its results.json, so the report
can change without re-running the evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trainer.evaluation.config import (
    ATTACK_KINDS,
    UNIFIED_VARIANTS,
    EvalConfig,
    EvaluationError,
)
from trainer.evaluation.plots import write_plots
from trainer.evaluation.targets import TOLERANCE


def _clean(obj):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_outputs(results: dict, cfg: EvalConfig) -> dict[str, Path]:
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{cfg.name}.json", "md": out_dir / f"{cfg.name}.md"}
    paths["json"].write_text(json.dumps(_clean(results), indent=1, allow_nan=False))
    paths.update(write_plots(results, out_dir, cfg.name))
    paths["md"].write_text(markdown_report(results, paths))
    return paths


def _budget_md(cfg: dict, results: dict) -> list[str]:
    logs = results.get("pretrain_logs", {})
    pre = ", ".join(f"{k}: val loss {_fmt(v.get('val_loss', v.get('loss')), 3)}" for k, v in logs.items()
                    if isinstance(v, dict)) or "n/a"
    return ["## Budget and protocol", "",
            f"- Unified model `{cfg['unified_model']}` pre-trained (Alg. 2, `trainer.pretrain`) on "
            f"{cfg['pretrain_profiles']} training-household days for {cfg['pretrain_epochs']} epochs, batch "
            f"{cfg['pretrain_batch_size']}; fine-tuned (Alg. 1, `trainer.finetune`, L2-SP) on "
            f"{cfg['finetune_windows']} windows for up to {cfg['finetune_epochs']} epochs, batch "
            f"{cfg['finetune_batch_size']}. Seed 000 trains 100 epochs on ~2.4 M profiles.",
            f"- Learned baselines: up to {cfg['baseline_epochs']} epochs of {cfg['epoch_windows']} random "
            "windows, Adam lr 1e-3, ReduceLROnPlateau(0.5, 3), early stopping, best-validation weights.",
            *([f"- NILM (small sets): {cfg.get('nilm_households')} households x {cfg.get('nilm_days')} days at "
               f"{cfg.get('nilm_resolution_s')} s, windows of {cfg.get('nilm_window')}; the unified model's "
               f"pre-training and fine-tuning and the CNN run {cfg.get('nilm_epochs', cfg['finetune_epochs'])} epochs."]
              if "nilm" in results.get("tasks", {}) else []),
            *([f"- Context (D = {cfg['history_days']}): the teacher is distilled into the student for up to "
               f"{cfg.get('distill_epochs')} epochs on the same fine-tuning windows (best validation loss); "
               f"PyPOTS SAITS runs {cfg.get('saits_epochs')} epochs on {cfg.get('saits_windows')} training days, "
               "each with the day before. `zscore` judges each point against the same time of day on the "
               "window's previous 7 days (median / MAD)."] if cfg.get("history_days") else []),
            f"- Pre-training end metrics: {pre}.",
            f"- Test windows are fixed random subsets: {cfg['max_eval_windows']} (forecast, anomaly), "
            f"{cfg['max_imputation_test_days']} days x every (pattern, rate) mask (imputation).",
            f"- MAPE leaves out points under {cfg['mape_floor_w']} W. Forecast origins every "
            f"{cfg['origin_stride_steps']} steps; the weather covariate is the simulated temperature.",
            ""]


def _unified_md(results: dict) -> list[str]:
    """What ``unimeter`` is in this run: the context (D days) and how the student was scored."""
    u, cfg = results.get("unified"), results["config"]
    if not u or not u.get("history_days"):
        return ["`unimeter`: the fine-tuned model on one day (D = 0), PyTorch.", ""]
    s = u.get("student") or {}
    return [f"`unimeter`: the {u['unimeter']} (D = {u['history_days']} days of each household's history, "
            f"masked where a day is missing), distilled for {cfg.get('distill_epochs')} epochs from the teacher "
            f"`{u['model']}` into the default student (d_model {s.get('d_model')}, {s.get('n_layers')} layers, "
            f"{s.get('n_experts')} experts, top-{s.get('top_k')}, {s.get('activation')}); `unimeter_teacher`: "
            "the teacher in PyTorch on the same windows. NILM has no context (one window, the teacher).", ""]


def _fmt(v, digits: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def _bold_best(values: dict[str, float], lower: bool) -> str | None:
    finite = {k: v for k, v in values.items() if v is not None and np.isfinite(v)}
    if not finite:
        return None
    return min(finite, key=finite.get) if lower else max(finite, key=finite.get)


def markdown_report(results: dict, paths: dict[str, Path]) -> str:
    cfg, tasks, data = results["config"], results["tasks"], results["data"]
    lines = [f"# Evaluation: unified MoE model vs task-specific baselines ({cfg['name']})", "",
             "Command:", "", "```", results.get("command") or "(Python API)", "```", "",
             f"Simulated fleet: {sum(data['households'].values())} households x "
             f"{data['days_per_household']} days at 30 min, split by household "
             f"{data['households']} (seed {cfg['seed']}). Every method is fitted on train, chooses on "
             f"val, and is scored once on test. Unified model: `{cfg['unified_model']}`, pre-training "
             f"{cfg['pretrain_epochs']} epochs, fine-tuning {cfg['finetune_epochs']} epochs; learned "
             f"baselines {cfg['baseline_epochs']} epochs. Wall time {results['timing_s']['total_s']:.0f} s.", "",
             *_unified_md(results)]
    if "forecast" in tasks:
        lines += _forecast_md(tasks["forecast"])
    if "imputation" in tasks:
        lines += _imputation_md(tasks["imputation"])
        lines += _ablation_md(tasks["imputation"])
    if "anomaly" in tasks:
        lines += _anomaly_md(tasks["anomaly"])
    if "nilm" in tasks:
        lines += _nilm_md(tasks["nilm"])
    lines += _targets_md(results["targets"])
    lines += _budget_md(cfg, results)
    errors = {f"{t}/{m}": e for t, r in tasks.items() for m, e in r.get("errors", {}).items()}
    if errors:
        lines += ["## Methods that failed", "", *(f"- `{k}`: {v}" for k, v in errors.items()), ""]
    lines += ["## Plots", "", *(f"![{k}]({p.name})" for k, p in paths.items() if k.startswith("plot_")), ""]
    notes = paths["md"].with_name(paths["md"].stem + "_notes.md")
    if notes.is_file():  # the hand-written closing note on this run, kept across re-renders
        lines += [notes.read_text().strip(), ""]
    return "\n".join(lines)


def _forecast_md(res: dict) -> list[str]:
    rows, methods = [], list(res["day_ahead"])
    for m in methods:
        rows.append([f"`{m}`"] + [_fmt(res[h][m][k], 1 if k != "mape_pct" else 2)
                                  for h in ("day_ahead", "hour_ahead") for k in ("mae_w", "rmse_w", "mape_pct")])
    return ["## Forecasting (test households)", "",
            f"{res['n_test_windows']} test windows; MAE/RMSE in W, MAPE in % (points >= floor).", "",
            *_table(["method", "day-ahead MAE", "RMSE", "MAPE", "hour-ahead MAE", "RMSE", "MAPE"], rows)]


def _imputation_md(res: dict) -> list[str]:
    out = ["## Imputation (missing points only, test households)", ""]
    for pattern in (p for p in res if p not in ("timing", "n_test_days", "errors")):
        rates = list(res[pattern])
        methods = list(res[pattern][rates[0]]) if rates else []
        rows = [[f"`{m}`"] + [f"{_fmt(res[pattern][r][m]['mae_w'])} / {_fmt(res[pattern][r][m]['rmse_w'])} / "
                              f"{_fmt(res[pattern][r][m]['mape_pct'])}" if m in res[pattern][r] else "n/a"
                              for r in rates] for m in methods]
        out += [f"### {pattern} missing: MAE W / RMSE W / MAPE %", "",
                *_table(["method", *(f"{float(r):.0%}" for r in rates)], rows)]
    return out


def _ablation_md(res: dict) -> list[str]:
    """Seed 000 Fig. 6 on our data: imputation MAE of the full model, no MoE and no IB."""
    variants = [v for v in UNIFIED_VARIANTS if any(v in t for p, by in res.items()
                                                     if p not in ("timing", "n_test_days", "errors")
                                                     for t in by.values())]
    if len(variants) < 2:
        return []
    cols = [(p, r) for p in res if p not in ("timing", "n_test_days", "errors") for r in res[p]]
    rows = []
    for v in variants:
        maes = [res[p][r][v]["mae_w"] if v in res[p][r] else float("nan") for p, r in cols]
        rows.append([f"`{v}`", *(_fmt(m) for m in maes), _fmt(float(np.nanmean(maes)))])
    return ["### Ablations (imputation MAE, W)", "",
            "`unimeter_no_moe`: dense FFN of equal active compute; `unimeter_no_ib`: no information "
            "bottleneck (beta = 0). Each is pre-trained and fine-tuned with the same budget.", "",
            *_table(["variant", *(f"{p} {float(r):.0%}" for p, r in cols), "mean"], rows)]


def _anomaly_md(res: dict) -> list[str]:
    rows = [[f"`{m}`"] + [_fmt(res[k][m][x], 3) for k in ATTACK_KINDS
                          for x in ("accuracy", "precision", "recall", "f1", "point_f1")] for m in res["scaling"]]
    head = ["method"] + [f"{k[:4]} {x}" for k in ATTACK_KINDS for x in ("acc", "prec", "rec", "F1", "point F1")]
    return ["## Anomaly detection (window level, test households)", "", *_table(head, rows)]


def _nilm_md(res: dict) -> list[str]:
    apps = res["appliances"]
    rows = [[f"`{m}`", _fmt(r["mean_f1"], 3), _fmt(r["mean_energy_mae_wh"])] +
            [f"{_fmt(r['per_appliance'][a]['f1'], 2)} / {_fmt(r['per_appliance'][a]['energy_mae_wh'], 0)}" for a in apps]
            for m, r in res["methods"].items()]
    return ["## NILM (per appliance: ON/OFF F1 / energy MAE Wh per window)", "",
            *_table(["method", "mean F1", "mean energy MAE Wh", *apps], rows)]


def _targets_md(targets: list[dict]) -> list[str]:
    def yes(v) -> str:
        return "n/a" if v is None else "yes" if v else "**no**"

    rows = [[t["check"], t["metric"], _fmt(t["unimeter"], 3), f"`{t['best_baseline']}` {_fmt(t['best_baseline_value'], 3)}",
             f"{t['gap_pct']:+.1f}%", "pass" if t["pass"] else "**MISS**", yes(t.get("at_or_better"))]
            for t in targets]
    n_pass = sum(t["pass"] for t in targets)
    n_better = sum(bool(t.get("at_or_better")) for t in targets)
    return ["## Targets", "",
            f"{n_pass} of {len(targets)} checks pass within {TOLERANCE:.0%} (seed 000); `unimeter` is at or better "
            f"than the best baseline on {n_better} of {len(targets)} (the context issue's target, no tolerance). "
            "Gap: positive = the unified model is worse than the best baseline (relative); vs linear "
            "interpolation a check passes when strictly better.",
            "", *_table(["check", "metric", "unimeter", "best baseline", "gap", "within 3%", "at or better"], rows)]


def render(json_path: str | Path) -> dict[str, Path]:
    """Rewrite the markdown and the plots of a finished run from its results.json."""
    json_path = Path(json_path)
    try:
        results = json.loads(json_path.read_text())
    except (OSError, ValueError) as e:
        raise EvaluationError(f"cannot read results from {json_path}: {e}") from e
    paths = {"json": json_path, "md": json_path.with_suffix(".md")}
    paths.update(write_plots(results, json_path.parent, json_path.stem))
    paths["md"].write_text(markdown_report(results, paths))
    return paths
