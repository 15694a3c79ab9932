"""A user's exported bundle judged on the held-out LATEST days against the naive baselines.

Everything here reads the test days only (``edge.data.userdata.time_split``; validation days for
thresholds and student selection): the int8 bundle through the edge runtime (what the Pi runs),
the teacher and the fp32 student through PyTorch on the very same cases, and the baselines of
``edge.signal.naive``. Inputs are built by NAME from what each model lists (``load_w``,
``observed``, ``history_w`` / ``history_mask`` of a context model, ``covariates``), so a model
with more context runs through the same code.

- day-ahead forecast: MAPE and MAE of each test day, forecast from the day before (and the
  covariates of the day), against the previous day and the same day last week;
- imputation: MAPE on the hidden points of complete test days, random points and blocks of 4-12
  samples at 10, 30 and 50 % missing, against linear interpolation and the previous day's values
  (and SAITS when given); every method sees the same information, the day with its gaps and the
  day before it, never the day after;
- anomaly detection: F1 of flagged days, each test day clean and with one seed 000 attack (a day
  is flagged when any of the L rolling windows ending on it fires, as on the Pi), at the bundle's
  calibrated threshold, against the z-score of each day against its previous 7 days at a
  threshold calibrated the same way on the validation days; false alarms on the clean test days.

Metrics are ``edge.signal.metrics`` (MAPE skips points under ``MAPE_FLOOR_W``: a near-zero load
makes a percentage meaningless; F1 of seed 002 eq. 14) and the ROC AUC of :func:`roc_auc`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.bundle import Bundle, load_bundle
from edge.calibration import DAYS_PER_MONTH, ThresholdCalibration, fit_threshold
from edge.data import userdata as U
from edge.data.profiles import MeterProfiles
from edge.features import CovariateSpec
from edge.runtime import InferenceRuntime
from edge.signal import naive as N
from edge.signal.metrics import classification_metrics, regression_metrics

log = logging.getLogger(__name__)

MAPE_FLOOR_W = 50.0
# each test day masked 8 times per imputation cell, as the student selection masks each validation day
# (export.train_stages): with 2 masks the 28 hourly test days of the vic-hourly series give ~130 hidden
# points in a 10 % cell, on which the same int8 student measured 6.2 % worse than the teacher, and 3.9 %
# better on 8 masks (blocks 30 %: 5.5 % worse on 2, 2.0 % on 8)
JUDGE_IMPUTATION_REPEATS = 8
VERSIONS = ("teacher", "student_fp32", "int8")


@dataclass
class UserData:
    """A user's imported meters: local-day profiles, their time split, covariate spec and labels."""

    profiles: list[MeterProfiles]
    splits: list[U.TimeSplit]
    spec: CovariateSpec
    labels: list[np.ndarray | None]  # uint8 [D, L] per meter: 1 = a labelled anomalous slot
    resolution_s: int

    @property
    def steps_per_day(self) -> int:
        return 86400 // self.resolution_s


class TorchRunner:
    """Task models in PyTorch (teacher, fp32 student), run on the inputs each model names."""

    def __init__(self, models: dict) -> None:
        self.models = models

    def names(self, task: str) -> tuple[str, ...]:
        return tuple(self.models[task].input_names)

    def history_days(self, task: str) -> int:
        return int(getattr(self.models[task].model_cfg, "history_days", 0) or 0)

    def _run(self, task: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        model = self.models[task].eval()
        with torch.no_grad():
            out = model({k: torch.from_numpy(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}

    def run(self, task: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on the inputs the model takes (extra inputs are not passed), 512 windows at a time."""
        names = self.names(task)
        missing = [n for n in names if n not in inputs]
        if missing:
            raise KeyError(f"{task} takes {names}; no {missing} was built")
        n = len(inputs["load_w"])
        parts = [self._run(task, {k: np.ascontiguousarray(inputs[k][a:a + 512], np.float32) for k in names})
                 for a in range(0, n, 512)]
        return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}


class BundleRunner(TorchRunner):
    """The exported bundle through the edge runtime (int8 ONNX: what the Pi runs)."""

    def __init__(self, bundle, precision: str = "int8") -> None:
        """``bundle``: a directory or an already verified ``edge.bundle.Bundle``."""

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.runtime = InferenceRuntime(self.bundle, backend="onnx", precision=precision, threads=1)

    def names(self, task: str) -> tuple[str, ...]:
        return tuple(t.name for t in self.bundle.task(task).inputs)

    def history_days(self, task: str) -> int:
        return int(self.bundle.task(task).input_spec.get("history_days", 0) or 0)

    def _run(self, task: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runtime.run(task, feeds)


def day_inputs(runner, task: str, prof, window_days: np.ndarray, load_w: np.ndarray,
               observed: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every input a profile model may take for day-aligned windows (the window = day
    ``window_days[i]``): the load, the observed mask and the days before it as context."""
    L = prof.steps_per_day
    feeds = {"load_w": load_w, "observed": np.ones_like(load_w) if observed is None else observed}
    d = runner.history_days(task)
    if d:
        hist, mask = U.history_context(prof.load_w.reshape(-1), np.asarray(window_days) * L, L, d)
        feeds.update(history_w=hist, history_mask=mask)
    return feeds


def _days(data, m: int, part: str) -> np.ndarray:
    return data.splits[m].days(part)


def evaluate_forecast(runners: dict, data, part: str = "test", baselines: bool = True) -> dict:
    """Day-ahead MAPE / MAE of each runner (and the naive forecasts) on the days of ``part``."""
    rows: dict[str, list] = {name: [] for name in runners}
    if baselines:
        rows |= {"previous_day": [], "same_day_last_week": []}
    truth, example = [], {}
    for m, prof in enumerate(data.profiles):
        fc = U.forecast_cases(prof, _days(data, m, part))
        if not len(fc.target_day):
            continue
        temps = prof.temperature_c[fc.target_day] if data.spec.weather else None
        cov = data.spec.batch(prof.dates[fc.target_day], temps)
        for name, runner in runners.items():
            feeds = day_inputs(runner, "forecast", prof, fc.target_day - 1, fc.last_day_w)
            rows[name].append(runner.run("forecast", {**feeds, "covariates": cov})["day_ahead_w"])
        if baselines:
            rows["previous_day"].append(fc.last_day_w)
            rows["same_day_last_week"].append(fc.week_ago_w)
        truth.append(fc.target_w)
    if not truth:
        return {"error": f"no {part} day with a complete day before it and a week before it"}
    y = np.concatenate(truth)
    out = {k: regression_metrics(y, np.concatenate(v), MAPE_FLOOR_W) for k, v in rows.items()}
    example = {"truth": y[-1].tolist(), **{k: np.concatenate(v)[-1].tolist() for k, v in rows.items()}}
    return {"methods": out, "n_days": len(y), "example": example}


def _context_fill(prof, day: int, observed: np.ndarray, method: str) -> np.ndarray:
    """A baseline's fill of one day from the same information the model has: the day with its
    gaps and the day before it (never the day after)."""
    x, L = prof.load_w, prof.steps_per_day
    span = x[day - 1:day + 1].reshape(-1).astype(np.float64)
    obs = np.ones(len(span), bool)
    obs[L:2 * L] = observed > 0.5
    filled = N.linear_fill(span, obs) if method == "linear" else N.previous_day_fill(span, obs, L)
    return filled[L:2 * L]


def evaluate_imputation(runners: dict, data, seed: int, part: str = "test", baselines: bool = True,
                        saits=None, repeats: int = JUDGE_IMPUTATION_REPEATS) -> dict:
    """MAPE / MAE on the hidden points per cell (random points or 4-12-sample blocks x rate), each
    day of ``part`` masked ``repeats`` times per cell."""
    cells = {}
    for pattern in ("points", "blocks"):
        for rate in U.IMPUTATION_RATES:
            rng = np.random.default_rng([seed, int(rate * 100), pattern == "blocks"])
            per: dict[str, list] = {name: [] for name in runners}
            if baselines:
                per |= {"linear": [], "previous_day": []} | ({"saits": []} if saits is not None else {})
            truths, n = [], 0
            for m, prof in enumerate(data.profiles):
                ic = U.imputation_cases(prof, _days(data, m, part), pattern, rate, rng, repeats=repeats)
                if not len(ic.day):
                    continue
                miss = ic.observed < 0.5
                truths.append(ic.target_w[miss])
                for name, runner in runners.items():
                    feeds = day_inputs(runner, "imputation", prof, ic.day, ic.target_w * ic.observed, ic.observed)
                    per[name].append(runner.run("imputation", feeds)["load_w_filled"][miss])
                if baselines:
                    for base in ("linear", "previous_day"):
                        fills = np.stack([_context_fill(prof, d, o, base) for d, o in zip(ic.day, ic.observed, strict=True)])
                        per[base].append(fills[miss])
                    if saits is not None:
                        per["saits"].append(saits(prof, ic)[miss])
                n += len(ic.day)
            if truths:
                y = np.concatenate(truths)
                cells[f"{pattern} {int(rate * 100)}%"] = {
                    "methods": {k: regression_metrics(y, np.concatenate(v), MAPE_FLOOR_W)
                                for k, v in per.items() if v}, "n_days": n}
    return {"cells": cells}


def rolling_day_scores(runner, prof, days: np.ndarray, loads: np.ndarray) -> np.ndarray:
    """[N]: the highest window logit over the L windows that end on each case's day, as the agent
    scores a rolling window every bin (the day before is as recorded, the case's day as given)."""
    L = prof.steps_per_day
    x = prof.load_w.reshape(-1)
    j = np.arange(L)
    depth = runner.history_days("anomaly")
    out = np.empty(len(days))
    for i, (d, load) in enumerate(zip(days, loads, strict=True)):
        seg = np.concatenate([x[(d - 1) * L:d * L], load])
        windows = seg[(j + 1)[:, None] + j[None, :]]
        feeds = {"load_w": windows, "observed": np.ones_like(windows)}
        if depth:
            feeds["history_w"], feeds["history_mask"] = U.history_context(x, (d - 1) * L + j + 1, L, depth)
        out[i] = runner.run("anomaly", feeds)["window_logit"].max()
    return out


def clean_windows(data, part: str, history_days: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every day-long window ending on a day of ``part`` (stride 1, as the agent slides), with the
    meter and day its last point falls on; windows touching a labelled slot are left out."""
    inputs: dict[str, list] = {}
    days: list[str] = []
    for m, prof in enumerate(data.profiles):
        a, b = getattr(data.splits[m], part)
        L = prof.steps_per_day
        x = prof.load_w.reshape(-1)
        lab = data.labels[m].reshape(-1) if data.labels[m] is not None else np.zeros(len(x))
        lo = max(a * L - L + 1, 0)
        starts = np.arange(lo, b * L - L + 1)
        ok = np.array([np.isfinite(x[s:s + L]).all() and not lab[s:s + L].any() for s in starts], bool)
        starts = starts[ok] if len(starts) else starts
        idx = starts[:, None] + np.arange(L)[None, :]
        arrays = {"load_w": x[idx], "observed": np.ones((len(starts), L), np.float32)}
        if history_days:
            arrays["history_w"], arrays["history_mask"] = U.history_context(x, starts, L, history_days)
        for k, v in arrays.items():
            inputs.setdefault(k, []).append(v)
        days += [f"{m}:{(s + L - 1) // L}" for s in starts]
    return {k: np.concatenate(v) for k, v in inputs.items()}, np.asarray(days)


def fit_runner_threshold(runner, data: UserData, target: float, part: str = "val"
                         ) -> tuple[ThresholdCalibration, ThresholdCalibration]:
    """(window, point) thresholds of the runner's logits fitted to the false-alarm budget
    (``target`` per meter per month) on every clean window ending on a day of ``part``."""
    wins, day = clean_windows(data, part, runner.history_days("anomaly"))
    out = runner.run("anomaly", wins)
    return (fit_threshold(out["window_logit"].ravel(), day, target),
            fit_threshold(out["point_logit"].max(axis=1), day, target))


def _zscore_threshold(data, target: float) -> float:
    scores, days = [], []
    for m, prof in enumerate(data.profiles):
        z = N.zscore_scores(prof.load_w)
        for d in data.splits[m].days("val"):
            if np.isfinite(z[d]):
                scores.append(z[d])
                days.append(f"{m}:{d}")
    return fit_threshold(np.asarray(scores), np.asarray(days), target).threshold


def evaluate_anomaly(runners: dict, thresholds: dict, data, seed: int, target: float, part: str = "test",
                     baselines: bool = True, repeats: int = 2) -> dict:
    """Each day of ``part`` clean and attacked (``repeats`` times each, a new attack each time); a
    day is flagged when any window ending on it fires (the agent's rule, and the rule the thresholds
    were fitted to)."""
    rng = np.random.default_rng([seed, 0xA40])
    labels, scores, z = [], {name: [] for name in runners}, []
    for m, prof in enumerate(data.profiles):
        ac = U.anomaly_cases(prof, _days(data, m, part), rng, repeats=repeats)
        if not len(ac.day):
            continue
        labels.append(ac.window_label)
        for name, runner in runners.items():
            scores[name].append(rolling_day_scores(runner, prof, ac.day, ac.load_w))
        if baselines:
            z.append(np.array([N.zscore_of(w, prof.load_w[d - 7:d]) for w, d in zip(ac.load_w, ac.day, strict=True)]))
    if not labels:
        return {"error": f"no complete {part} day with 7 complete days before it"}
    y = np.concatenate(labels)
    out = {name: {**classification_metrics(y > 0.5, np.concatenate(v) > thresholds[name]), "threshold_logit": thresholds[name],
                  "auc": roc_auc(y, np.concatenate(v))} for name, v in scores.items()}
    if baselines:
        z_thr = _zscore_threshold(data, target)
        zs = np.concatenate(z)
        out["zscore_7d"] = {**classification_metrics(y > 0.5, zs > z_thr), "threshold": z_thr, "auc": roc_auc(y, zs)}
    clean = y < 0.5
    result = {"methods": out, "n_cases": len(y), "clean_days": int(clean.sum())}
    for name, v in scores.items():
        fa = int((np.concatenate(v)[clean] > thresholds[name]).sum())
        result.setdefault("false_alarm_days", {})[name] = fa
        result.setdefault("false_alarms_per_month", {})[name] = fa * DAYS_PER_MONTH / max(int(clean.sum()), 1)
    return result


def roc_auc(label: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    label = np.asarray(label).ravel() > 0.5
    score = np.asarray(score, float).ravel()
    pos, neg = score[label], score[~label]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def evaluate_bundle(bundle: Path, teachers: dict, students: dict, data: UserData, seed: int = 0,
                    target_per_month: float = 1.0, saits=None, imputation_repeats: int = JUDGE_IMPUTATION_REPEATS) -> dict:
    """The report: teacher and fp32 student (PyTorch) and the int8 bundle on the test days (each
    masked ``imputation_repeats`` times per imputation cell)."""
    from trainer.checkpoint import load_task_model

    runners = {"teacher": TorchRunner({t: load_task_model(p) for t, p in teachers.items()}),
               "student_fp32": TorchRunner({t: load_task_model(p) for t, p in students.items()}),
               "int8": BundleRunner(bundle)}
    out: dict = {"bundle": str(bundle), "resolution_s": data.resolution_s, "steps_per_day": data.steps_per_day}
    if "forecast" in teachers:
        out["forecast"] = evaluate_forecast(runners, data)
    if "imputation" in teachers:
        out["imputation"] = evaluate_imputation(runners, data, seed, saits=saits, repeats=imputation_repeats)
    if "anomaly" in teachers:
        cal = runners["int8"].bundle.task("anomaly").calibration
        if "window_threshold_logit" not in cal:
            raise U.UserDataError(f"{bundle}: the anomaly model carries no calibrated threshold")
        thresholds = {name: fit_runner_threshold(r, data, target_per_month)[0].threshold
                      for name, r in runners.items() if name != "int8"}
        thresholds["int8"] = float(cal["window_threshold_logit"])
        out["anomaly"] = evaluate_anomaly(runners, thresholds, data, seed, target_per_month)
        out["anomaly"]["calibration"] = cal
    out["checks"] = targets(out)
    return out


def targets(res: dict) -> list[dict]:
    """The issue's targets per cell: met or missed, by how much."""
    checks = []

    def add(name: str, ours: float, best_name: str, best: float, lower: bool) -> None:
        met = ours < best if lower else ours > best
        checks.append({"check": name, "ours": ours, "baseline": best_name, "baseline_value": best, "met": bool(met)})

    fc = res.get("forecast", {}).get("methods")
    if fc:
        add("day-ahead MAPE below same day last week", fc["int8"]["mape_pct"], "same_day_last_week",
            fc["same_day_last_week"]["mape_pct"], True)
    for cell, c in res.get("imputation", {}).get("cells", {}).items():
        base = {k: v["mape_pct"] for k, v in c["methods"].items() if k not in VERSIONS}
        name = min(base, key=base.get)
        ours = c["methods"]["int8"]["mape_pct"]
        checks.append({"check": f"imputation MAPE {cell} at or below the best baseline", "ours": ours,
                       "baseline": name, "baseline_value": base[name], "met": bool(ours <= base[name])})
    an = res.get("anomaly", {}).get("methods")
    if an:
        add("anomaly F1 above z-score (7 days), calibrated thresholds", an["int8"]["f1"], "zscore_7d",
            an["zscore_7d"]["f1"], False)
        target = res["anomaly"].get("calibration", {}).get("target_false_alarms_per_month")
        rate = res["anomaly"].get("false_alarms_per_month", {}).get("int8")
        if target is not None and rate is not None:
            checks.append({"check": "false alarms per month on the clean test days at or below the calibration target",
                           "ours": rate, "baseline": "target", "baseline_value": float(target),
                           "met": bool(rate <= target)})
    for task, metric, lower in (("forecast", "mape_pct", True), ("anomaly", "f1", False)):
        m = res.get(task, {}).get("methods")
        if m:
            t, s = m["teacher"][metric], m["int8"][metric]
            rel = (s - t) / abs(t) if t else 0.0
            checks.append({"check": f"int8 student within 5 % of the teacher ({task} {metric})", "ours": s,
                           "baseline": "teacher", "baseline_value": t, "met": bool((rel if lower else -rel) <= 0.05)})
    for cell, c in res.get("imputation", {}).get("cells", {}).items():
        t, s = c["methods"]["teacher"]["mape_pct"], c["methods"]["int8"]["mape_pct"]
        checks.append({"check": f"int8 student within 5 % of the teacher (imputation {cell} MAPE)", "ours": s,
                       "baseline": "teacher", "baseline_value": t, "met": bool(s <= 1.05 * t)})
    return checks
