"""``OUT/report.md``, ``report.json`` and ``report.png`` of ``unimeter train all``: the exported int8
bundle against the naive baselines on the held-out latest days (``trainer.user_eval``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _f(v, d: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{d}f}"


def markdown(res: dict) -> str:
    lines = [f"# train all: the exported int8 bundle on the held-out latest days ({res['steps_per_day']} points a day, "
             f"{res['resolution_s']} s)", "", "Nothing was tuned on these days: thresholds and student sizes were chosen on "
             "the validation days before them.", ""]
    for k, v in res.get("choices", {}).items():
        if isinstance(v, str | int | float):
            lines.append(f"- {k}: {v}")
    for meter, notes in res.get("choices", {}).get("import_notes", {}).items():
        lines.append(f"- import {meter}: {'; '.join(notes) or 'as read'}")
    split = res.get("choices", {}).get("split", {})
    for meter, text in split.items():
        lines.append(f"- split {meter}: {text}")
    fc = res.get("forecast", {}).get("methods")
    if fc:
        lines += ["", f"## Day-ahead forecast ({res['forecast']['n_days']} test days)", "",
                  "| method | MAPE % | MAE W |", "|---|---|---|"]
        lines += [f"| {k} | {_f(v['mape_pct'])} | {v['mae_w']:.4g} |" for k, v in fc.items()]
    cells = res.get("imputation", {}).get("cells", {})
    if cells:
        names = list(next(iter(cells.values()))["methods"])
        lines += ["", "## Imputation MAPE % on the hidden points", "", "| cell | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        lines += [f"| {cell} | " + " | ".join(_f(c["methods"].get(n, {}).get("mape_pct")) for n in names) + " |"
                  for cell, c in cells.items()]
    an = res.get("anomaly", {}).get("methods")
    if an:
        a = res["anomaly"]
        lines += ["", f"## Anomaly detection ({a['n_cases']} test days, half attacked; a day is flagged when any "
                  "window ending on it fires; calibrated thresholds)", "",
                  "| method | F1 | precision | recall | AUC |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {_f(v['f1'])} | {_f(v['precision'])} | {_f(v['recall'])} | {_f(v.get('auc'))} |"
                  for k, v in an.items()]
        lines += ["", f"False alarms of the int8 bundle on the clean test days: {a['false_alarm_days']['int8']} of "
                  f"{a['clean_days']} days ({_f(a['false_alarms_per_month']['int8'])} per month; "
                  f"target {_f(a['calibration'].get('target_false_alarms_per_month'), 1)}; threshold from the bundle's "
                  "calibration on the validation days)."]
    lines += selection_lines(res.get("choices", {}))
    checks = res.get("checks", [])
    if checks:
        lines += ["", "## Targets", "", "| check | ours | baseline | value | met |", "|---|---|---|---|---|"]
        lines += [f"| {c['check']} | {_f(c['ours'], 3)} | {c['baseline']} | {_f(c['baseline_value'], 3)} | "
                  f"{'yes' if c['met'] else 'NO'} |" for c in checks]
    return "\n".join(lines) + "\n"


def selection_lines(choices: dict) -> list[str]:
    """The student size chosen per task on the validation days: each candidate tried (smallest
    first), its validation metric and how much worse than the teacher it is (the worst metric,
    relative); the first within the margin ships, the teacher when none is."""
    lines = []
    for task in ("imputation", "anomaly", "forecast"):
        sel = choices.get(f"student_{task}")
        if not sel:
            continue
        if not lines:
            lines += ["", "## Student size (chosen on the validation days, the report's metric)", "",
                      "| task | candidate | parameters | started from | validation | worst gap to the teacher | shipped |",
                      "|---|---|---|---|---|---|---|"]
        teacher = ", ".join(f"{k} {v:.3g}" for k, v in sel["teacher_val"].items())
        lines.append(f"| {task} | teacher (reference) | - | - | {teacher} | - | - |")
        for t in sel["tried"]:
            val = ", ".join(f"{k} {v:.3g}" for k, v in t["val"].items())
            gap = t.get("worst_gap")
            lines.append(f"| {task} | {'teacher' if t['candidate'] == 'teacher' else '#' + str(t['candidate'])} | "
                         f"{t['parameters']} | {_start(t)} | {val} | {'-' if gap is None else f'{gap:+.1%}'} | "
                         f"{'yes' if t['candidate'] == sel['chosen'] else ''} |")
    return lines


def _start(tried: dict) -> str:
    """How a candidate started: the teacher's layers (and kept experts) or a random initialisation."""
    init = tried.get("init") or {}
    if init.get("from") != "teacher":
        return "-" if tried["candidate"] == "teacher" else "random"
    experts = init.get("experts")
    kept = f"; {len(experts[0])} experts per layer (most used)" if experts else ""
    return f"teacher layers {', '.join(map(str, init['layers']))}{kept}"


def plot(res: dict, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ex = res.get("forecast", {}).get("example")
    if ex:
        for k, style in (("truth", "k-"), ("int8", "C0-"), ("previous_day", "C2:"), ("same_day_last_week", "C1--")):
            axes[0].plot(np.asarray(ex[k]) / 1e3, style, label=k)
        axes[0].set_title("latest test day: day-ahead forecast")
        axes[0].set_ylabel("kW")
        axes[0].legend()
    cells = res.get("imputation", {}).get("cells", {})
    if cells:
        names = list(next(iter(cells.values()))["methods"])
        x = np.arange(len(cells))
        w = 0.8 / len(names)
        for i, n in enumerate(names):
            axes[1].bar(x + i * w, [c["methods"].get(n, {}).get("mape_pct", np.nan) for c in cells.values()], w, label=n)
        axes[1].set_xticks(x + 0.4 - w / 2, list(cells), rotation=30)
        axes[1].set_ylabel("MAPE %")
        axes[1].set_title("imputation")
        axes[1].legend(fontsize=7)
    an = res.get("anomaly", {}).get("methods")
    if an:
        axes[2].bar(list(an), [v["f1"] for v in an.values()])
        axes[2].set_ylabel("window F1")
        axes[2].set_title("anomaly detection (calibrated)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def write_report(res: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": out_dir / "report.png"}
    paths["json"].write_text(json.dumps(res, indent=2, default=float) + "\n")
    paths["md"].write_text(markdown(res))
    plot(res, paths["png"])
    return paths
