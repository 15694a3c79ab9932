"""Task heads on the unified model, producing the I/O contract of ``edge.task_io``.

Algorithm 1's one workflow: single-type tasks (imputation, anomaly, NILM) add an output layer
behind the pre-trained unified model f_s; the multi-type task (forecast) feeds the extracted load
characteristics z plus covariates into a feed-forward network. Every task model takes the
contract's raw inputs (W, not normalised) and does instance normalisation / de-normalisation
itself, so ``ExportModule`` is a thin positional wrapper for ONNX/TFLite export.

Heads see, besides z, the log of the instance statistics (``stat_features``): instance
normalisation removes the absolute level, which an anomaly head needs (a scaled profile looks
normal once normalised) and a NILM head needs (a 2 kW kettle is 2 kW in any house).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

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
    TASK_IO,
    TASKS,
    WINDOW_LOGIT,
)
from trainer.errors import TrainerError
from trainer.model import (
    Encoded,
    ModelConfig,
    NormStats,
    UnifiedModel,
    instance_denorm,
    loss_scale_w,
)


class TaskError(TrainerError, ValueError):
    """A task name, config or batch that does not fit the contract."""


@dataclass
class TaskConfig:
    task: str
    n_covariates: int = 0  # forecast
    day_ahead_steps: int = 48
    hour_ahead_steps: int = 2
    forecast_hidden: int = 128  # forecast FFN width
    appliances: list[str] = field(default_factory=list)  # nilm
    point_loss_weight: float = 1.0  # anomaly: weight of the per-point BCE
    on_loss_weight: float = 1.0  # nilm: weight of the ON/OFF BCE
    head_dropout: float = 0.1
    # "mse" | "l1" | "huber"; None: l1 for imputation (scored by MAE, and the median of a spiky
    # gap beats its mean there), mse for forecast and NILM power
    regression_loss: str | None = None
    huber_delta: float = 1.0  # in units of the target's std

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise TaskError(f"unknown task {self.task!r}; choose from {TASKS}")
        if self.task == "forecast" and self.n_covariates <= 0:
            raise TaskError("forecast needs n_covariates > 0")
        if self.task == "nilm" and not self.appliances:
            raise TaskError("nilm needs a non-empty appliance list")
        if self.regression_loss is None:
            self.regression_loss = "l1" if self.task == "imputation" else "mse"
        if self.regression_loss not in ("mse", "l1", "huber"):
            raise TaskError(f"regression_loss must be mse, l1 or huber, got {self.regression_loss!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TaskConfig:
        return cls(**data)


def stat_features(stats: NormStats) -> torch.Tensor:
    """[B, 2]: signed log1p of the instance mean and log1p of the std (W)."""
    m = stats.mean_w
    return torch.cat([torch.sign(m) * torch.log1p(m.abs()), torch.log1p(stats.std_w)], dim=-1)


class TaskModel(nn.Module):
    """The unified model f plus one task's head. ``forward(batch) -> dict`` of contract outputs."""

    def __init__(self, model_cfg: ModelConfig, task_cfg: TaskConfig):
        super().__init__()
        self.model_cfg, self.task_cfg = model_cfg, task_cfg
        self.backbone = UnifiedModel(model_cfg)
        self.task = task_cfg.task
        P, D, L = model_cfg.n_patches, model_cfg.d_model, model_cfg.seq_len
        flat = P * D + 2
        self.drop = nn.Dropout(task_cfg.head_dropout)
        if self.task == "imputation":
            self.head = nn.Linear(flat, L)
        elif self.task == "anomaly":
            self.window_head = nn.Linear(flat, 1)
            self.point_head = nn.Linear(flat, L)
        elif self.task == "forecast":
            h = task_cfg.forecast_hidden
            self.ffn = nn.Sequential(
                nn.Linear(flat + task_cfg.n_covariates, h), nn.GELU(), nn.Dropout(task_cfg.head_dropout),
                nn.Linear(h, h), nn.GELU(),
                nn.Linear(h, task_cfg.day_ahead_steps + task_cfg.hour_ahead_steps))
        else:  # nilm: a per-patch head keeps the parameter count flat in L
            A = len(task_cfg.appliances)
            self.head = nn.Linear(D + 2, 2 * A * model_cfg.patch_len)

    @property
    def input_names(self) -> tuple[str, ...]:
        return TASK_IO[self.task].input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return TASK_IO[self.task].output_names

    def init_from_recovery(self) -> None:
        """Imputation is recovery: start its head from the pre-trained g (stat columns zero)."""
        if self.task != "imputation":
            return
        g = self.backbone.recovery
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[:, : g.in_features].copy_(g.weight)
            self.head.bias.copy_(g.bias)

    def _features(self, enc: Encoded) -> torch.Tensor:
        z = enc.z.reshape(enc.z.shape[0], -1)
        return self.drop(torch.cat([z, stat_features(enc.stats)], dim=-1))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The contract outputs of the task (and ``pred_w`` for imputation)."""
        return self.outputs(batch)[0]

    def outputs(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Encoded]:
        """(contract outputs, the backbone's encoding): what losses and distillation need."""
        load_w = batch[LOAD_W]
        observed = batch.get(OBSERVED) if self.task == "imputation" else None
        enc = self.backbone.encode(load_w, observed=observed)
        return self._heads(batch, enc), enc

    def _heads(self, batch: dict[str, torch.Tensor], enc: Encoded) -> dict[str, torch.Tensor]:
        load_w = batch[LOAD_W]
        if self.task == "imputation":
            pred_w = instance_denorm(enc.fill_n + self.head(self._features(enc)), enc.stats)
            obs = batch[OBSERVED].to(load_w.dtype)
            return {LOAD_W_FILLED: obs * load_w + (1 - obs) * pred_w, "pred_w": pred_w}
        if self.task == "anomaly":
            f = self._features(enc)
            return {WINDOW_LOGIT: self.window_head(f), POINT_LOGIT: self.point_head(f)}
        if self.task == "forecast":
            f = torch.cat([self._features(enc), batch[COVARIATES]], dim=-1)
            y = instance_denorm(self.ffn(f), enc.stats)
            n_day = self.task_cfg.day_ahead_steps
            return {DAY_AHEAD_W: y[:, :n_day], HOUR_AHEAD_W: y[:, n_day:]}
        return self._nilm(enc)

    def _nilm(self, enc: Encoded) -> dict[str, torch.Tensor]:
        B, P, _ = enc.z.shape
        A, d_p = len(self.task_cfg.appliances), self.model_cfg.patch_len
        stats = stat_features(enc.stats)[:, None, :].expand(B, P, 2)
        y = self.head(self.drop(torch.cat([enc.z, stats], dim=-1)))  # [B, P, 2*A*d_p]
        y = y.reshape(B, P, 2, A, d_p).permute(2, 0, 3, 1, 4).reshape(2, B, A, P * d_p)
        scale_w = (enc.stats.mean_w.abs() + enc.stats.std_w)[:, :, None]  # [B, 1, 1]
        return {APPLIANCE_W: F.relu(y[0]) * scale_w, ON_LOGIT: y[1]}

    # -- losses ------------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(outputs, task loss l of eq 2); the regulariser R is added by the fine-tuner."""
        out, enc = self.outputs(batch)
        return out, self.task_loss(batch, out, enc)

    def task_loss(self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor], enc: Encoded
                  ) -> torch.Tensor:
        """Task loss l of eq 2 from outputs and encoding already computed (``outputs``)."""
        stats = enc.stats
        if self.task == "imputation":
            tgt = batch["target_w"]
            miss = 1 - batch["observed"].to(tgt.dtype)
            err = self._pointwise((out["pred_w"] - tgt) / loss_scale_w(tgt))
            # missing points carry the task; observed points keep the recovery skill (weight 0.1)
            loss = (err * (miss + 0.1 * (1 - miss))).sum() / (miss.sum() + 0.1 * (1 - miss).sum())
        elif self.task == "anomaly":
            w = F.binary_cross_entropy_with_logits(out["window_logit"], batch["window_label"].reshape(-1, 1))
            p = F.binary_cross_entropy_with_logits(out["point_logit"], batch["point_label"])
            loss = w + self.task_cfg.point_loss_weight * p
        elif self.task == "forecast":
            s = loss_scale_w(torch.cat([batch["load_w"], batch["day_ahead_w"]], dim=1))
            loss = self._pointwise((out["day_ahead_w"] - batch["day_ahead_w"]) / s).mean() + \
                self._pointwise((out["hour_ahead_w"] - batch["hour_ahead_w"]) / s).mean()
        else:
            scale_w = (stats.mean_w.abs() + stats.std_w)[:, :, None]
            pw = self._pointwise((out["appliance_w"] - batch["appliance_w"]) / scale_w).mean()
            on = F.binary_cross_entropy_with_logits(out["on_logit"], batch["appliance_on"],
                                                    pos_weight=_on_pos_weight(batch["appliance_on"]))
            loss = pw + self.task_cfg.on_loss_weight * on
        return loss


    def _pointwise(self, err: torch.Tensor) -> torch.Tensor:
        """Elementwise regression loss of a scale-free error (MSE, L1 or Huber)."""
        kind = self.task_cfg.regression_loss
        if kind == "mse":
            return err ** 2
        if kind == "l1":
            return err.abs()
        return F.huber_loss(err, torch.zeros_like(err), reduction="none", delta=self.task_cfg.huber_delta)


def _on_pos_weight(on: torch.Tensor, max_weight: float = 20.0) -> torch.Tensor:
    """Per-appliance weight of ON samples in the ON/OFF loss: (1 - p) / p of the batch.

    Most appliances are off most of the time (a kettle a few minutes a day), so a plain BCE
    learns "always off" and NILM F1 collapses to ~0 (measured in the demo pipeline: mean F1 0.01).
    Balancing the two classes per appliance, capped so a rare ON sample cannot dominate, keeps
    the ON states worth learning. Shape [A, 1] to broadcast over [B, A, L].
    """
    p_on = on.float().mean(dim=(0, 2)).clamp_min(1e-3)
    return ((1 - p_on) / p_on).clamp(1.0, max_weight)[:, None].detach()


class ExportModule(nn.Module):
    """Positional wrapper: exactly the contract's raw inputs in, its outputs (a tuple) out.

    A deep copy in eval mode with the MoE ``dispatch`` chosen at construction (default gather:
    sparse routing that exports to TopK + Gather + MatMul; see ``trainer.model``) and static L;
    the caller's model is left as it was.
    """

    def __init__(self, model: TaskModel, dispatch: str = "gather"):
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        self.model.backbone.set_dispatch(dispatch).set_aux_losses(False)
        self.task = model.task
        self.input_names, self.output_names = TASK_IO[model.task].input_names, TASK_IO[model.task].output_names
        self.seq_len = model.model_cfg.seq_len
        self.n_covariates = model.task_cfg.n_covariates
        self.train(False)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = dict(zip(self.input_names, inputs, strict=True))
        out = self.model(batch)
        return tuple(out[name] for name in self.output_names)

    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        """Plausible inputs (a daily-like load in W) for tracing and calibration."""
        t = torch.linspace(0, 6.283, self.seq_len)
        load = (400 + 300 * torch.sin(t)).expand(batch_size, -1).contiguous()
        shapes = {LOAD_W: load, OBSERVED: torch.ones(batch_size, self.seq_len),
                  COVARIATES: torch.zeros(batch_size, self.n_covariates)}
        return tuple(shapes[n] for n in self.input_names)


def export_module(model: TaskModel, dispatch: str = "gather") -> ExportModule:
    """The contract-shaped module the exporter traces (see ``ExportModule``)."""
    return ExportModule(model, dispatch)
