"""The methods under evaluation, by name: the task baselines (``trainer.baselines``, the classical
gap fillers and NILM of ``edge.signal``) and the unified model with its ablations
(``trainer.evaluation.unified``). Each entry is a factory of an object with ``fit(train, val)``
and ``predict(test)``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.signal import gapfill, nilm
from trainer import baselines as b
from trainer.baselines.saits import SaitsConfig, SaitsImputer
from trainer.evaluation.config import TASKS, TEACHER, UNIFIED_VARIANTS, EvalConfig, EvaluationError
from trainer.evaluation.unified import UNIFIED_TASK_CLASSES, UnifiedBackbones

FHMM_APPLIANCES = 5  # the FHMM's joint state space grows as 2^A


def _train_cfg(cfg: EvalConfig, lr: float, batch_size: int = 32, epochs: int | None = None) -> b.TrainConfig:
    return b.TrainConfig(epochs=epochs or cfg.baseline_epochs, batch_size=batch_size, lr=lr,
                         early_stop_patience=max(3, (epochs or cfg.baseline_epochs) // 3),
                         max_train_windows=cfg.epoch_windows, seed=cfg.seed, progress=cfg.progress)


def signal_fillers() -> dict[str, Callable]:
    """The classical gap fillers of ``edge.signal.gapfill`` as ``fill(values, missing, ts_s)``
    callables, plus its ``auto`` policy."""
    names = [*gapfill.FILLERS, "auto"]
    return {n: (lambda values, missing, ts_s, n=n: gapfill.fill(n, values, missing, ts_s)) for n in names}


def baseline_methods(task: str, cfg: EvalConfig) -> dict[str, Callable[[], object]]:
    """Factories of the baselines of one task, by method name.

    The learned baselines run ``baseline_epochs`` epochs at lr 1e-3 rather than seed 004's 40 at
    1e-4: the same schedule otherwise (plateau halving, early stopping, best-validation weights),
    within a CPU budget where 40 epochs at 1e-4 would leave them under-trained, not stronger."""
    if task == "forecast":
        return {
            "seasonal_naive": b.SeasonalNaive,
            "weekly_naive": b.WeeklyNaive,
            "lstm": lambda: b.LSTMForecaster(b.LSTMConfig(train=_train_cfg(cfg, 1e-3))),
            "dlinear": lambda: b.DLinearForecaster(b.DLinearConfig(train=_train_cfg(cfg, 1e-3, 64))),
        }
    if task == "imputation":
        out = {"linear_interp": b.LinearInterpolation, "seasonal_fill": b.SeasonalImputer}
        if cfg.history_days >= 7:  # the imputation days carry a week of context
            out["previous_week_fill"] = lambda: b.SeasonalImputer(lag_days=7)
        for name, fill in signal_fillers().items():
            if name == "linear":
                continue  # the same method as linear_interp
            out[f"signal_{name}"] = lambda n=name, f=fill: b.SignalFiller(f"signal_{n}", f)
        out["bilstm"] = lambda: b.BiLSTMImputer(b.BiLSTMImputerConfig(
            missing_rates=tuple(cfg.missing_rates), train=_train_cfg(cfg, 1e-3)))
        out["saits"] = lambda: SaitsImputer(SaitsConfig(epochs=cfg.saits_epochs, seed=cfg.seed),
                                            max_train_windows=cfg.saits_windows)
        return out
    if task == "anomaly":
        return {"zscore": b.ZScoreDetector,
                "cnn": lambda: b.CNNDetector(b.CNNDetectorConfig(train=_train_cfg(cfg, 1e-3, 64)))}
    if task == "nilm":
        out = {"cnn_seq2seq": lambda: b.CNNDisaggregator(b.CNNDisaggregatorConfig(
            train=_train_cfg(cfg, 1e-3, 32, cfg.nilm_epochs)))}
        out.update(signal_nilm_methods())
        return out
    raise EvaluationError(f"unknown task {task!r}")


def _fhmm(apps, agg, ts):
    # model the FHMM_APPLIANCES largest consumers (the usual FHMM set-up); the rest fall into its
    # "other" chain and are predicted OFF
    top = sorted(apps, key=lambda a: -float(np.sum(apps[a])))[:FHMM_APPLIANCES]
    model = nilm.FHMM().fit({a: apps[a] for a in top}, agg)
    return lambda x, t: model.predict(x)


def _weiss(apps, agg, ts):
    matcher = nilm.WeissMatcher(nilm.learn_signatures(apps))
    return lambda x, t: matcher.predict(x, ts_s=t)


def _parson(apps, agg, ts):
    known = [a for a in apps if a in nilm.GENERAL_PRIORS]
    model = nilm.ParsonDisaggregator(known).adapt(agg, ts)
    return lambda x, t: model.predict(x, t)


def signal_nilm_methods() -> dict[str, Callable[[], object]]:
    """Classical NILM of ``edge.signal.nilm``: FHMM (trained on the sub-metered training
    households), Weiss signature matching (signatures learnt from them) and Parson (general
    priors adapted to the aggregate, for the appliances it has priors for)."""
    return {f"signal_{n}": (lambda n=n, f=f: b.SignalNILM(f"signal_{n}", f))
            for n, f in (("fhmm", _fhmm), ("weiss", _weiss), ("parson", _parson))}


def method_names(task: str, cfg: EvalConfig) -> list[str]:
    return [*baseline_methods(task, cfg), *UNIFIED_VARIANTS, TEACHER]


def all_methods(task: str, cfg: EvalConfig, backbones: UnifiedBackbones) -> dict[str, Callable[[], object]]:
    """Baselines, the unified model and (imputation, if ``cfg.ablations``) its ablations,
    filtered by ``cfg.methods`` when given."""
    methods = baseline_methods(task, cfg)
    cls = UNIFIED_TASK_CLASSES[task]
    variants = ["unimeter"] + (["unimeter_no_moe", "unimeter_no_ib"] if cfg.ablations and task == "imputation" else [])
    for v in variants:
        methods[v] = lambda v=v: cls(UNIFIED_VARIANTS[v], backbones)
    if cfg.history_days > 0 and task != "nilm":  # the teacher the student was distilled from, trained once
        methods[TEACHER] = lambda: cls(UNIFIED_VARIANTS["unimeter"], backbones, use_teacher=True)
    if cfg.methods:
        unknown = set(cfg.methods) - {m for t in TASKS for m in method_names(t, cfg)}
        if unknown:
            raise EvaluationError(f"unknown methods {sorted(unknown)}")
        methods = {k: v for k, v in methods.items() if k in cfg.methods}
    return methods
