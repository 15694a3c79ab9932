"""The stages of ``unimeter train all`` on a user's data: pretrain, fine-tune, distil, export.

Each stage calls what the stand-alone command calls (``trainer.pretrain.pretrain``,
``trainer.finetune.finetune``, ``trainer.distill.distill``, ``export.bundle_writer.write_bundle``)
on the sets of ``trainer.profile_sets`` (day-long windows of the training days; validation windows
from the validation days only) with a schedule from ``trainer.schedule.adapt_schedule``, and says
what it chose through the route's :class:`export.train_all.Choices`. A context model's inputs
(``history_w`` / ``history_mask``) are built when the model's config has ``history_days`` > 0.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edge.bundle import load_bundle
from edge.errors import ConfigError, DataError
from edge.runtime import InferenceRuntime
from export.bundle_writer import BundleConfig, write_bundle
from export.quantize import QuantizeConfig
from trainer.checkpoint import DataSpec, load_checkpoint, load_task_model
from trainer.distill import DistillConfig, default_student_config, distill
from trainer.finetune import FinetuneConfig, finetune
from trainer.model import ModelConfig
from trainer.pretrain import PretrainConfig, pretrain
from trainer.profile_sets import meter_parts, task_set
from trainer.schedule import adapt_schedule
from trainer.user_eval import (
    BundleRunner,
    TorchRunner,
    evaluate_anomaly,
    evaluate_forecast,
    evaluate_imputation,
    fit_runner_threshold,
)

SELECTION_MARGIN = 0.025  # a student must be within 2.5 % of the teacher on validation (room for int8)
SELECTION_ANOMALY_REPEATS = 4  # each validation day 4 x clean and 4 x attacked: F1 on enough cases to compare
# each validation day masked 8 times per cell: one mask of 10 taylor validation days leaves ~50 missing points
# in a 10 % cell, where the same students measured 3.3-6.2 % worse than the teacher with one mask and
# 0.8 % worse to 1.6 % better with eight (blocks 10 %, the only cell outside the margin with one)
SELECTION_IMPUTATION_REPEATS = 8
SERVE_CHECK_WINDOWS = 4


def history_days(model_cfg) -> int:
    """Days of context the model takes (0: the one-day model)."""
    return int(getattr(model_cfg, "history_days", 0) or 0)


def _stride(data, preset: dict) -> int:
    return max(1, data.steps_per_day // int(preset["windows_per_day"]))


def _sets(task: str, data, preset: dict, seed: int, history: int):
    """(train, validation) sets of ``task`` ("pretrain" or a profile task)."""

    stride = _stride(data, preset)
    return tuple(task_set(task, meter_parts(data.profiles, data.splits, part, data.labels), data.spec, stride,
                          seed + i, history) for i, part in enumerate(("train", "val")))


def pretrain_stage(cfg, data, preset: dict, choices) -> Path:
    """Alg. 2 on day-long windows of the training days, or the fleet checkpoint when given."""

    L = data.steps_per_day
    if cfg.fleet_checkpoint:
        fleet_L = int(load_checkpoint(cfg.fleet_checkpoint)["model_config"]["seq_len"])
        if fleet_L != L:
            raise ConfigError(f"the fleet checkpoint takes {fleet_L}-point days, this data has {L}-point days "
                              f"({data.resolution_s} s); pretrain a fleet checkpoint at this resolution")
        choices.say("backbone", str(cfg.fleet_checkpoint), f"backbone: {cfg.fleet_checkpoint} (no pretraining)")
        return Path(cfg.fleet_checkpoint)
    model_cfg = ModelConfig(seq_len=L, n_patches=12, history_days=cfg.history_days, **preset["teacher"])
    choices.say("teacher", model_cfg.to_dict(), f"teacher: d_model {model_cfg.d_model}, {model_cfg.n_layers} "
                f"layers, {model_cfg.n_experts} experts (top-{model_cfg.top_k}), L={L}, P={model_cfg.n_patches}, "
                f"{cfg.history_days} days of context")
    train, val = _sets("pretrain", data, preset, cfg.seed, history_days(model_cfg))
    sched = adapt_schedule(len(train), preset["pretrain_steps"])
    choices.say("pretrain_schedule", sched.to_dict(), sched.describe("pretrain", early_stop=False))
    meters = ",".join(p.household_id for p in data.profiles)
    pcfg = PretrainConfig(model=model_cfg, out_dir=str(cfg.out_dir / "pretrain"), epochs=sched.epochs,
                          batch_size=sched.batch_size, max_steps=sched.max_steps, seed=cfg.seed, resume=False,
                          progress=cfg.progress, threads=cfg.threads,
                          data_spec=DataSpec(resolution_s=data.resolution_s, seq_len=L, n_patches=12,
                                             source=f"user:{meters}"))
    return pretrain(pcfg, train, val)


def finetune_stage(cfg, data, preset: dict, task: str, backbone: Path, choices) -> Path:
    """Alg. 1 for one task, early-stopped on the validation days."""

    depth = history_days(ModelConfig.from_dict(load_checkpoint(backbone)["model_config"]))
    train, val = _sets(task, data, preset, cfg.seed, depth)
    sched = adapt_schedule(len(train), preset["finetune_steps"])
    choices.say(f"finetune_{task}_schedule", sched.to_dict(), sched.describe(f"fine-tune {task}"))
    fcfg = FinetuneConfig(task=task, out_dir=str(cfg.out_dir / "finetune"), epochs=sched.epochs,
                          batch_size=sched.batch_size, max_steps=sched.max_steps, patience=sched.patience,
                          seed=cfg.seed, progress=cfg.progress, resume=False, threads=cfg.threads)
    return finetune(fcfg, backbone, train, val)


def val_metrics(task: str, runner, data, seed: int, target_per_month: float = 1.0) -> dict[str, float]:
    """The task's judged metric on the validation days, cell by cell, as the report judges it on
    the test days: day-ahead MAPE; imputation MAPE per cell; anomaly F1 of flagged days at the
    runner's own threshold fitted to the false-alarm budget on the clean validation windows (what
    the bundle's calibration does). Lower is better except F1."""
    if task == "forecast":
        res = evaluate_forecast({"m": runner}, data, "val", baselines=False)
        return {"day-ahead MAPE": res["methods"]["m"]["mape_pct"]} if "methods" in res else {}
    if task == "imputation":
        cells = evaluate_imputation({"m": runner}, data, seed, "val", baselines=False,
                                    repeats=SELECTION_IMPUTATION_REPEATS)["cells"]
        return {f"{c} MAPE": v["methods"]["m"]["mape_pct"] for c, v in cells.items()}
    window, _ = fit_runner_threshold(runner, data, target_per_month, "val")
    res = evaluate_anomaly({"m": runner}, {"m": window.threshold}, data, seed, target_per_month, "val",
                           baselines=False, repeats=SELECTION_ANOMALY_REPEATS)
    return {"F1 (calibrated)": res["methods"]["m"]["f1"]} if "methods" in res else {}


HIGHER_IS_BETTER = ("F1 (calibrated)",)


def relative_gaps(student: dict[str, float], teacher: dict[str, float]) -> dict[str, float]:
    """How much worse than the teacher each metric is, relative (0.03 = 3 % worse; < 0: better)."""
    out = {}
    for k, t in teacher.items():
        if not (np.isfinite(t) and k in student and np.isfinite(student[k])):
            continue
        worse = (t - student[k]) if k in HIGHER_IS_BETTER else (student[k] - t)
        out[k] = float(worse / abs(t)) if t else float(worse > 0)
    return out


def keeps_teacher(student: dict[str, float], teacher: dict[str, float], margin: float = SELECTION_MARGIN) -> bool:
    """Every metric within ``margin`` of the teacher's (relative; F1 is higher-better); a metric the
    student lacks (or gives as NaN) where the teacher has one does not keep it."""
    gaps = relative_gaps(student, teacher)
    judged = [k for k, t in teacher.items() if np.isfinite(t)]
    return all(k in gaps and gaps[k] <= margin for k in judged)


def distill_stage(cfg, data, preset: dict, task: str, teacher_ckpt: Path, choices) -> Path:
    """Distil into the candidate student sizes, smallest first, until one is within 2.5 % of the
    teacher on every validation metric (:func:`val_metrics`, the report's metric); the last
    candidate is the teacher itself. When no student keeps up, the choice says by how much the
    closest missed."""
    target = cfg.target_false_alarms_per_month
    teacher = load_task_model(teacher_ckpt)
    train, val = _sets(task, data, preset, cfg.seed + 7, history_days(teacher.model_cfg))
    t_metrics = val_metrics(task, TorchRunner({task: teacher}), data, cfg.seed, target)
    sched = adapt_schedule(len(train), preset["distill_steps"])
    tried = []
    for i, overrides in enumerate([*preset["students"], "teacher"]):
        if overrides == "teacher":
            path, student = Path(teacher_ckpt), teacher
        else:
            dcfg = DistillConfig(out_dir=str(cfg.out_dir / "distill" / f"{task}-{i}"), epochs=sched.epochs,
                                 batch_size=sched.batch_size, max_steps=sched.max_steps, patience=sched.patience,
                                 seed=cfg.seed, progress=cfg.progress, plot=False, resume=False, threads=cfg.threads,
                                 init="teacher", select_on="metric")
            path = distill(teacher_ckpt, default_student_config(teacher.model_cfg, **overrides), train, val, dcfg)
            student = load_task_model(path)
        metrics = val_metrics(task, TorchRunner({task: student}), data, cfg.seed, target)
        gaps = relative_gaps(metrics, t_metrics)
        start = student.checkpoint.get("metrics", {}).get("distill", {}).get("init") if overrides != "teacher" else None
        tried.append({"candidate": "teacher" if overrides == "teacher" else i, "overrides": overrides, "init": start,
                      "parameters": sum(p.numel() for p in student.parameters()), "val": metrics, "path": str(path),
                      "worst_gap": max(gaps.values(), default=0.0), "keeps_teacher": keeps_teacher(metrics, t_metrics)})
        if tried[-1]["keeps_teacher"]:
            break  # smallest first: the first that keeps the teacher's accuracy ships
    pick = tried[-1]
    closest = min((t for t in tried if t["candidate"] != "teacher"), key=lambda t: t["worst_gap"], default=None)
    missed = pick["candidate"] == "teacher" and closest is not None
    choices.say(f"student_{task}", {"teacher_val": t_metrics, "tried": tried, "chosen": pick["candidate"],
                                    "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
                                    "margin": SELECTION_MARGIN, "metric": list(t_metrics)},
                f"student for {task} (validation days): teacher {_fmt(t_metrics)}; " + "; ".join(
                    f"#{t['candidate']} ({t['parameters']} parameters) {_fmt(t['val'])}" for t in tried) +
                f" -> #{pick['candidate']}" + (
                    f" (no student within {SELECTION_MARGIN:.1%} of the teacher; the closest, #{closest['candidate']}, "
                    f"is {closest['worst_gap']:.1%} worse)" if missed else ""))
    out = cfg.out_dir / "student" / f"{task}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pick["path"], out)
    return out


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in metrics.items())


def anomaly_calibration(bundle, data, target_per_month: float, days_from: str = "validation days") -> dict:
    """The manifest's anomaly ``calibration``: the exported int8 model's window and point logit
    thresholds fitted to ``target_per_month`` false alarms per meter on every clean window ending
    on a validation day of ``data`` (a ``trainer.user_eval.UserData``; the agent's rolling
    schedule)."""

    window, point = fit_runner_threshold(BundleRunner(bundle), data, target_per_month)
    return {
        "window_threshold_logit": window.threshold, "point_threshold_logit": point.threshold,
        "target_false_alarms_per_month": target_per_month,
        "fitted_on": f"int8 model, {window.n_days} clean {days_from} ({window.n_windows} windows, every "
                     "bin, as the agent slides)",
        "window": window.to_dict(), "point": point.to_dict(), "recalibrate_after_days": 14,
    }


def calibrator(cfg, data, choices):
    """The bundle writer's ``calibrate`` hook: :func:`anomaly_calibration` on the validation days."""
    def calibrate(bundle) -> dict[str, dict]:
        if "anomaly" not in bundle.tasks:
            return {}
        figures = anomaly_calibration(bundle, data, cfg.target_false_alarms_per_month)
        window = figures["window"]
        choices.say("anomaly_calibration", figures,
                    f"anomaly threshold (int8 model): window logit {window['threshold']:.3f} for <= "
                    f"{cfg.target_false_alarms_per_month:g} false alarm(s)/month ({window['n_days']} clean validation "
                    f"days, {window['false_alarm_days']} alarm days at it; {window['method']}: empirical "
                    f"{window['empirical_threshold']:.3f}, daily maxima {window['tail_threshold']:.3f}, window tail "
                    f"{window['window_tail_threshold']:.3f})")
        return {"anomaly": figures}
    return calibrate


def export_stage(cfg, data, students: dict, choices) -> Path:
    """The bundle: 8-bit experts with float heads for every task (a user's series may be judged at
    ~1 % MAPE, where int8 heads alone cost several per cent of it: measured on the taylor series),
    calibrated, verified and each task served once through the edge runtime."""

    names = ",".join(p.household_id for p in data.profiles)
    tiny = cfg.preset == "tiny"  # tests: the gather form only, one ONNX export per task
    bcfg = BundleConfig(include_tflite=cfg.include_tflite, include_fp32=False,
                        quantize=QuantizeConfig(moe_int8_scope="experts"),
                        fp32_moe_op=not tiny, int8_moe_op=not tiny)
    path = write_bundle(students, cfg.out_dir / "bundle", model_version=f"user-{names}"[:64], cfg=bcfg,
                        overwrite=True, notes=f"unimeter train all ({cfg.format}, {data.resolution_s} s)",
                        calibrate=calibrator(cfg, data, choices))
    bundle = load_bundle(path)
    served = serve_check(bundle)
    sizes = {t: sum(e["bytes"] for e in bundle.manifest["artifacts"].values() if e["task"] == t) for t in bundle.tasks}
    choices.say("bundle", {"path": str(path), "bytes": sizes, "served": served},
                f"bundle {path} verified and served ({', '.join(served)}): " +
                ", ".join(f"{t} {n / 1e3:.0f} kB" for t, n in sizes.items()))
    return path


SAITS_CONTEXT_DAYS = 1  # the day before each case, as the naive baselines see it (8 days cost ~16x the attention)


def saits_stage(cfg, data, choices):
    """PyPOTS SAITS fitted on the training days (early-stopped on the validation days), seeing each
    case's day with its gaps and the day before it, like the naive baselines: the learned imputation
    baseline the report compares with."""
    from trainer.baselines.saits import SaitsConfig, SaitsFiller

    filler = SaitsFiller(data, SAITS_CONTEXT_DAYS, SaitsConfig(seed=cfg.seed)).fit()
    choices.say("saits", {"context_days": SAITS_CONTEXT_DAYS, "config": vars(filler.cfg)},
                f"SAITS baseline (PyPOTS): fitted on the training days, sees the day and the {SAITS_CONTEXT_DAYS} "
                "day(s) before it")
    return filler


def serve_check(bundle) -> list[str]:
    """Run every task of the verified bundle once through the edge runtime on plausible inputs;
    raises when an output is not finite. Returns the tasks served."""

    runtime = InferenceRuntime(bundle, precision="int8")
    rng = np.random.default_rng(0)
    for name, spec in bundle.tasks.items():
        feeds = {}
        for t in spec.inputs:
            shape = [SERVE_CHECK_WINDOWS, *t.shape[1:]]
            watts = t.name.endswith("_w")  # load_w, history_w: a plausible load; masks and covariates 1
            feeds[t.name] = (rng.uniform(200, 800, shape) if watts else np.ones(shape)).astype(np.float32)
        out = runtime.run(name, feeds)
        bad = [k for k, v in out.items() if not np.isfinite(v).all()]
        if bad:
            raise DataError(f"bundle {bundle.path}: {name} gives non-finite {bad}")
    return sorted(bundle.tasks)
