"""Fine-tuning for every task with one workflow, seed 000 Algorithm 1 and eq 2.

    f* = argmin_f 1/N' sum_i l(f(x_i), y_i) + lambda R(f; f_s)

Single-type tasks (imputation, anomaly, NILM) add an output layer behind the pre-trained unified
model f_s; the multi-type task (forecast) feeds z plus covariates into a feed-forward network
(``trainer.tasks.TaskModel`` builds either). The regulariser R is selectable:

- ``"none"``: plain fine-tuning (the paper's "conventional model training").
- ``"l2sp"``: L2-SP, lambda * ||theta_backbone - theta_s||^2 (Li et al. 2018): stay near f_s.
- ``"frozen"``: f_s fixed (lambda -> infinity); only the head trains, backbone in eval mode.

Early stopping on the validation loss; the best epoch is what ``<out_dir>/<task>.pt`` holds.
Runs under torchrun/DDP like pre-training.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge.errors import DataError
from edge.features import COVARIATE_NAMES, COVARIATE_SPEC_VERSION
from edge.task_io import TASKS
from trainer import distributed as D
from trainer.checkpoint import DataSpec, load_pretrained_model, save_checkpoint
from trainer.data import ArrayDataset, check_history
from trainer.loop import LoopConfig, LoopState, TrainLoop
from trainer.model import ModelConfig, UnifiedModel
from trainer.tasks import TaskConfig, TaskModel

log = logging.getLogger(__name__)
REGULARIZERS = ("none", "l2sp", "frozen")


@dataclass
class FinetuneConfig:
    task: TaskConfig | str = "imputation"  # a name: n_covariates / appliances come from the data
    out_dir: str = "runs/finetune"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr: float | None = None  # None: same as lr
    regularizer: str = "l2sp"
    reg_lambda: float = 1e-3  # lambda of eq 2 (l2sp)
    grad_clip: float = 1.0
    patience: int = 5  # epochs without validation improvement before stopping
    seed: int = 0
    max_steps: int | None = None
    log_every: int = 20
    resume: bool = True  # continue from <out_dir>/<task>_last.pt after an interruption
    progress: bool = True
    plot: bool = True
    threads: int | None = None
    val_batch_size: int = 512
    model: ModelConfig | None = None  # only when training without a pre-trained checkpoint
    appliances: list[str] = field(default_factory=list)  # nilm, when task is a name

    def __post_init__(self) -> None:
        if isinstance(self.task, dict):
            self.task = TaskConfig.from_dict(self.task)
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        name = self.task.task if isinstance(self.task, TaskConfig) else self.task
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; choose from {TASKS}")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")

    @property
    def task_name(self) -> str:
        return self.task.task if isinstance(self.task, TaskConfig) else self.task

    def to_dict(self) -> dict:
        return asdict(self)


def task_config_for(cfg: FinetuneConfig, data: ArrayDataset) -> TaskConfig:
    """The TaskConfig, completing n_covariates / appliances from the data when given by name."""
    if isinstance(cfg.task, TaskConfig):
        return cfg.task
    extra = {}
    if cfg.task_name == "forecast":
        extra["n_covariates"] = int(data.arrays["covariates"].shape[1])
        extra["day_ahead_steps"] = int(data.arrays["day_ahead_w"].shape[1])
        extra["hour_ahead_steps"] = int(data.arrays["hour_ahead_w"].shape[1])
    if cfg.task_name == "nilm":
        extra["appliances"] = list(cfg.appliances or data.meta.get("appliances") or [])
    return TaskConfig(cfg.task_name, **extra)


def _check_data(model: TaskModel, data: ArrayDataset) -> None:
    L = data.arrays["load_w"].shape[1]
    if model.model_cfg.seq_len != L:
        raise DataError(f"{model.task} windows have {L} points; the pre-trained model takes "
                        f"seq_len={model.model_cfg.seq_len}")
    if model.task == "nilm" and data.arrays["appliance_w"].shape[1] != len(model.task_cfg.appliances):
        raise DataError(f"appliance_w has {data.arrays['appliance_w'].shape[1]} appliances, the task "
                        f"config lists {len(model.task_cfg.appliances)}")
    if model.task == "forecast" and data.arrays["covariates"].shape[1] != model.task_cfg.n_covariates:
        raise DataError("covariate count differs from the task config")
    check_history(data, model.model_cfg.history_days, f"{model.task} data")


def build_task_model(cfg: FinetuneConfig, pretrained_ckpt: Path | None, data: ArrayDataset
                     ) -> tuple[TaskModel, dict]:
    """Algorithm 1 lines 6-10: f_s plus an output layer (single-type) or an FFN (multi-type)."""
    tc = task_config_for(cfg, data)
    if pretrained_ckpt is not None:
        f_s, ckpt = load_pretrained_model(pretrained_ckpt)
        model = TaskModel(f_s.cfg, tc)
        model.backbone.load_state_dict(f_s.state_dict())
        model.init_from_recovery()
        spec = ckpt.get("data_spec") or {}
    else:
        if cfg.model is None:
            raise ValueError("without a pre-trained checkpoint, FinetuneConfig.model must be set")
        model, spec = TaskModel(cfg.model, tc), {}
    return model, spec


class _LossModule(torch.nn.Module):
    """forward(batch) -> (task loss l, l + lambda R): the whole objective of eq 2 inside one
    forward, so DDP's gradient hooks see every use of every parameter exactly once."""
    def __init__(self, model: TaskModel, reg):
        super().__init__()
        self.model, self.reg = model, reg

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        loss = self.model.loss(batch)[1]
        r = self.reg()
        return loss, (loss if r is None else loss + r)


def _regulariser(cfg: FinetuneConfig, model: TaskModel):
    if cfg.regularizer == "frozen":
        model.backbone.requires_grad_(False)
    if cfg.regularizer != "l2sp":
        return lambda: None
    ref = [p.detach().clone() for p in model.backbone.parameters()]

    def l2sp() -> torch.Tensor:
        return cfg.reg_lambda * sum(((p - r) ** 2).sum() for p, r in
                                    zip(model.backbone.parameters(), ref, strict=True))
    return l2sp


def _optimizer(cfg: FinetuneConfig, model: TaskModel) -> torch.optim.Optimizer:
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    groups = [{"params": head, "lr": cfg.lr}]
    if cfg.regularizer != "frozen":
        groups.append({"params": list(model.backbone.parameters()), "lr": cfg.backbone_lr or cfg.lr})
    return torch.optim.Adam(groups)


def _to_torch(batch: dict[str, np.ndarray], device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.asarray(v, np.float32)).to(device) for k, v in batch.items()
            if np.issubdtype(np.asarray(v).dtype, np.number)}


@torch.no_grad()
def evaluate_task_loss(model: TaskModel, data: ArrayDataset, batch_size: int = 512) -> float:
    was = model.training
    model.eval()
    total, n = 0.0, 0
    for batch in data.batches(batch_size, shuffle=False, drop_last=False):
        _, loss = model.loss(_to_torch(batch, "cpu"))
        total += float(loss) * len(batch["load_w"])
        n += len(batch["load_w"])
    model.train(was)
    return total / max(n, 1)


def finetune(cfg: FinetuneConfig, pretrained_ckpt: Path | str | None, train_data, val_data=None
             ) -> Path:
    """Fine-tune f_s for ``cfg.task``; returns ``<out_dir>/<task>.pt`` (kind "task").

    Data: ``ArrayDataset`` or dict of arrays with the keys of ``trainer.data.TASK_KEYS[task]``.
    ``pretrained_ckpt=None`` trains from scratch (the no-pre-training ablation; needs cfg.model).
    """
    ctx = D.setup()
    try:
        return _finetune(cfg, Path(pretrained_ckpt) if pretrained_ckpt else None, ctx,
                         train_data, val_data)
    finally:
        D.teardown(ctx)


def _finetune(cfg: FinetuneConfig, ckpt: Path | None, ctx: D.DistContext, train_data, val_data
              ) -> Path:
    train = ArrayDataset.coerce(train_data, cfg.task_name)
    val = ArrayDataset.coerce(val_data, cfg.task_name) if val_data is not None else None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, spec = build_task_model(cfg, ckpt, train)
    _check_data(model, train)
    if val is not None:
        _check_data(model, val)
    if len(train) < cfg.batch_size:
        raise DataError(f"{len(train)} training windows < one batch of {cfg.batch_size}")
    reg = _regulariser(cfg, model)
    opt = _optimizer(cfg, model)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + 1 + ctx.rank)
    ddp = D.wrap(_LossModule(model.to(ctx.device), reg), ctx)

    def train_mode() -> None:
        model.train()
        if cfg.regularizer == "frozen":
            model.backbone.eval()

    def step_loss(batch, _state) -> tuple[torch.Tensor, dict]:
        loss, total_loss = ddp(_to_torch(batch, ctx.device))
        return total_loss, {"loss": loss.item()}  # the epoch reports the task loss l of eq 2

    loop = TrainLoop(model, opt, LoopConfig(epochs=cfg.epochs, max_steps=cfg.max_steps,
                                            grad_clip=cfg.grad_clip, patience=cfg.patience,
                                            log_every=cfg.log_every, progress=cfg.progress,
                                            desc=f"finetune {cfg.task_name}"),
                     train_mode=train_mode, ctx=ctx, checkpoint=out / f"{cfg.task_name}_last.pt",
                     resume=cfg.resume, fingerprint=_fingerprint(cfg, model))
    state = loop.fit(lambda epoch, skip: train.batches(cfg.batch_size, seed=cfg.seed, epoch=epoch,
                                                       rank=ctx.rank, world=ctx.world, skip=skip),
                     train.n_batches(cfg.batch_size), step_loss,
                     (lambda: evaluate_task_loss(model, val, cfg.val_batch_size)) if val is not None else None)
    path = out / f"{cfg.task_name}.pt"
    if ctx.is_main:
        _write_outputs(cfg, model, spec, train, state, path)
    D.barrier(ctx)
    return path


def _fingerprint(cfg: FinetuneConfig, model: TaskModel) -> dict:
    """What a resumed run must share with the interrupted one."""
    return {"model_config": model.model_cfg.to_dict(), "task_config": model.task_cfg.to_dict(),
            **{k: getattr(cfg, k) for k in ("batch_size", "lr", "backbone_lr", "regularizer",
                                             "reg_lambda", "seed")}}


def _write_outputs(cfg, model: TaskModel, spec: dict, train: ArrayDataset, state: LoopState, path) -> None:

    data_spec = DataSpec(**{k: v for k, v in spec.items() if k in DataSpec.__dataclass_fields__}) \
        if spec else DataSpec(seq_len=model.model_cfg.seq_len, n_patches=model.model_cfg.n_patches)
    if model.task == "forecast" and model.task_cfg.n_covariates == len(COVARIATE_NAMES):
        data_spec.covariate_names = list(COVARIATE_NAMES)
        data_spec.covariate_spec_version = COVARIATE_SPEC_VERSION
        # the meter's zone, holiday country and weather source the covariates were computed with
        data_spec.covariates = train.meta.get("covariates")
    history = state.history
    metrics = {"best_val_loss": state.best_loss, "best_epoch": state.best_epoch, "epochs_run": len(history),
               "regularizer": cfg.regularizer, "reg_lambda": cfg.reg_lambda}
    save_checkpoint(path, model, kind="task", model_cfg=model.model_cfg, task_cfg=model.task_cfg,
                    data_spec=data_spec, metrics=metrics, epoch=state.best_epoch,
                    extra={"finetune_config": cfg.to_dict(), "history": history})
    out = Path(cfg.out_dir)
    (out / f"{cfg.task_name}_metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    if cfg.plot:
        _plot(history, out / f"{cfg.task_name}_finetune.png", cfg.task_name)


def _plot(history: list[dict], png: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax.plot(ep, [h["val_loss"] for h in history], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("task loss")
    ax.set_title(f"fine-tuning: {task}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


__all__ = ["FinetuneConfig", "REGULARIZERS", "UnifiedModel", "build_task_model", "finetune"]
