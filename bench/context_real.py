"""The context model on a real series: day-ahead forecast of the latest 14 days vs the naive forecasts.

    python bench/context_real.py --series taylor      # ~10 min on 2 cores (nice -n 10)

The series goes the user's route: the public series as a user's CSV (``edge.data.public``), read
by ``load_generic``, cut into local days (``to_profiles``), split by time (latest 14 days = test,
the 7 before them = validation, never trained or tuned on), windows with their ``D`` days of
history (``trainer.profile_sets``). A model with ``history_days`` D is pre-trained (Alg. 2) and
fine-tuned for the forecast on the training days only, exported to the int8 bundle, and every test
day is forecast through ``edge.runtime`` from the day before it and the D days before that.
Baselines (``edge.signal.naive``): same day last week and the previous day. Writes
``bench/results/<name>.json`` and ``.md`` with this command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# run from a source checkout without installing; bench/export.py must not shadow the export package
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from edge.data.loaders import load_generic  # noqa: E402
from edge.data.profiles import to_profiles  # noqa: E402
from edge.data.public import PUBLIC_SERIES, write_public_csv  # noqa: E402
from edge.data.userdata import TimeSplit, history_context, time_split  # noqa: E402
from edge.features import CovariateSpec  # noqa: E402
from edge.signal.naive import previous_day_forecast, same_day_last_week_forecast  # noqa: E402
from trainer import profile_sets as S  # noqa: E402

TEST_DAYS, VAL_DAYS = 14, 7


def _profiles(name: str, work: Path):
    spec = PUBLIC_SERIES[name]
    csv = write_public_csv(name, work / f"{name}.csv")
    (series,) = load_generic(csv, tz=spec.tz, unit=None if spec.unit == "MW" else spec.unit)
    return to_profiles(series, spec.tz), CovariateSpec(tz=spec.tz, country=spec.country, subdiv=spec.subdiv)


def _train(args, prof, cov, split: TimeSplit, work: Path) -> Path:
    from trainer.finetune import FinetuneConfig, finetune
    from trainer.model import ModelConfig
    from trainer.pretrain import PretrainConfig, pretrain

    stride = S.stride_for(split.train[1] - split.train[0], prof.steps_per_day, args.windows_per_day)
    parts = {p: S.meter_parts([prof], [split], p) for p in ("train", "val")}
    sets = {p: {t: S.task_set(t, parts[p], cov, stride, args.seed, args.history_days)
                for t in ("pretrain", "forecast")} for p in parts}
    model = ModelConfig.named(args.model, seq_len=prof.steps_per_day, n_patches=12,
                              history_days=args.history_days, activation="relu", dropout=0.0)
    pre = pretrain(PretrainConfig(model=model, out_dir=str(work / "pre"), epochs=1000, max_steps=args.pre_steps,
                                  batch_size=32, progress=False, plot=False, resume=False, seed=args.seed),
                   sets["train"]["pretrain"], sets["val"]["pretrain"])
    return finetune(FinetuneConfig(task="forecast", out_dir=str(work / "ft"), epochs=1000,
                                   max_steps=args.ft_steps, batch_size=32, patience=20, progress=False,
                                   plot=False, resume=False, seed=args.seed),
                    pre, sets["train"]["forecast"], sets["val"]["forecast"])


def _scores(pred_w: np.ndarray, true_w: np.ndarray, unit_w: float) -> dict:
    """MAPE (%), MAE and RMSE in the series' unit (``unit_w`` W per unit: MW or GW)."""
    err = pred_w - true_w
    return {"MAPE_%": round(float(np.mean(np.abs(err) / np.abs(true_w)) * 100), 3),
            "MAE": round(float(np.mean(np.abs(err))) / unit_w, 1),
            "RMSE": round(float(np.sqrt(np.mean(err ** 2))) / unit_w, 1)}


def _model_forecasts(bundle: Path, prof, cov, days: np.ndarray, D: int) -> np.ndarray:
    """Day-ahead forecast of each test day from the day before it and the D days before that,
    through the exported int8 graph."""
    from edge.bundle import load_bundle
    from edge.runtime import InferenceRuntime

    L = prof.steps_per_day
    x = prof.load_w.reshape(-1).astype(np.float32)
    starts = (days - 1) * L
    feeds = {"load_w": np.stack([x[s:s + L] for s in starts]), "observed": np.ones((len(days), L), np.float32),
             "covariates": np.stack([cov.vector(prof.dates[d]) for d in days]).astype(np.float32)}
    if D:
        feeds["history_w"], feeds["history_mask"] = history_context(x, starts, L, D)
    rt = InferenceRuntime(load_bundle(bundle), backend="onnx", precision="int8")
    names = [t.name for t in rt.spec("forecast").inputs]
    return np.concatenate([rt.run("forecast", {n: feeds[n][i:i + 1] for n in names})["day_ahead_w"]
                           for i in range(len(days))])


def run(args) -> dict:
    from export.bundle_writer import BundleConfig, write_bundle

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="context-real-") as tmp:
        work = Path(tmp)
        prof, cov = _profiles(args.series, work)
        n = len(prof.dates)
        split = time_split(n, TEST_DAYS, VAL_DAYS)
        ckpt = _train(args, prof, cov, split, work)
        bundle = write_bundle({"forecast": ckpt}, work / "bundle", model_version="context-real",
                              cfg=BundleConfig(include_tflite=False, check_windows=16))
        days = np.arange(n - TEST_DAYS, n)
        true, unit = prof.load_w[days], PUBLIC_SERIES[args.series].factor_w
        results = {
            f"model D={args.history_days} (int8)": _scores(_model_forecasts(bundle, prof, cov, days,
                                                                             args.history_days), true, unit),
            "same day last week": _scores(same_day_last_week_forecast(prof.load_w)[days], true, unit),
            "previous day": _scores(previous_day_forecast(prof.load_w)[days], true, unit),
        }
    return {"series": args.series, "unit": PUBLIC_SERIES[args.series].unit, "test_days": TEST_DAYS, "val_days": VAL_DAYS, "days": n,
            "history_days": args.history_days, "model": args.model, "pre_steps": args.pre_steps,
            "ft_steps": args.ft_steps, "seconds": round(time.time() - t0), "day_ahead": results}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="bench/context_real.py", description=__doc__.splitlines()[0])
    p.add_argument("--series", choices=sorted(PUBLIC_SERIES), default="taylor")
    p.add_argument("--history-days", type=int, default=7)
    p.add_argument("--model", default="table1")
    p.add_argument("--pre-steps", type=int, default=400)
    p.add_argument("--ft-steps", type=int, default=400)
    p.add_argument("--windows-per-day", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="result file name (default context_real_<series>_D<D>)")
    args = p.parse_args(argv)
    out = run(args)
    out["command"] = "python bench/context_real.py " + shlex.join(argv)
    name = args.name or f"context_real_{args.series}_D{args.history_days}"
    res = ROOT / "bench" / "results"
    (res / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {v['MAPE_%']} | {v['MAE']} | {v['RMSE']} |" for k, v in out["day_ahead"].items())
    (res / f"{name}.md").write_text(
        f"# Context model on a real series: {args.series}, day-ahead, latest {TEST_DAYS} days\n\n"
        f"`{out['command']}` ({out['seconds']} s on the shared 2-core machine)\n\n"
        f"Trained on the days before the latest {TEST_DAYS + VAL_DAYS} (validation: the {VAL_DAYS} before the test "
        f"days); model `{args.model}`, D = {args.history_days}, {args.pre_steps} pre-training and {args.ft_steps} "
        f"fine-tuning steps; forecast through the exported int8 ONNX graph.\n\n"
        f"| method | MAPE % | MAE ({out['unit']}) | RMSE ({out['unit']}) |\n|---|---|---|---|\n{rows}\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
