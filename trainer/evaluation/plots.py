"""The evaluation's plots: one PNG per task (bars per method; imputation MAE against missing rate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.evaluation.config import ATTACK_KINDS, UNIFIED


def write_plots(results: dict, out_dir: Path, name: str) -> dict[str, Path]:
    """One PNG per task (Agg backend)."""
    import matplotlib  # the Agg backend is chosen here, before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, paths = results["tasks"], {}
    plt.rcParams["axes.prop_cycle"] = plt.cycler(color=plt.get_cmap("tab20").colors)

    def bars(ax, groups: dict[str, dict[str, float]], ylabel: str, title: str) -> None:
        methods = sorted({m for g in groups.values() for m in g})
        width = 0.8 / max(len(methods), 1)
        for i, m in enumerate(methods):
            vals = [groups[g].get(m, np.nan) for g in groups]
            ax.bar(np.arange(len(groups)) + i * width, vals, width, label=m,
                   edgecolor="black" if m == UNIFIED else None)
        ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, list(groups))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7, framealpha=0.6)

    def save(fig, key: str) -> None:
        path = out_dir / f"{name}_{key}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[f"plot_{key}"] = path

    if "forecast" in tasks:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, metric, unit in zip(axes, ("mae_w", "mape_pct"), ("MAE (W)", "MAPE (%)"), strict=True):
            groups = {h: {m: v[metric] for m, v in tasks["forecast"][h].items()} for h in ("day_ahead", "hour_ahead")}
            bars(ax, groups, unit, f"forecast {unit}")
        save(fig, "forecast")
    if "imputation" in tasks:
        imp = tasks["imputation"]
        patterns = [p for p in imp if p not in ("timing", "n_test_days", "errors")]
        fig, axes = plt.subplots(1, len(patterns), figsize=(5.5 * len(patterns), 4), squeeze=False)
        for ax, p in zip(axes[0], patterns, strict=True):
            rates = sorted(imp[p], key=float)
            for m in sorted({m for r in rates for m in imp[p][r]}):
                ys = [imp[p][r].get(m, {}).get("mae_w", np.nan) for r in rates]
                ax.plot([float(r) * 100 for r in rates], ys, marker="o", label=m, lw=2.5 if m == UNIFIED else 1.2)
            ax.set_xlabel("missing (%)")
            ax.set_yscale("log")  # some classical fillers diverge on long gaps
            ax.set_ylabel("MAE on missing points (W, log)")
            ax.set_title(f"imputation, {p} missing")
            ax.legend(fontsize=7, framealpha=0.6)
        save(fig, "imputation")
    if "anomaly" in tasks:
        fig, ax = plt.subplots(figsize=(7, 4))
        groups = {k: {m: v["f1"] for m, v in tasks["anomaly"][k].items()} for k in ATTACK_KINDS}
        bars(ax, groups, "window F1", "anomaly detection")
        save(fig, "anomaly")
    if "nilm" in tasks and tasks["nilm"]["methods"]:
        res = tasks["nilm"]
        fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(res["appliances"])), 4))
        groups = {a: {m: r["per_appliance"][a]["f1"] for m, r in res["methods"].items()} for a in res["appliances"]}
        bars(ax, groups, "ON/OFF F1", "NILM per appliance")
        ax.tick_params(axis="x", labelrotation=45)
        save(fig, "nilm")
    return paths
