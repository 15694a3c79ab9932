"""The unified model as evaluation methods: pre-trained once per variant and input length,
fine-tuned per task, run in eval mode. The full model and its ablations (no MoE, no IB) are
variants of one configuration.

With ``EvalConfig.history_days`` D > 0 the profile tasks (forecast, imputation, anomaly) take the
product's path: the model is pre-trained and fine-tuned with each window's D days of context
(``history_w`` / ``history_mask``, built by ``edge.data.userdata.history_context``), the fine-tuned
teacher is distilled into the default student (``trainer.distill``), and the student is exported
by the run's exporter (the export layer's ``write_bundle``: int8 ONNX) and run through the edge
runtime (onnxruntime), as the gateway runs it. ``unimeter`` is that student; ``unimeter_teacher``
the teacher in PyTorch on the same windows. Without an exporter the student runs in PyTorch (fp32).
NILM has no context and keeps the one-window path.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge.task_io import (
    APPLIANCE_W,
    COVARIATES,
    DAY_AHEAD_W,
    HOUR_AHEAD_W,
    LOAD_W,
    LOAD_W_FILLED,
    OBSERVED,
    ON_LOGIT,
    POINT_LOGIT,
    WINDOW_LOGIT,
)
from trainer.baselines import (
    AnomalyPrediction,
    ForecastPrediction,
    NILMPrediction,
    best_f1_threshold,
    on_thresholds,
    training_masks,
)
from trainer.checkpoint import load_checkpoint, load_task_model
from trainer.distill import DistillConfig, default_student_config, distill
from trainer.evaluation.config import STEPS_PER_DAY, TEACHER, EvalConfig, UnifiedVariant
from trainer.evaluation.data import cap
from trainer.finetune import FinetuneConfig, finetune
from trainer.model import ModelConfig
from trainer.pretrain import PretrainConfig, pretrain
from trainer.user_eval import BundleRunner, TorchRunner

log = logging.getLogger(__name__)

# ({task: student checkpoint}, bundle directory) -> the written bundle's directory
Exporter = Callable[[dict[str, Path], Path], Path]


@dataclass
class FittedContextModel:
    """One variant's fine-tuned teacher and its student on one task (D > 0), as runners of
    ``trainer.user_eval`` (inputs by name: load_w, observed, history_w, history_mask, covariates)."""

    teacher: TorchRunner
    student: TorchRunner  # a BundleRunner (int8 ONNX, onnxruntime) when the run has an exporter
    student_scored_as: str


class UnifiedBackbones:
    """Pre-trains (Alg. 2, ``trainer.pretrain.pretrain``) each unified-model variant once per input
    length on the training households, into a scratch directory that lives as long as this object;
    the task methods fine-tune from those checkpoints (Alg. 1, ``trainer.finetune.finetune``)."""

    def __init__(self, cfg: EvalConfig, exporter: Exporter | None = None) -> None:
        self.cfg = cfg
        self.exporter = exporter
        self.fitted: dict[tuple[str, str], FittedContextModel] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="unimeter-eval-")
        self.root = Path(self._tmp.name)
        self.checkpoints: dict[tuple[str, int], Path] = {}
        self.pretrain_data: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.logs: dict[str, dict] = {}

    def close(self) -> None:
        self._tmp.cleanup()

    def history_days(self, seq_len: int) -> int:
        """D of the model for windows of ``seq_len`` points: the run's D for day profiles, 0 for NILM."""
        return self.cfg.history_days if seq_len == STEPS_PER_DAY else 0

    def model_config(self, variant: UnifiedVariant, seq_len: int) -> ModelConfig:
        return ModelConfig.named(self.cfg.unified_model, seq_len=seq_len, n_patches=12,
                                 history_days=self.history_days(seq_len), **variant.overrides)

    def describe(self) -> dict:
        """What ``unimeter`` was in this run (stored in results.json)."""
        scored = sorted({f.student_scored_as for f in self.fitted.values()})
        return {"history_days": self.cfg.history_days, "model": self.cfg.unified_model,
                "unimeter": ("; ".join(scored) if scored else "the fine-tuned model (PyTorch)"),
                "student": (default_student_config(self.model_config(UnifiedVariant("unimeter"), STEPS_PER_DAY)).to_dict()
                            if self.cfg.history_days > 0 else None)}

    def checkpoint(self, variant: UnifiedVariant, seq_len: int) -> Path:
        """The pre-trained checkpoint of ``variant`` for windows of ``seq_len`` points."""
        key = (variant.name, seq_len)
        if key not in self.checkpoints:
            train, val = self.pretrain_data[seq_len]
            epochs = self.cfg.pretrain_epochs if seq_len == STEPS_PER_DAY else self.cfg.nilm_epochs
            pcfg = PretrainConfig(model=self.model_config(variant, seq_len),
                                  out_dir=str(self.root / f"pretrain_{variant.name}_L{seq_len}"),
                                  epochs=epochs, batch_size=self.cfg.pretrain_batch_size,
                                  seed=self.cfg.seed, plot=False,
                                  progress=self.cfg.progress, resume=False, threads=self.cfg.threads)
            self.checkpoints[key] = pretrain(pcfg, train, val)
            self.logs[f"{variant.name}_L{seq_len}"] = load_checkpoint(self.checkpoints[key]).get("metrics", {})
        return self.checkpoints[key]


class UnifiedTaskMethod:
    """The unified model on one task: fine-tuned from its pre-trained checkpoint with
    ``trainer.finetune`` (Alg. 1, eq 2 with the L2-SP regulariser, early stopping on the
    validation households), then run in eval mode from the fine-tuned checkpoint."""

    task = ""

    def __init__(self, variant: UnifiedVariant, backbones: UnifiedBackbones, use_teacher: bool = False) -> None:
        """``use_teacher`` (D > 0): score the teacher of ``variant`` (trained once, shared with the
        student's method) under the name ``unimeter_teacher``."""
        self.name = TEACHER if use_teacher else variant.name
        self.variant, self.backbones, self.use_teacher = variant, backbones, use_teacher
        self.model = None
        self.fitted: FittedContextModel | None = None

    def _fit_or_reuse(self, train: dict, val: dict, appliances: list[str] | None = None) -> None:
        cached = self.backbones.fitted.get((self.variant.name, self.task))
        if cached is not None:
            self.fitted = cached
        else:
            self._fit(train, val, appliances)

    def _fit(self, train: dict, val: dict, appliances: list[str] | None = None) -> None:
        """``train`` / ``val``: the task's arrays by ``trainer.data.TASK_KEYS`` name (with
        ``history_w`` / ``history_mask`` for a context model)."""
        cfg = self.backbones.cfg
        seq_len = train[LOAD_W].shape[1]
        ckpt = self.backbones.checkpoint(self.variant, seq_len)
        keep = cap(len(train[LOAD_W]), cfg.finetune_windows, np.random.default_rng(cfg.seed))
        train_d = {k: np.asarray(v[keep], np.float32) for k, v in train.items()}
        val_d = {k: np.asarray(v, np.float32) for k, v in val.items()}
        epochs = cfg.nilm_epochs if self.task == "nilm" else cfg.finetune_epochs
        fcfg = FinetuneConfig(task=self.task, out_dir=str(self.backbones.root / f"{self.name}_{self.task}"),
                              epochs=epochs, batch_size=cfg.finetune_batch_size,
                              patience=max(2, epochs // 3), seed=cfg.seed,
                              progress=cfg.progress, plot=False, threads=cfg.threads,
                              appliances=list(appliances or []))
        teacher_ckpt = finetune(fcfg, ckpt, train_d, val_d)
        if self.backbones.history_days(seq_len) > 0:
            self.fitted = self._student(teacher_ckpt, train_d, val_d)
        else:
            self.model = load_task_model(teacher_ckpt)

    def _student(self, teacher_ckpt: Path, train_d: dict, val_d: dict) -> FittedContextModel:
        """Distil the teacher into the default student and export it (D > 0); cached per variant
        and task, so ``unimeter_teacher`` reuses the same training."""
        cfg, root = self.backbones.cfg, self.backbones.root
        teacher = load_task_model(teacher_ckpt)
        dcfg = DistillConfig(out_dir=str(root / f"{self.variant.name}_{self.task}_student"),
                             epochs=cfg.distill_epochs, batch_size=cfg.finetune_batch_size, seed=cfg.seed,
                             patience=max(2, cfg.distill_epochs // 3), progress=cfg.progress,
                             threads=cfg.threads, plot=False, resume=False)
        student_ckpt = distill(teacher_ckpt, default_student_config(teacher.model_cfg), train_d, val_d, dcfg)
        if self.backbones.exporter is not None:
            bundle = self.backbones.exporter({self.task: student_ckpt},
                                             root / f"{self.variant.name}_{self.task}_bundle")
            student, how = BundleRunner(bundle, "int8"), "int8 student, exported ONNX through onnxruntime"
        else:
            student, how = TorchRunner({self.task: load_task_model(student_ckpt)}), "fp32 student (PyTorch)"
        fitted = FittedContextModel(TorchRunner({self.task: teacher}), student, how)
        self.backbones.fitted[(self.variant.name, self.task)] = fitted
        return fitted

    def _run(self, inputs: dict[str, np.ndarray], batch: int = 1024) -> dict[str, np.ndarray]:
        if self.model is None:  # a context model: its student (or, for unimeter_teacher, the teacher)
            runner = self.fitted.teacher if self.use_teacher else self.fitted.student
            return runner.run(self.task, {k: np.asarray(v, np.float32) for k, v in inputs.items()})
        self.model.eval()
        n, outs = len(next(iter(inputs.values()))), []
        with torch.no_grad():
            for s in range(0, n, batch):
                b = {k: torch.as_tensor(np.ascontiguousarray(v[s : s + batch]), dtype=torch.float32)
                     for k, v in inputs.items()}
                outs.append({k: v.numpy() for k, v in self.model(b).items()})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _context(b) -> dict[str, np.ndarray]:
    """A batch's ``history_w`` / ``history_mask`` (none for a one-day evaluation)."""
    return {} if b.context_w is None else {"history_w": b.context_w, "history_mask": b.context_mask}


class UnifiedForecaster(UnifiedTaskMethod):
    """Input: the last day (48 points) before the origin (with D > 0 also the D days before that
    day) and the horizon covariates."""

    task = "forecast"

    @staticmethod
    def _inputs(b) -> dict[str, np.ndarray]:
        load = b.history_w[:, -STEPS_PER_DAY:]
        return {LOAD_W: load, OBSERVED: np.ones_like(load), COVARIATES: b.covariates, **_context(b)}

    def _arrays(self, b) -> dict[str, np.ndarray]:
        return {**self._inputs(b), DAY_AHEAD_W: b.target_w, HOUR_AHEAD_W: b.target_w[:, :2]}

    def fit(self, train, val) -> UnifiedForecaster:
        self._fit_or_reuse(self._arrays(train), self._arrays(val))
        return self

    def predict(self, batch) -> ForecastPrediction:
        out = self._run(self._inputs(batch))
        return ForecastPrediction(out[DAY_AHEAD_W], out[HOUR_AHEAD_W])


class UnifiedImputer(UnifiedTaskMethod):
    """Contract inputs: ``load_w`` with missing points set to 0, ``observed`` 1/0 (and with D > 0
    the D days before the day). Training masks are drawn like the BiLSTM imputer's (same rates,
    half random points, half blocks)."""

    task = "imputation"

    @staticmethod
    def _inputs(b, observed: np.ndarray) -> dict[str, np.ndarray]:
        return {LOAD_W: np.where(observed, b.load_w, 0.0), OBSERVED: observed.astype(np.float32), **_context(b)}

    def _arrays(self, days, seed: int) -> dict[str, np.ndarray]:
        rates = tuple(self.backbones.cfg.missing_rates)
        obs = training_masks(len(days), STEPS_PER_DAY, rates, np.random.default_rng(seed))
        return {**self._inputs(days, obs), "target_w": days.load_w}

    def fit(self, train, val) -> UnifiedImputer:
        seed = self.backbones.cfg.seed
        self._fit_or_reuse(self._arrays(train, seed), self._arrays(val, seed + 1))
        return self

    def predict(self, batch) -> np.ndarray:
        return self._run(self._inputs(batch, batch.observed))[LOAD_W_FILLED]


class UnifiedDetector(UnifiedTaskMethod):
    """Window and point logits; decision thresholds are the best-F1 ones on validation."""

    task = "anomaly"

    @staticmethod
    def _inputs(b) -> dict[str, np.ndarray]:
        return {LOAD_W: b.window_w, OBSERVED: np.ones_like(b.window_w), **_context(b)}

    def _arrays(self, b) -> dict[str, np.ndarray]:
        return {**self._inputs(b), "window_label": b.window_label.astype(np.float32),
                "point_label": b.point_label.astype(np.float32)}

    def fit(self, train, val) -> UnifiedDetector:
        self._fit_or_reuse(self._arrays(train), self._arrays(val))
        out = self._run(self._inputs(val))
        self.window_threshold = best_f1_threshold(out[WINDOW_LOGIT].reshape(len(val)), val.window_label)
        self.point_threshold = best_f1_threshold(out[POINT_LOGIT], val.point_label)
        return self

    def predict(self, batch) -> AnomalyPrediction:
        out = self._run(self._inputs(batch))
        w, p = out[WINDOW_LOGIT].reshape(len(batch)), out[POINT_LOGIT]
        return AnomalyPrediction(w, p, w > self.window_threshold, p > self.point_threshold)


class UnifiedDisaggregator(UnifiedTaskMethod):
    """The same architecture pre-trained on high-rate windows (its own L), with the NILM head;
    per-appliance ON thresholds on its logits are the best-F1 ones on validation, as for the CNN."""

    task = "nilm"

    @staticmethod
    def _arrays(b) -> dict[str, np.ndarray]:
        return {LOAD_W: b.load_w, APPLIANCE_W: b.appliance_w, "appliance_on": b.on.astype(np.float32)}

    def fit(self, train, val) -> UnifiedDisaggregator:
        self._fit(self._arrays(train), self._arrays(val), appliances=list(train.appliances))
        self.on_thresholds = on_thresholds(self._run({LOAD_W: val.load_w}, batch=256)[ON_LOGIT], val.on)
        return self

    def predict(self, batch) -> NILMPrediction:
        out = self._run({LOAD_W: batch.load_w}, batch=256)
        return NILMPrediction(out[APPLIANCE_W], out[ON_LOGIT] > self.on_thresholds[None, :, None])


UNIFIED_TASK_CLASSES = {"forecast": UnifiedForecaster, "imputation": UnifiedImputer,
                        "anomaly": UnifiedDetector, "nilm": UnifiedDisaggregator}
