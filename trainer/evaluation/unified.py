"""The unified model as evaluation methods: pre-trained once per variant and input length,
fine-tuned per task, run in eval mode. The full model and its ablations (no MoE, no IB) are
variants of one configuration."""

from __future__ import annotations

import tempfile
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
from trainer.evaluation.config import STEPS_PER_DAY, EvalConfig, UnifiedVariant
from trainer.evaluation.data import cap
from trainer.finetune import FinetuneConfig, finetune
from trainer.model import ModelConfig
from trainer.pretrain import PretrainConfig, pretrain


class UnifiedBackbones:
    """Pre-trains (Alg. 2, ``trainer.pretrain.pretrain``) each unified-model variant once per input
    length on the training households, into a scratch directory that lives as long as this object;
    the task methods fine-tune from those checkpoints (Alg. 1, ``trainer.finetune.finetune``)."""

    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg
        self._tmp = tempfile.TemporaryDirectory(prefix="unimeter-eval-")
        self.root = Path(self._tmp.name)
        self.checkpoints: dict[tuple[str, int], Path] = {}
        self.pretrain_data: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.logs: dict[str, dict] = {}

    def close(self) -> None:
        self._tmp.cleanup()

    def model_config(self, variant: UnifiedVariant, seq_len: int) -> ModelConfig:
        return ModelConfig.named(self.cfg.unified_model, seq_len=seq_len, n_patches=12, **variant.overrides)

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
    keys: tuple[str, ...] = ()

    def __init__(self, variant: UnifiedVariant, backbones: UnifiedBackbones) -> None:
        self.name, self.variant, self.backbones = variant.name, variant, backbones
        self.model = None

    def _fit(self, train: tuple, val: tuple, appliances: list[str] | None = None) -> None:
        cfg = self.backbones.cfg
        seq_len = train[0].shape[1]
        ckpt = self.backbones.checkpoint(self.variant, seq_len)
        keep = cap(len(train[0]), cfg.finetune_windows, np.random.default_rng(cfg.seed))
        train_d = {k: np.asarray(v[keep], np.float32) for k, v in zip(self.keys, train, strict=True)}
        val_d = {k: np.asarray(v, np.float32) for k, v in zip(self.keys, val, strict=True)}
        epochs = cfg.nilm_epochs if self.task == "nilm" else cfg.finetune_epochs
        fcfg = FinetuneConfig(task=self.task, out_dir=str(self.backbones.root / f"{self.name}_{self.task}"),
                              epochs=epochs, batch_size=cfg.finetune_batch_size,
                              patience=max(2, epochs // 3), seed=cfg.seed,
                              progress=cfg.progress, plot=False, threads=cfg.threads,
                              appliances=list(appliances or []))
        self.model = load_task_model(finetune(fcfg, ckpt, train_d, val_d))

    def _run(self, inputs: dict[str, np.ndarray], batch: int = 1024) -> dict[str, np.ndarray]:
        self.model.eval()
        n, outs = len(next(iter(inputs.values()))), []
        with torch.no_grad():
            for s in range(0, n, batch):
                b = {k: torch.as_tensor(np.ascontiguousarray(v[s : s + batch]), dtype=torch.float32)
                     for k, v in inputs.items()}
                outs.append({k: v.numpy() for k, v in self.model(b).items()})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


class UnifiedForecaster(UnifiedTaskMethod):
    """Input: the last day (48 points) before the origin and the horizon covariates."""

    task, keys = "forecast", (LOAD_W, COVARIATES, DAY_AHEAD_W, HOUR_AHEAD_W)

    @staticmethod
    def _arrays(b) -> tuple[np.ndarray, ...]:
        return b.history_w[:, -STEPS_PER_DAY:], b.covariates, b.target_w, b.target_w[:, :2]

    def fit(self, train, val) -> UnifiedForecaster:
        self._fit(self._arrays(train), self._arrays(val))
        return self

    def predict(self, batch) -> ForecastPrediction:
        out = self._run({LOAD_W: batch.history_w[:, -STEPS_PER_DAY:], COVARIATES: batch.covariates})
        return ForecastPrediction(out[DAY_AHEAD_W], out[HOUR_AHEAD_W])


class UnifiedImputer(UnifiedTaskMethod):
    """Contract inputs: ``load_w`` with missing points set to 0, ``observed`` 1/0. Training masks
    are drawn like the BiLSTM imputer's (same rates, half random points, half blocks)."""

    task, keys = "imputation", (LOAD_W, OBSERVED, "target_w")

    def _arrays(self, days, seed: int) -> tuple[np.ndarray, ...]:
        rates = tuple(self.backbones.cfg.missing_rates)
        obs = training_masks(len(days), STEPS_PER_DAY, rates, np.random.default_rng(seed))
        return np.where(obs, days.load_w, 0.0), obs.astype(np.float32), days.load_w

    def fit(self, train, val) -> UnifiedImputer:
        seed = self.backbones.cfg.seed
        self._fit(self._arrays(train, seed), self._arrays(val, seed + 1))
        return self

    def predict(self, batch) -> np.ndarray:
        out = self._run({LOAD_W: np.where(batch.observed, batch.load_w, 0.0),
                         OBSERVED: batch.observed.astype(np.float32)})
        return out[LOAD_W_FILLED]


class UnifiedDetector(UnifiedTaskMethod):
    """Window and point logits; decision thresholds are the best-F1 ones on validation."""

    task, keys = "anomaly", (LOAD_W, "window_label", "point_label")

    @staticmethod
    def _arrays(b) -> tuple[np.ndarray, ...]:
        return b.window_w, b.window_label.astype(np.float32), b.point_label.astype(np.float32)

    def fit(self, train, val) -> UnifiedDetector:
        self._fit(self._arrays(train), self._arrays(val))
        out = self._run({LOAD_W: val.window_w})
        self.window_threshold = best_f1_threshold(out[WINDOW_LOGIT][:, 0], val.window_label)
        self.point_threshold = best_f1_threshold(out[POINT_LOGIT], val.point_label)
        return self

    def predict(self, batch) -> AnomalyPrediction:
        out = self._run({LOAD_W: batch.window_w})
        w, p = out[WINDOW_LOGIT][:, 0], out[POINT_LOGIT]
        return AnomalyPrediction(w, p, w > self.window_threshold, p > self.point_threshold)


class UnifiedDisaggregator(UnifiedTaskMethod):
    """The same architecture pre-trained on high-rate windows (its own L), with the NILM head;
    per-appliance ON thresholds on its logits are the best-F1 ones on validation, as for the CNN."""

    task, keys = "nilm", (LOAD_W, APPLIANCE_W, "appliance_on")

    @staticmethod
    def _arrays(b) -> tuple[np.ndarray, ...]:
        return b.load_w, b.appliance_w, b.on.astype(np.float32)

    def fit(self, train, val) -> UnifiedDisaggregator:
        self._fit(self._arrays(train), self._arrays(val), appliances=list(train.appliances))
        self.on_thresholds = on_thresholds(self._run({LOAD_W: val.load_w}, batch=256)[ON_LOGIT], val.on)
        return self

    def predict(self, batch) -> NILMPrediction:
        out = self._run({LOAD_W: batch.load_w}, batch=256)
        return NILMPrediction(out[APPLIANCE_W], out[ON_LOGIT] > self.on_thresholds[None, :, None])


UNIFIED_TASK_CLASSES = {"forecast": UnifiedForecaster, "imputation": UnifiedImputer,
                        "anomaly": UnifiedDetector, "nilm": UnifiedDisaggregator}
