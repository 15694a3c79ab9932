"""False alarms on clean meters: held-out simulated households replayed through the agent's code.

    python bench/false_alarms.py --bundle DIR          # 40 households x 30 days, ~5 min on 2 cores
    python bench/false_alarms.py --preset demo         # trains the demo's bundle first (pipeline)

Households the bundle never saw (fleet seed ``--seed``; training uses the pipeline's seed) are
simulated for ``--days`` days plus the model's history days and one more; their 30-min bins go
through ``edge.agent.replay.replay_meter``: every bin (the agent's default profile schedule) the
rolling day window, its history context from the meter's SQLite ``profile_bins``, ``profile_step``
with the meter's threshold (the bundle's calibrated one, the meter's own refit after 14 days of its
scores) and the gateway fault rules (the published flag is either, held up until the windows have
been clean for the agent's ``schedule.alarm_release_after_s``). Evaluation starts once a meter has
its full history (the bins before are backfilled, as the agent does at start-up). An alarm is a
rising edge of the published flag; the target is at most one per meter per month. Writes
``bench/results/<name>.json`` and ``.md`` with this command.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# run from a source checkout without installing; bench/export.py must not shadow the export package
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from edge.agent.config import ScheduleConfig  # noqa: E402
from edge.agent.inference import ModelHost, open_model  # noqa: E402
from edge.agent.replay import replay_meter  # noqa: E402
from edge.calibration import DAYS_PER_MONTH, alarm_episodes  # noqa: E402
from edge.sim import simulate_fleet  # noqa: E402

TARGET_PER_MONTH = 1.0


def household_bins(trace, resolution_s: float) -> tuple[int, np.ndarray]:
    """(first bin index, mean power per UTC bin [T]) of a simulated household's trace."""
    k = np.asarray(trace.ts_s, np.int64) // int(resolution_s)
    first = int(k[0])
    sums = np.bincount(k - first, weights=np.asarray(trace.power_w, np.float64))
    counts = np.bincount(k - first)
    return first, np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def replay_fleet(bundle: Path, households: int, days: int, seed: int, start: str = "2024-01-01",
                 release_after_s: float | None = None) -> dict:
    host = ModelHost(opener=lambda p: open_model(p, "onnx", "int8", 1))
    if not host.try_load(bundle):
        raise SystemExit(f"bundle refused: {host.last_error}")
    model = host.current
    shape = model.tasks["anomaly"]
    res, D = shape.resolution_s, model.history_days
    per_day = int(round(86400 / res))
    sim_days = days + D + 2  # the history, the first window's day, the replayed days
    meters = []
    t0 = time.perf_counter()
    for trace in simulate_fleet(households, sim_days, resolution_s=int(res), seed=seed, start=start):
        first, bins = household_bins(trace, res)
        eval_from = (D + 1) * per_day + (-first) % per_day  # a whole UTC day of history and window first
        stop = min(len(bins), eval_from + days * per_day)
        r = replay_meter(host, bins[:stop], first, eval_from, meter_id=trace.household_id,
                         release_after_s=release_after_s)
        meters.append({"household": trace.household_id, "windows": len(r.flag), "alarms": r.alarms,
                       "model_alarms": alarm_episodes(r.model_flag), "fault_alarms": alarm_episodes(r.fault_flag),
                       "unheld_alarms": alarm_episodes(r.window_flag),
                       "alarm_days": r.alarm_days(), "flagged_windows": int(r.flag.sum()),
                       "days": len(r.flag) / per_day, "max_score": float(r.score.max()) if len(r.score) else None,
                       "median_score": float(np.median(r.score)) if len(r.score) else None,
                       "history_days_seen": int(r.history_days.min()) if len(r.history_days) else 0})
        logging.info("%s: %d alarms over %.1f days (%d flagged windows)", trace.household_id, r.alarms,
                     meters[-1]["days"], meters[-1]["flagged_windows"])
    return {
        "bundle": str(bundle), "model_version": model.version, "history_days": D, "resolution_s": res,
        "trained_by": trained_by(bundle),
        "threshold_source": model.anomaly_threshold_source,
        "threshold_window_logit": (model.anomaly_threshold.window_logit if model.anomaly_threshold else 0.0),
        "households": households, "days": days, "seed": seed, "start": start,
        "alarm_release_after_s": ScheduleConfig().alarm_release_after_s if release_after_s is None else release_after_s,
        **summarise(meters),
        "replay_seconds": round(time.perf_counter() - t0, 1), "meters": meters,
    }


def summarise(meters: list[dict]) -> dict:
    """Alarms (rising edges) and alarm days per meter per month over the replayed meters."""
    per_month = np.array([m["alarms"] * DAYS_PER_MONTH / max(m["days"], 1e-9) for m in meters])
    days_per_month = np.array([m["alarm_days"] * DAYS_PER_MONTH / max(m["days"], 1e-9) for m in meters])
    return {
        "target_per_meter_per_month": TARGET_PER_MONTH,
        "alarms_total": int(sum(m["alarms"] for m in meters)),
        "model_alarms_total": int(sum(m.get("model_alarms", 0) for m in meters)),
        "fault_alarms_total": int(sum(m.get("fault_alarms", 0) for m in meters)),
        "unheld_alarms_total": int(sum(m.get("unheld_alarms", 0) for m in meters)),
        "alarms_per_meter_per_month": float(per_month.mean()),
        "alarms_per_meter_per_month_median": float(np.median(per_month)),
        "alarms_per_meter_per_month_max": float(per_month.max()),
        "alarm_days_per_meter_per_month": float(days_per_month.mean()),
        "meters_over_target": int((per_month > TARGET_PER_MONTH).sum()),
        "meters_without_alarm": int(sum(m["alarms"] == 0 for m in meters)),
        "met": bool(per_month.mean() <= TARGET_PER_MONTH),
    }


def trained_by(bundle: Path) -> str:
    """How the bundle was trained, from the pipeline's ``pipeline.json`` beside it (if any)."""
    summary = Path(bundle).parent / "pipeline.json"
    if not summary.exists():
        return "unknown (no pipeline.json beside the bundle)"
    c = json.loads(summary.read_text()).get("config", {})
    return (f"export.pipeline: {c.get('households')} households x {c.get('days')} days, seed {c.get('seed')}, "
            f"history_days {c.get('history_days', 0)}, pretrain/fine-tune/distil steps {c.get('pretrain_steps')}/"
            f"{c.get('finetune_steps')}/{c.get('distill_steps')}, anomaly threshold target "
            f"{c.get('target_false_alarms_per_month', 'none')} per month")


def write_results(res: dict, out_dir: Path, name: str, command: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps({**res, "command": command}, indent=2) + "\n")
    lines = [
        "# False alarms on clean meters (the agent's anomaly path, replayed)", "",
        f"`{command}`", "",
        f"{res['households']} held-out simulated households (fleet seed {res['seed']}) x {res['days']} days from "
        f"{res.get('start', '2024-01-01')}, "
        f"one evaluation per {res['resolution_s']:.0f}-s bin after a full history of {res['history_days']} days; "
        f"bundle `{res['model_version']}` ({res['trained_by']}), threshold: {res['threshold_source']} "
        f"(window logit {res['threshold_window_logit']:.3f}). An alarm is a rising edge of the published flag; an alarm "
        "day a day with at least one flagged window (the unit the threshold is calibrated in). A pipeline bundle "
        "is trained again by `python bench/false_alarms.py --preset demo --history-days D`. The published flag is "
        "the model's calibrated flag OR a gateway fault rule (`edge.signal.faults`: spikes, stuck values, zero runs, "
        "sign errors against the meter's own history). As in the agent, each window is cut at the meter's "
        "threshold (the bundle's; the meter's own refit once it has 14 days of its scores, never below the "
        "bundle's) and an alarm stays up until the windows have been clean for "
        f"{res.get('alarm_release_after_s', 0) / 3600:g} h (`schedule.alarm_release_after_s`). Without that hold "
        f"the windows' own flags rise {res.get('unheld_alarms_total', '-')} times "
        f"({res.get('unheld_alarms_total', 0) * 30 / max(res['households'] * res['days'], 1):.2f} per meter per "
        f"month): the model's flag {res.get('model_alarms_total', '-')} times, the fault rules' "
        f"{res.get('fault_alarms_total', '-')} (a window may have both).", "",
        "| alarms / meter / month: mean | median | max of a meter | alarm days / meter / month | "
        "meters over 1 / month | meters without alarm | alarms in total | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {res['alarms_per_meter_per_month']:.2f} | {res['alarms_per_meter_per_month_median']:.2f} | "
        f"{res['alarms_per_meter_per_month_max']:.2f} | {res['alarm_days_per_meter_per_month']:.2f} | "
        f"{res['meters_over_target']} of {res['households']} | {res['meters_without_alarm']} | {res['alarms_total']} | "
        f"<= {res['target_per_meter_per_month']:g} (mean) | {'yes' if res['met'] else 'no'} |", "",
    ]
    (out_dir / f"{name}.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="bench/false_alarms.py", description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=None, help="the bundle to replay (default: train one with --preset)")
    p.add_argument("--preset", default="demo", choices=("quick", "demo", "full"),
                   help="pipeline preset trained when no --bundle is given")
    p.add_argument("--history-days", type=int, default=None, help="D of the trained model (default: the preset's)")
    p.add_argument("--households", type=int, default=40)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=2026, help="fleet seed of the held-out households")
    p.add_argument("--start", default="2024-01-01",
                   help="first simulated day (the pipeline trains on days from 2024-01-01: winter)")
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    p.add_argument("--name", default="false_alarms")
    p.add_argument("--release-after-s", type=float, default=None,
                   help="the alarm hold (default: the agent's schedule.alarm_release_after_s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="unimeter-false-alarms-") as work:
        bundle = Path(args.bundle) if args.bundle else _train(args, Path(work))
        res = replay_fleet(bundle, args.households, args.days, args.seed, args.start, args.release_after_s)
        write_results(res, Path(args.out_dir), args.name, "python bench/false_alarms.py " + shlex.join(argv))
    print(Path(args.out_dir, f"{args.name}.md").read_text())
    return 0


def _train(args, work: Path) -> Path:
    from export.pipeline import PipelineConfig, run_pipeline

    overrides = {} if args.history_days is None else {"history_days": args.history_days}
    cfg = PipelineConfig.preset(args.preset, work / "train", include_tflite=False, progress=False, **overrides)
    return run_pipeline(cfg).bundle_dir


if __name__ == "__main__":
    sys.exit(main())
