"""Anomaly F1 per attack kind and lambda: the bundle as the agent decides, beside an oracle.

    python bench/anomaly_f1.py --bundle DIR      # 20 held-out households x 10 test days, ~10 min on 2 cores

Held-out simulated households (fleet seed ``--seed``, never trained on) are simulated for
``--days`` UTC days of 30-min bins; each of the last ``--test-days`` days of every household is
scored clean and with one attack of each kind and lambda (seed 000: scaling ``x (1 + lambda)``
and the up-then-down ramp ``x (1 + lambda r(t))``, +- at random, 4-12 hours at a random place).
Beside seed 000's cells: theft, under-reporting only (scaling by 1 - |lambda|, lambda 0.2 / 0.5 /
0.8, 4-12 h), and the faults a gateway sees on a day of 30-min bins (``edge.sim.inject``): two
spikes (5 x the day's std, >= 1 kW), a stuck value and a zero run (4-12 h each), and four
sign errors (-|p|). Beside the model: the combined flag the agent publishes, the model OR the
signal layer's fault rules (``edge.signal.faults``) on the same windows and history. A day is flagged when any of the L rolling windows ending on it fires (the agent scores a
rolling window every bin), each window with its D days of history from the same series (the
attacked day in place), through the int8 bundle (``edge.runtime``). F1 per cell: that cell's
attacked days against the clean days (1:1), at the bundle's calibrated threshold and at the
best threshold for the cell.

The oracle knows each household's un-attacked distribution: per 30-min slot a Gaussian kernel
density (in asinh(x / 30 W) space, Silverman's bandwidth) of all the household's other clean
days of the same kind (work day / weekend) more than 3 days away, and scores a day by the
generalised likelihood ratio of "a scaling or ramp attack, lambda +-0.1..0.5, 4-12 h anywhere"
against "clean" (slots taken as independent). Its best-threshold F1 shows what per-slot
knowledge of the household allows on this simulator. Writes ``bench/results/<name>.json`` and
``.md`` with this command.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# run from a source checkout without installing; bench/export.py must not shadow the export package
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from edge.bundle import load_bundle  # noqa: E402
from edge.data.userdata import history_context  # noqa: E402
from edge.runtime import InferenceRuntime  # noqa: E402
from edge.signal.faults import detect_faults  # noqa: E402
from edge.sim import inject, simulate_fleet  # noqa: E402

KINDS = ("scaling", "ramp")
LAMBDAS = (0.1, 0.2, 0.3, 0.5)
THEFT_LAMBDAS = (0.2, 0.5, 0.8)  # under-reporting: p' = p (1 - lambda)
FAULTS = ("spike", "stuck", "zero_run", "sign_error")
LENGTHS = tuple(range(8, 25))  # 4-12 h of 30-min bins
FACTOR_GRID = np.linspace(0.45, 1.55, 111)  # oracle: attack factors tabulated per slot (step 0.01)


def attack(x: np.ndarray, kind: str, lam: float, rng: np.random.Generator) -> np.ndarray:
    """One day [L] with a scaling or ramp attack of strength ``lam`` (sign at random)."""
    n = int(rng.choice(LENGTHS))
    s = int(rng.integers(0, len(x) - n + 1))
    r = np.ones(n) if kind == "scaling" else 1 - np.abs(np.linspace(-1, 1, n))
    out = x.copy()
    out[s:s + n] *= 1 + rng.choice([-1.0, 1.0]) * lam * r
    return out


def theft(x: np.ndarray, lam: float, rng: np.random.Generator) -> np.ndarray:
    """One day [L] under-reported by ``lam`` (x (1 - lam)) over 4-12 h at a random place."""
    n = int(rng.choice(LENGTHS))
    s = int(rng.integers(0, len(x) - n + 1))
    return inject.scaling(x, s, s + n - 1, -lam).values


def fault(x: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One day [L] with a gateway fault of ``FAULTS`` (see the module docstring)."""
    n = int(rng.choice(LENGTHS))
    s = int(rng.integers(0, len(x) - n + 1))
    if kind == "spike":
        return inject.spikes(x, rng, 2).values
    if kind == "stuck":
        return inject.stuck(x, s, s + n - 1).values
    if kind == "zero_run":
        return inject.scaling(x, s, s + n - 1, -1.0).values
    if kind == "sign_error":
        return inject.negative(x, rng, 4).values
    raise ValueError(f"unknown fault {kind!r}; choose from {FAULTS}")


def cell_names() -> list[tuple[str, float | None]]:
    """(kind, lambda) of every cell: seed 000's (with the oracle), theft, then the faults."""
    return ([(k, lam) for k in KINDS for lam in LAMBDAS] + [("theft", lam) for lam in THEFT_LAMBDAS]
            + [(f, None) for f in FAULTS])


def perturb(x: np.ndarray, kind: str, lam: float | None, rng: np.random.Generator) -> np.ndarray:
    if kind in KINDS:
        return attack(x, kind, lam, rng)
    if kind == "theft":
        return theft(x, lam, rng)
    return fault(x, kind, rng)


class KDEOracle:
    """GLR scores of one household's days against its clean days (see the module docstring)."""

    def __init__(self, days_w: np.ndarray, weekend: np.ndarray, scale_w: float = 30.0, exclude_days: int = 3):
        self.days, self.weekend = np.asarray(days_w, np.float64), np.asarray(weekend, bool)
        self.c, self.exclude = scale_w, exclude_days

    def _logp(self, v: np.ndarray, s: np.ndarray, bw: np.ndarray) -> np.ndarray:
        """log density of raw values v [..., L] (W): the KDE in asinh space times d asinh / dv."""
        z = (np.arcsinh(v / self.c)[..., None, :] - s) / bw
        dens = np.exp(-0.5 * z ** 2).mean(-2) / (bw * np.sqrt(2 * np.pi))
        return np.log(dens + 1e-300) - 0.5 * np.log(self.c ** 2 + v ** 2)

    def score(self, x_w: np.ndarray, day: int) -> float:
        idx = np.arange(len(self.days))
        keep = (np.abs(idx - day) > self.exclude) & (self.weekend == self.weekend[day])
        s = np.arcsinh(self.days[keep] / self.c)
        bw = np.maximum(1.06 * s.std(0) * len(s) ** -0.2, 0.02)
        x = np.asarray(x_w, np.float64)
        table = (self._logp(x[None, :] / FACTOR_GRID[:, None], s, bw) - np.log(FACTOR_GRID)[:, None]
                 - self._logp(x, s, bw)[None, :])  # [factors, L]
        L, best = table.shape[1], -np.inf
        for w in LENGTHS:
            cols = np.arange(L - w + 1)[:, None] + np.arange(w)[None, :]
            for shape in (np.ones(w), 1 - np.abs(np.linspace(-1, 1, w))):
                for lam in LAMBDAS:
                    for sign in (-1.0, 1.0):
                        rows = np.clip(np.round((sign * lam * shape + 1 - FACTOR_GRID[0]) / 0.01).astype(int),
                                       0, len(FACTOR_GRID) - 1)
                        best = max(best, float(table[rows[None, :], cols].sum(1).max()))
        return best


def day_scores(runtime: InferenceRuntime, names: list[str], D: int, series: np.ndarray, day: int,
               loads: np.ndarray) -> np.ndarray:
    """[N]: the highest window logit over the L windows ending on ``day`` of ``series`` [T], with
    that day replaced by each of ``loads`` [N, L]; the graph is fed the inputs it ``names``."""
    L = loads.shape[1]
    j = np.arange(L)
    out = []
    for load in loads:
        x = series.copy()
        x[day * L:(day + 1) * L] = load
        starts = (day - 1) * L + j + 1
        windows = x[starts[:, None] + j[None, :]].astype(np.float32)
        feeds = {"load_w": windows, "observed": np.ones_like(windows)}
        if D:
            feeds["history_w"], feeds["history_mask"] = history_context(x, starts, L, D)
        out.append(float(runtime.run("anomaly", {k: feeds[k] for k in names})["window_logit"].max()))
    return np.asarray(out)


def day_faults(series: np.ndarray, day: int, loads: np.ndarray, D: int) -> np.ndarray:
    """bool [N]: any of the L rolling windows ending on ``day`` of ``series`` [T] (that day replaced
    by each of ``loads`` [N, L]) has a gateway fault (``edge.signal.faults``, what the agent adds to
    the model's flag), judged against its D days of history; D = 0: never (the agent keeps none)."""
    L = loads.shape[1]
    j = np.arange(L)
    starts = (day - 1) * L + j + 1
    out = np.zeros(len(loads), bool)
    if not D:
        return out
    for n, load in enumerate(loads):
        x = series.copy()
        x[day * L:(day + 1) * L] = load
        hist, mask = history_context(x, starts, L, D)
        out[n] = any(detect_faults(x[s:s + L], hist[i], mask[i], 86400.0 / L).any for i, s in enumerate(starts))
    return out


def f1_at(score: np.ndarray, y: np.ndarray, threshold: float) -> float:
    pred = score > threshold
    tp, fp, fn = np.sum(pred & y), np.sum(pred & ~y), np.sum(~pred & y)
    return float(2 * tp / max(2 * tp + fp + fn, 1))


def best_f1(score: np.ndarray, y: np.ndarray) -> float:
    o = np.argsort(-score)
    tp, fp = np.cumsum(y[o]), np.cumsum(~y[o])
    return float(np.max(2 * tp / (tp + fp + y.sum())))


def run(bundle: Path, households: int, days: int, test_days: int, seed: int) -> dict:
    b = load_bundle(bundle)
    spec = b.task("anomaly")
    D, L = spec.history_days, int(spec.input_spec.get("L", 48))
    threshold = float(spec.calibration.get("window_threshold_logit", 0.0))
    runtime = InferenceRuntime(b, backend="onnx", precision="int8", threads=1)
    names = [t.name for t in spec.inputs]
    rng = np.random.default_rng([seed, 0xF1])
    cells = {cell: {"ours": [], "oracle": [], "faults": []} for cell in cell_names()}
    clean = {"ours": [], "oracle": [], "faults": []}
    t0 = time.perf_counter()
    for trace in simulate_fleet(households, days + 1, resolution_s=1800, seed=seed):
        k = np.asarray(trace.ts_s, np.int64) // 1800
        first_day = -(-int(k[0]) // L)
        sel = (k >= first_day * L) & (k < (first_day + days) * L)
        series = np.bincount(k[sel] - first_day * L, weights=np.asarray(trace.power_w, np.float64)[sel],
                             minlength=days * L)[:days * L] / np.maximum(
            np.bincount(k[sel] - first_day * L, minlength=days * L)[:days * L], 1)
        per_day = series.reshape(days, L)
        weekend = ((first_day + np.arange(days) + 3) % 7) >= 5
        oracle = KDEOracle(per_day, weekend)
        for day in range(days - test_days, days):
            loads = [per_day[day]] + [perturb(per_day[day], kd, lam, rng) for kd, lam in cells]
            ours = day_scores(runtime, names, D, series, day, np.stack(loads))
            faults = day_faults(series, day, np.stack(loads), D)
            # the oracle's hypotheses are seed 000's attacks: it scores the clean day and those cells
            orc = [oracle.score(x, day) if i == 0 or kd in KINDS else np.nan
                   for i, (x, (kd, _)) in enumerate(zip(loads, [("clean", None), *cells], strict=True))]
            clean["ours"].append(ours[0])
            clean["oracle"].append(orc[0])
            clean["faults"].append(faults[0])
            for i, cell in enumerate(cells, start=1):
                cells[cell]["ours"].append(ours[i])
                cells[cell]["faults"].append(faults[i])
                cells[cell]["oracle"].append(orc[i])
        logging.info("%s done (%.0f s)", trace.household_id, time.perf_counter() - t0)
    rows = []
    for (kind, lam), sc in cells.items():
        y = np.r_[np.zeros(len(clean["ours"]), bool), np.ones(len(sc["ours"]), bool)]
        ours = np.r_[clean["ours"], sc["ours"]]
        combined = (ours > threshold) | np.r_[clean["faults"], sc["faults"]]
        rows.append({"kind": kind, "lambda": lam, "f1_calibrated": f1_at(ours, y, threshold),
                     "f1_combined": f1_at(combined.astype(float), y, 0.5),
                     "recall_combined": float(combined[y].mean()),
                     "f1_best_threshold": best_f1(ours, y),
                     "oracle_f1_best_threshold": (best_f1(np.r_[clean["oracle"], sc["oracle"]], y)
                                                  if kind in KINDS else None),
                     "n_attacked": len(sc["ours"]), "n_clean": len(clean["ours"])})
    return {"bundle": str(bundle), "model_version": b.model_version, "history_days": D,
            "threshold_window_logit": threshold, "households": households, "days": days,
            "test_days": test_days, "seed": seed, "clean_days_flagged": int(np.sum(np.asarray(clean["ours"]) > threshold)),
            "clean_days_flagged_combined": int(np.sum((np.asarray(clean["ours"]) > threshold) | np.asarray(clean["faults"]))),
            "clean_days_fault_rules": int(np.sum(clean["faults"])),
            "cells": rows, "seconds": round(time.perf_counter() - t0, 1)}


def write_results(res: dict, out_dir: Path, name: str, command: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps({**res, "command": command}, indent=2) + "\n")
    lines = ["# Anomaly F1 per attack kind and lambda, with the oracle", "", f"`{command}`", "",
             f"{res['households']} held-out simulated households (fleet seed {res['seed']}), the last "
             f"{res['test_days']} of {res['days']} days each, clean and attacked (1:1 per cell); bundle "
             f"`{res['model_version']}` (D = {res['history_days']}), calibrated window logit "
             f"{res['threshold_window_logit']:.3f}: {res['clean_days_flagged']} of {res['cells'][0]['n_clean']} "
             "clean days flagged. A day is flagged when any rolling window ending on it fires.", "",
             "Combined: what the agent publishes, the model's calibrated flag OR a gateway fault of the "
             "signal layer (`edge.signal.faults`: spikes, stuck values, zero runs, sign errors judged against "
             f"the household's own {res['history_days']} days before each window): "
             f"{res['clean_days_flagged_combined']} of {res['cells'][0]['n_clean']} clean days flagged "
             f"({res['clean_days_fault_rules']} by the fault rules).", "",
             "| attack or fault | lambda | F1 model (calibrated threshold) | F1 combined (model OR fault rules) | "
             "recall combined | F1 model (best threshold) | oracle F1 (best threshold) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {'-' if r['lambda'] is None else format(r['lambda'], 'g')} | "
              f"{r['f1_calibrated']:.2f} | {r['f1_combined']:.2f} | {r['recall_combined']:.2f} | "
              f"{r['f1_best_threshold']:.2f} | "
              f"{'-' if r['oracle_f1_best_threshold'] is None else format(r['oracle_f1_best_threshold'], '.2f')} |"
              for r in res["cells"]]
    (out_dir / f"{name}.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="bench/anomaly_f1.py", description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="the bundle whose anomaly model is judged")
    p.add_argument("--households", type=int, default=20)
    p.add_argument("--days", type=int, default=90, help="simulated days per household (the oracle's reference)")
    p.add_argument("--test-days", type=int, default=10)
    p.add_argument("--seed", type=int, default=2026, help="fleet seed of the held-out households")
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    p.add_argument("--name", default="anomaly_f1")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    res = run(Path(args.bundle), args.households, args.days, args.test_days, args.seed)
    write_results(res, Path(args.out_dir), args.name, "python bench/anomaly_f1.py " + shlex.join(argv))
    print(Path(args.out_dir, f"{args.name}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
