"""Run the evaluation: build each task's data, fit every method on train (choosing on val),
score it once on test with ``edge.signal.metrics``, and write the results."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from edge.signal.metrics import classification_metrics, nilm_metrics, regression_metrics
from trainer.evaluation.config import RNG_STREAMS, SPLITS, STEPS_PER_DAY, EvalConfig, config_dict
from trainer.evaluation.data import (
    ATTACK_KINDS,
    FleetProfiles,
    NILMData,
    anomaly_data,
    cap,
    day_contexts,
    forecast_data,
    imputation_days,
    missing_masks,
    nilm_data,
    simulate_profiles,
    split_households,
    with_mask,
)
from trainer.evaluation.methods import all_methods
from trainer.evaluation.report import write_outputs
from trainer.evaluation.targets import check_targets
from trainer.evaluation.unified import Exporter, UnifiedBackbones

log = logging.getLogger("trainer.evaluation")


def _fit_predict(name: str, factory: Callable[[], object], train, val, test, timing: dict):
    t0 = time.perf_counter()
    method = factory()
    method.fit(train, val)
    t1 = time.perf_counter()
    pred = method.predict(test)
    timing[name] = {"fit_s": round(t1 - t0, 2), "predict_s": round(time.perf_counter() - t1, 2)}
    return method, pred


def _guarded(results: dict, name: str, fn: Callable[[], None]) -> None:
    """Run one method; a method that fails is recorded with its error, the others still run."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - one broken method must not lose the whole evaluation
        log.exception("method %s failed", name)
        results.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"


def run_forecast(data: dict, methods: dict, cfg: EvalConfig) -> dict:
    res: dict = {"day_ahead": {}, "hour_ahead": {}, "timing": {}, "n_test_windows": len(data["test"])}
    test = data["test"]
    for name, factory in methods.items():
        def one(name=name, factory=factory):
            _, pred = _fit_predict(name, factory, data["train"], data["val"], test, res["timing"])
            res["day_ahead"][name] = regression_metrics(test.target_w, pred.day_ahead_w, cfg.mape_floor_w)
            res["hour_ahead"][name] = regression_metrics(test.target_w[:, :2], pred.hour_ahead_w, cfg.mape_floor_w)
        _guarded(res, name, one)
    return res


def run_imputation(data: dict, methods: dict, cfg: EvalConfig) -> dict:
    """Each method is fitted once, then scored on every (pattern, rate) mask of the test days;
    the masks come from one seeded generator, so every method sees the same missing points. With
    context (``cfg.history_days`` > 0) a ``day`` cell hides whole days (the gap spans the day; the
    methods that read earlier days fill it). A method that cannot fill a cell (nothing observed to
    interpolate from) is recorded under ``errors`` for that cell and still scored on the others."""
    res: dict = {p: {f"{r:.2f}": {} for r in cfg.missing_rates} for p in cfg.missing_patterns}
    res["timing"], res["n_test_days"] = {}, len(data["test"])
    test = data["test"]
    masks = {(p, r): missing_masks(len(test), r, p, np.random.default_rng([cfg.seed, i, j]))
             for i, p in enumerate(cfg.missing_patterns) for j, r in enumerate(cfg.missing_rates)}
    if cfg.history_days > 0:
        masks[("day", 1.0)] = np.zeros((len(test), STEPS_PER_DAY), bool)
        res["day"] = {"1.00": {}}
    for name, factory in methods.items():
        def one(name=name, factory=factory):
            t0 = time.perf_counter()
            method = factory()
            method.fit(data["train"], data["val"])
            t1 = time.perf_counter()
            for (p, r), obs in masks.items():
                def cell(p=p, r=r, obs=obs):
                    filled = method.predict(with_mask(test, obs))
                    miss = ~obs
                    res[p][f"{r:.2f}"][name] = regression_metrics(test.load_w[miss], filled[miss], cfg.mape_floor_w)
                _guarded(res, f"{name} ({p} {r:.0%})", cell)
            res["timing"][name] = {"fit_s": round(t1 - t0, 2), "predict_s": round(time.perf_counter() - t1, 2)}
        _guarded(res, name, one)
    return res


def anomaly_scores(test, pred) -> dict[str, dict]:
    """Window metrics per attack kind on {clean windows} + {windows with that attack}, with the
    point F1 on the same windows."""
    out = {}
    for kind in ATTACK_KINDS:
        sel = (test.attack == "none") | (test.attack == kind)
        m = classification_metrics(test.window_label[sel], pred.window_flag[sel])
        m["point_f1"] = classification_metrics(test.point_label[sel], pred.point_flag[sel])["f1"]
        out[kind] = m
    return out


def run_anomaly(data: dict, methods: dict, cfg: EvalConfig) -> dict:
    res: dict = {**{k: {} for k in ATTACK_KINDS}, "timing": {}, "n_test_windows": len(data["test"])}
    test = data["test"]
    for name, factory in methods.items():
        def one(name=name, factory=factory):
            _, pred = _fit_predict(name, factory, data["train"], data["val"], test, res["timing"])
            for kind, m in anomaly_scores(test, pred).items():
                res[kind][name] = m
        _guarded(res, name, one)
    return res


def nilm_scores(test, pred, appliances: list[str]) -> dict:
    """The NILM metrics of one method's prediction on the test windows."""
    return nilm_metrics(test.appliance_w, test.on, pred.appliance_w, pred.on, appliances, test.resolution_s)


def run_nilm(data: NILMData, methods: dict, cfg: EvalConfig) -> dict:
    res: dict = {"methods": {}, "timing": {}, "appliances": data.appliances, "n_test_windows": len(data.test)}
    for name, factory in methods.items():
        def one(name=name, factory=factory):
            _, pred = _fit_predict(name, factory, data.train, data.val, data.test, res["timing"])
            res["methods"][name] = nilm_scores(data.test, pred, data.appliances)
        _guarded(res, name, one)
    return res


def evaluate(cfg: EvalConfig, fleet: FleetProfiles | None = None, command: str | None = None,
             exporter: Exporter | None = None) -> dict:
    """Run every task in ``cfg.tasks`` and write results.json, the markdown table and the plots
    into ``cfg.out_dir`` (named ``cfg.name*``). ``fleet`` skips the simulation (tests).
    ``exporter`` (``{task: student checkpoint}, directory -> bundle directory``; the export layer's
    ``write_bundle``, which this layer may not import): with ``cfg.history_days`` > 0 the students
    are scored as exported, int8 ONNX through onnxruntime; without it in PyTorch."""
    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    if fleet is None:
        fleet = simulate_profiles(cfg.n_households, cfg.days, cfg.seed, cfg.progress)
    timing["simulate_s"] = time.perf_counter() - t_start
    split = split_households(fleet.n_households, cfg.split, cfg.seed)
    results: dict = {"config": config_dict(cfg), "command": command or "", "tasks": {},
                     "data": {"households": {k: int(len(v)) for k, v in split.items()},
                              "days_per_household": fleet.n_days}}
    backbones = UnifiedBackbones(cfg, exporter)
    try:
        _run_tasks(cfg, fleet, split, backbones, results, timing)
    finally:
        backbones.close()
    results["pretrain_logs"] = backbones.logs
    results["unified"] = backbones.describe()
    results["targets"] = check_targets(results)
    timing["total_s"] = time.perf_counter() - t_start
    results["timing_s"] = {k: round(v, 1) for k, v in timing.items()}
    results["environment"] = {"python": platform.python_version(), "torch": torch.__version__,
                              "numpy": np.__version__, "threads": cfg.threads}
    write_outputs(results, cfg)
    return results


def _run_tasks(cfg: EvalConfig, fleet: FleetProfiles, split: dict, backbones: UnifiedBackbones,
               results: dict, timing: dict) -> None:
    # one generator per (task, split): the test subsets and attacks do not depend on budgets
    def rng(task: str, split_name: str) -> np.random.Generator:
        return np.random.default_rng([cfg.seed, RNG_STREAMS[task], SPLITS.index(split_name)])

    limit = {"train": cfg.max_train_windows, "val": cfg.max_val_windows, "test": cfg.max_eval_windows}
    imputation_limit = {**limit, "test": min(cfg.max_eval_windows, cfg.max_imputation_test_days)}
    days = {s: fleet.households(idx).power_w.reshape(-1, STEPS_PER_DAY).astype(np.float32)
            for s, idx in split.items()}
    pre_rng = np.random.default_rng([cfg.seed, RNG_STREAMS["pretrain"]])
    keep_train = cap(len(days["train"]), cfg.pretrain_profiles, pre_rng)
    keep_val = cap(len(days["val"]), cfg.max_val_windows, pre_rng)
    if cfg.history_days > 0:  # every day with the D days before it (masked before the series starts)
        pre = {s: day_contexts(fleet, split[s], cfg.history_days) for s in ("train", "val")}
        backbones.pretrain_data[STEPS_PER_DAY] = ({k: v[keep_train] for k, v in pre["train"].items()},
                                                  {k: v[keep_val] for k, v in pre["val"].items()})
    else:
        backbones.pretrain_data[STEPS_PER_DAY] = (days["train"][keep_train], days["val"][keep_val])
    builders = {
        "forecast": lambda s: forecast_data(fleet, split[s], cfg, limit[s], rng("forecast", s)),
        "imputation": lambda s: imputation_days(fleet, split[s], imputation_limit[s], rng("imputation", s),
                                                cfg.history_days),
        "anomaly": lambda s: anomaly_data(fleet, split[s], cfg, limit[s], rng("anomaly", s)),
    }
    runners = {"forecast": run_forecast, "imputation": run_imputation, "anomaly": run_anomaly}
    for task in cfg.tasks:
        t0 = time.perf_counter()
        log.info("task %s", task)
        if task == "nilm":
            data = nilm_data(cfg)
            pre = data.train.load_w[cap(len(data.train), cfg.pretrain_profiles, pre_rng)]
            backbones.pretrain_data[data.train.load_w.shape[1]] = (pre.astype(np.float32),
                                                                  data.val.load_w.astype(np.float32))
            results["tasks"][task] = run_nilm(data, all_methods(task, cfg, backbones), cfg)
        else:
            data = {s: builders[task](s) for s in SPLITS}
            results["tasks"][task] = runners[task](data, all_methods(task, cfg, backbones), cfg)
        timing[f"{task}_s"] = time.perf_counter() - t0
