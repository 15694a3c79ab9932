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
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge.errors import DataError
from edge.task_io import TASKS
from trainer import distributed as D
from trainer.checkpoint import DataSpec, load_pretrained_model, save_checkpoint
from trainer.data import ArrayDataset
from trainer.model import ModelConfig, UnifiedModel
from trainer.pretrain import check_finite
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
    if len(train) < cfg.batch_size:
        raise DataError(f"{len(train)} training windows < one batch of {cfg.batch_size}")
    reg = _regulariser(cfg, model)
    opt = _optimizer(cfg, model)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + 1 + ctx.rank)
    ddp = D.wrap(_LossModule(model.to(ctx.device), reg), ctx)
    per_epoch = train.n_batches(cfg.batch_size)
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, per_epoch * cfg.epochs)
    history: list[dict] = []
    best = (math.inf, None, -1)
    bar = tqdm(total=total, desc=f"finetune {cfg.task_name}", unit="step",
               disable=not (cfg.progress and ctx.is_main))
    step = 0
    for epoch in range(cfg.epochs):
        train_loss, step = _train_epoch(cfg, model, ddp, opt, train, epoch, step, total, ctx, bar)
        val_loss = evaluate_task_loss(model, val, cfg.val_batch_size) if val is not None else train_loss
        history.append({"epoch": epoch, "step": step, "train_loss": train_loss, "val_loss": val_loss})
        if val_loss < best[0]:
            best = (val_loss, {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch)
        if epoch - best[2] >= cfg.patience or step >= total:
            break
    bar.close()
    model.load_state_dict(best[1])
    path = out / f"{cfg.task_name}.pt"
    if ctx.is_main:
        _write_outputs(cfg, model, spec, train, history, best, path)
    D.barrier(ctx)
    return path


def _train_epoch(cfg, model: TaskModel, ddp, opt, train: ArrayDataset, epoch: int, step: int,
                 total: int, ctx: D.DistContext, bar) -> tuple[float, int]:
    model.train()
    if cfg.regularizer == "frozen":
        model.backbone.eval()
    losses = []
    for batch in train.batches(cfg.batch_size, seed=cfg.seed, epoch=epoch, rank=ctx.rank,
                               world=ctx.world):
        if step >= total:
            break
        loss, total_loss = ddp(_to_torch(batch, ctx.device))
        check_finite(total_loss, step)
        opt.zero_grad(set_to_none=True)
        total_loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                           cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-cfg.log_every:]):.4f}")
    mean = torch.tensor(float(np.mean(losses)) if losses else float("nan"))
    return float(D.all_reduce_mean(mean, ctx)), step


def _write_outputs(cfg, model: TaskModel, spec: dict, train: ArrayDataset, history, best, path) -> None:
    from edge.features import COVARIATE_NAMES, COVARIATE_SPEC_VERSION

    data_spec = DataSpec(**{k: v for k, v in spec.items() if k in DataSpec.__dataclass_fields__}) \
        if spec else DataSpec(seq_len=model.model_cfg.seq_len, n_patches=model.model_cfg.n_patches)
    if model.task == "forecast" and model.task_cfg.n_covariates == len(COVARIATE_NAMES):
        data_spec.covariate_names = list(COVARIATE_NAMES)
        data_spec.covariate_spec_version = COVARIATE_SPEC_VERSION
    metrics = {"best_val_loss": best[0], "best_epoch": best[2], "epochs_run": len(history),
               "regularizer": cfg.regularizer, "reg_lambda": cfg.reg_lambda}
    save_checkpoint(path, model, kind="task", model_cfg=model.model_cfg, task_cfg=model.task_cfg,
                    data_spec=data_spec, metrics=metrics, epoch=best[2],
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
