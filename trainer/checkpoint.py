"""Checkpoints that rebuild their model from the file alone (nanoGPT style).

A checkpoint is a ``torch.save`` dict (docs/architecture.md section 6):

    format_version, kind ("pretrain" | "task"), model_config (dict), task, task_config (dict),
    state_dict, appliances, data_spec (resolution_s, seq_len, n_patches, ...), metrics,
    step, epoch, optimizer (optional, for resume), rng (optional, for resume)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from trainer.errors import TrainerError
from trainer.model import ModelConfig, UnifiedModel
from trainer.tasks import ExportModule, TaskConfig, TaskModel, export_module

FORMAT_VERSION = 1


class CheckpointError(TrainerError, RuntimeError):
    """A checkpoint that cannot be read or does not hold what was asked for."""


@dataclass
class DataSpec:
    """What the input windows are: stored with the model so the edge computes the same inputs."""

    resolution_s: int = 1800
    seq_len: int = 48
    n_patches: int = 12
    source: str = ""  # "sim:<n>x<days>d seed=<s>" or a shard manifest path
    covariate_names: list[str] = field(default_factory=list)
    covariate_spec_version: int = 0
    covariates: dict | None = None  # edge.features.CovariateSpec.to_dict() of a forecast model's data

    def to_dict(self) -> dict:
        return asdict(self)


def save_checkpoint(path: str | Path, model: nn.Module, *, kind: str, model_cfg: ModelConfig,
                    task_cfg: TaskConfig | None = None, data_spec: DataSpec | None = None,
                    metrics: dict | None = None, step: int = 0, epoch: int = 0,
                    optimizer: torch.optim.Optimizer | None = None,
                    extra: dict | None = None) -> Path:
    """Write atomically (tmp file + rename) so a crash never leaves a torn checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "model_config": model_cfg.to_dict(),
        "task": task_cfg.task if task_cfg else None,
        "task_config": task_cfg.to_dict() if task_cfg else None,
        "appliances": list(task_cfg.appliances) if task_cfg else [],
        "data_spec": (data_spec or DataSpec(seq_len=model_cfg.seq_len,
                                            n_patches=model_cfg.n_patches)).to_dict(),
        "state_dict": model.state_dict(),
        "metrics": metrics or {},
        "step": step,
        "epoch": epoch,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "extra": extra or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a corrupt file
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a unimeter checkpoint (format {FORMAT_VERSION})")
    return ckpt


def load_pretrained_model(path: str | Path) -> tuple[UnifiedModel, dict[str, Any]]:
    """The pre-trained unified model (f and g) and the raw checkpoint dict."""
    ckpt = load_checkpoint(path)
    if ckpt["kind"] != "pretrain":
        raise CheckpointError(f"{path} holds a {ckpt['kind']!r} checkpoint, not 'pretrain'")
    model = UnifiedModel(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def load_task_model(path: str | Path) -> TaskModel:
    """A fine-tuned task model in eval mode, rebuilt from the file alone.

    The checkpoint dict is attached as ``model.checkpoint`` (data_spec, metrics, appliances).
    """
    ckpt = load_checkpoint(path)
    if ckpt["kind"] != "task":
        raise CheckpointError(f"{path} holds a {ckpt['kind']!r} checkpoint, not a task model")
    model = TaskModel(ModelConfig.from_dict(ckpt["model_config"]),
                      TaskConfig.from_dict(ckpt["task_config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.checkpoint = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer")}
    return model.eval()


__all__ = ["CheckpointError", "DataSpec", "ExportModule", "export_module", "load_checkpoint",
           "load_pretrained_model", "load_task_model", "save_checkpoint"]
