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
    HISTORY_MASK,
    HISTORY_W,
    HOUR_AHEAD_W,
    LOAD_W,
    LOAD_W_FILLED,
    OBSERVED,
    ON_LOGIT,
    POINT_LOGIT,
    TASKS,
    WINDOW_LOGIT,
    task_io,
)
from trainer import context as ctxm
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


REGRESSION_LOSSES = ("mse", "l1", "huber", "l1_mse")


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
    nilm_hidden: int = 64  # nilm: width of the per-sample hidden layer before each appliance's outputs
    nilm_local_channels: int = 16  # nilm: channels of the convolution over the samples around each one
    # nilm: weight of OFF samples in the power loss (ON samples weigh 1). The decision reports 0 W
    # for an appliance that is off whatever the graph's power says, so the power output is trained
    # where the appliance runs (a power regression gated by the state)
    off_power_weight: float = 0.1
    head_dropout: float = 0.1
    # "mse" | "l1" | "huber" | "l1_mse" (|e| + e^2 / 2); None: l1 for imputation (scored by MAE,
    # and the median of a spiky gap beats its mean there), mse for forecast and NILM power.
    # l1_mse: MAE and RMSE both count (L1 alone lost RMSE to linear interpolation on random gaps)
    regression_loss: str | None = None
    huber_delta: float = 1.0  # in units of the target's std
    # forecast: weight of the relative error |e| / (|y| + 0.1 scale) beside the MSE. MAPE is one of
    # the scores and rewards forecasts below the mean of a spiky load; the MSE alone loses MAPE to
    # the naive forecasts, a large weight loses RMSE to DLinear (0.2 measured best on the simulator)
    relative_loss_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise TaskError(f"unknown task {self.task!r}; choose from {TASKS}")
        if self.task == "forecast" and self.n_covariates <= 0:
            raise TaskError("forecast needs n_covariates > 0")
        if self.task == "nilm" and not self.appliances:
            raise TaskError("nilm needs a non-empty appliance list")
        if self.regression_loss is None:
            self.regression_loss = "l1" if self.task == "imputation" else "mse"
        if self.regression_loss not in REGRESSION_LOSSES:
            raise TaskError(f"regression_loss must be one of {REGRESSION_LOSSES}, got {self.regression_loss!r}")

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
        if self.task == "nilm" and model_cfg.context:
            raise TaskError("NILM runs the single-window model of seed 000: ModelConfig(history_days=0)")
        P, D, L = model_cfg.n_patches, model_cfg.d_model, model_cfg.seq_len
        flat = P * D + 2
        self.drop = nn.Dropout(task_cfg.head_dropout)
        if model_cfg.context:
            self._context_heads(model_cfg, task_cfg)
        elif self.task == "imputation":
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
        else:  # nilm: weights shared over samples keep the parameter count flat in L
            A, h, c = len(task_cfg.appliances), task_cfg.nilm_hidden, task_cfg.nilm_local_channels
            self.local = nn.Conv1d(N_LOCAL, c, NILM_KERNEL, padding=NILM_KERNEL // 2)
            self.wide = nn.Conv1d(N_LOCAL, c, NILM_KERNEL, dilation=NILM_DILATION,
                                  padding=NILM_DILATION * (NILM_KERNEL // 2))
            self.head = nn.Sequential(nn.Linear(D + 2 + 2 * c, h), nn.ReLU(),
                                      nn.Dropout(task_cfg.head_dropout), nn.Linear(h, 2 * A))

    def _context_heads(self, model_cfg: ModelConfig, task_cfg: TaskConfig) -> None:
        """Heads of a context model (``trainer.context``): imputation and forecast weigh naive
        candidates and add a correction (zero-initialised: they start at the candidates' blend);
        anomaly adds a per-point detector on the point evidence to a head on the characteristics,
        and the window logit also sees the pooled point logits."""
        width, L = ctxm.head_width(model_cfg), model_cfg.seq_len
        if self.task == "imputation":
            self.head = ctxm.CandidateHead(model_cfg)
        elif self.task == "forecast":
            h, n = task_cfg.forecast_hidden, task_cfg.day_ahead_steps + task_cfg.hour_ahead_steps
            self.n_candidates = ctxm.n_forecast_candidates(model_cfg.history_days)
            self.ffn = nn.Sequential(
                nn.Linear(width + task_cfg.n_covariates, h), nn.GELU(), nn.Dropout(task_cfg.head_dropout),
                nn.Linear(h, h), nn.GELU(), nn.Linear(h, n * (self.n_candidates + 1)))
            nn.init.zeros_(self.ffn[-1].weight)
            nn.init.zeros_(self.ffn[-1].bias)
        elif self.task == "anomaly":
            width = ctxm.anomaly_width(model_cfg)
            self.point_head = nn.Linear(width, L)
            self.local_head = nn.Sequential(nn.Linear(ctxm.N_POINT, 16), nn.GELU(), nn.Linear(16, 1))
            self.window_head = nn.Linear(width + 3, 1)

    @property
    def history_days(self) -> int:
        """D of the contract: the model's history days (0 for single-window models)."""
        return self.model_cfg.history_days

    @property
    def input_names(self) -> tuple[str, ...]:
        return task_io(self.task, self.history_days).input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return task_io(self.task, self.history_days).output_names

    def init_from_recovery(self) -> None:
        """Imputation is recovery: start its head from the pre-trained g (stat columns zero)."""
        if self.task != "imputation":
            return
        if self.model_cfg.context:
            self.head.load_state_dict(self.backbone.recovery.state_dict())
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
        if self.model_cfg.context:
            if HISTORY_W not in batch or HISTORY_MASK not in batch:
                raise TaskError(f"a context model ({self.history_days} history days) needs "
                                f"{HISTORY_W} and {HISTORY_MASK} in its batch")
            observed = batch.get(OBSERVED)
            enc = self.backbone.encode(load_w, observed=observed, history_w=batch.get(HISTORY_W),
                                       history_mask=batch.get(HISTORY_MASK))
            return self._context_outputs(batch, enc), enc
        observed = batch.get(OBSERVED) if self.task == "imputation" else None
        enc = self.backbone.encode(load_w, observed=observed)
        return self._heads(batch, enc), enc

    def _context_outputs(self, batch: dict[str, torch.Tensor], enc: Encoded) -> dict[str, torch.Tensor]:
        ctx = enc.context
        if self.task == "imputation":
            pred_w = ctx.denorm(self.head(enc, self.drop))
            load_w, obs = batch[LOAD_W], ctx.observed
            return {LOAD_W_FILLED: obs * load_w + (1 - obs) * pred_w, "pred_w": pred_w}
        if self.task == "anomaly":
            return self._anomaly(enc)
        f = self.drop(ctxm.head_features(enc))
        if self.task == "forecast":
            H_day, H_hour = self.task_cfg.day_ahead_steps, self.task_cfg.hour_ahead_steps
            day_c, hour_c = ctxm.forecast_candidates(ctx, H_hour)
            cands = torch.cat([day_c[:, :, :H_day], hour_c], 2)  # [B, K, H_day + H_hour]
            y = self.ffn(torch.cat([f, batch[COVARIATES]], 1)).reshape(f.shape[0], self.n_candidates + 1, -1)
            pred = ctx.denorm((torch.softmax(y[:, :-1], 1) * cands).sum(1) + y[:, -1])
        return {DAY_AHEAD_W: pred[:, :H_day], HOUR_AHEAD_W: pred[:, H_day:]}

    def _anomaly(self, enc: Encoded) -> dict[str, torch.Tensor]:
        """Point logits [B, L]: a linear map of ``ctxm.anomaly_features`` plus the local detector
        on each point's evidence; the window logit [B, 1] also reads their max, mean and logsumexp."""
        point_ev = ctxm.point_evidence(enc.context)
        g = ctxm.anomaly_features(enc, point_ev, self.drop)
        point = self.point_head(g) + self.local_head(point_ev)[..., 0]
        pooled = torch.cat([point.amax(1, keepdim=True), point.mean(1, keepdim=True),
                            torch.logsumexp(point, 1, keepdim=True)], 1)
        return {WINDOW_LOGIT: self.window_head(torch.cat([g, pooled], 1)), POINT_LOGIT: point}

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
        """Per sample t in patch p: [z_p, stats, two convolutions over the samples around t
        (``nilm_local_features``: ``NILM_KERNEL`` neighbours, and as many taps every
        ``NILM_DILATION`` samples)] -> a ReLU layer shared by the appliances -> each appliance's
        output layer (its rows of the last linear map): a power and an ON logit. The same weights
        serve every sample: at 1-10 s an appliance's switch is a step inside one patch, which the
        patch's d_model summary z_p places only to within the patch; the samples around t say
        whether t lies on the appliance's plateau, and the step's size in kW names the appliance.
        The wide taps see the 5 minutes around t: an oven's thermostat pulse (2 min on between
        3-min pauses) is a kettle use to the 90 s of near neighbours. Outputs [B, A, L]."""
        B, P, D = enc.z.shape
        L = enc.fill_n.shape[1]
        feats = nilm_local_features(enc.fill_n, enc.stats)
        local = F.relu(torch.cat([self.local(feats), self.wide(feats)], dim=1)).transpose(1, 2)  # [B, L, 2c]
        z_t = enc.z[:, :, None, :].expand(B, P, L // P, D).reshape(B, L, D)
        stats = stat_features(enc.stats)[:, None, :].expand(B, L, 2)
        y = self.head(self.drop(torch.cat([z_t, stats, local], dim=-1)))  # [B, L, 2A]
        y = y.reshape(B, L, 2, -1).permute(2, 0, 3, 1)  # [2, B, A, L]
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
            loss = s.new_zeros(())
            for key in ("day_ahead_w", "hour_ahead_w"):
                err = out[key] - batch[key]
                loss = loss + self._pointwise(err / s).mean()
                if self.task_cfg.relative_loss_weight:
                    rel = err.abs() / (batch[key].abs() + 0.1 * s)
                    loss = loss + self.task_cfg.relative_loss_weight * rel.mean()
        else:
            loss = self._nilm_loss(batch, out, stats)
        return loss

    def _nilm_loss(self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor], stats: NormStats
                   ) -> torch.Tensor:
        """Class-balanced BCE on the state (``on_pos_weight``) plus the power regression gated by
        the true state: ON samples weigh 1, OFF samples ``off_power_weight`` (Zhang et al. 2018's
        seq2point with an ON/OFF output; off is reported as 0 W by the decision anyway)."""
        on_true = batch["appliance_on"]
        scale_w = (stats.mean_w.abs() + stats.std_w)[:, :, None]
        err = self._pointwise((out["appliance_w"] - batch["appliance_w"]) / scale_w)
        w = on_true + self.task_cfg.off_power_weight * (1 - on_true)
        pw = (err * w).sum() / w.sum().clamp_min(1.0)
        on = F.binary_cross_entropy_with_logits(out["on_logit"], on_true, pos_weight=on_pos_weight(on_true))
        return pw + self.task_cfg.on_loss_weight * on

    def _pointwise(self, err: torch.Tensor) -> torch.Tensor:
        """Elementwise regression loss of a scale-free error (MSE, L1 or Huber)."""
        kind = self.task_cfg.regression_loss
        if kind == "mse":
            return err ** 2
        if kind == "l1":
            return err.abs()
        if kind == "l1_mse":
            return err.abs() + 0.5 * err ** 2
        return F.huber_loss(err, torch.zeros_like(err), reduction="none", delta=self.task_cfg.huber_delta)


N_LOCAL = 7  # per-sample inputs of the NILM head (``nilm_local_features``)
NILM_KERNEL = 9  # samples the NILM head's convolution sees around each one (90 s at 10 s)
# the head's second convolution takes every NILM_DILATION-th sample: 9 taps over 33 samples (330 s at
# 10 s), one oven thermostat period (2 min on, 3 min off) with both neighbours' edges
NILM_DILATION = 4
SMALL_STEP_W = 50.0  # the scale of the log channels: a TV's or fridge's step is about one unit there


def nilm_local_features(fill_n: torch.Tensor, stats: NormStats) -> torch.Tensor:
    """[B, L] normalised window -> [B, N_LOCAL, L]: the normalised samples and their first
    differences, then in kW the samples above the window's minimum and the first differences,
    then the same two on a log scale of ``SMALL_STEP_W``. Instance normalisation makes a 2 kW
    kettle on a quiet night and a 200 W fridge in a busy afternoon look alike; the kW channels keep
    the size of a step, which names the appliance. In kW (and normalised by a window that holds a
    kettle) a 100 W TV's step and its screen's +-15 W are a few hundredths, below what the head
    tells from a fridge or a lamp; ``sign(x) log(1 + |x| / 50 W)`` keeps them near one unit and
    a 3 kW step near four. The last channel is the sample's own level on that log scale: a window
    an EV charges through from end to end has no step and nothing above its minimum, only its
    3.7-11 kW level."""
    step_n = torch.cat([torch.zeros_like(fill_n[:, :1]), fill_n[:, 1:] - fill_n[:, :-1]], dim=1)
    to_kw = stats.std_w / 1000.0  # [B, 1]
    base_n = fill_n.min(dim=1, keepdim=True).values
    above_kw, step_kw = (fill_n - base_n) * to_kw, step_n * to_kw
    small = 1000.0 / SMALL_STEP_W
    level_w = F.relu(fill_n * stats.std_w + stats.mean_w)
    return torch.stack([fill_n, step_n, above_kw, step_kw, torch.log1p(above_kw * small),
                        torch.sign(step_kw) * torch.log1p(step_kw.abs() * small),
                        torch.log1p(level_w / SMALL_STEP_W)], dim=1)


def on_pos_weight(on: torch.Tensor, max_weight: float = 20.0) -> torch.Tensor:
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
        self.input_names, self.output_names = model.input_names, model.output_names
        self.seq_len = model.model_cfg.seq_len
        self.history_days = model.history_days
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
        D = self.history_days
        days = torch.linspace(0.8, 1.2, D) if D else torch.zeros(0)
        shapes = {LOAD_W: load, OBSERVED: torch.ones(batch_size, self.seq_len),
                  HISTORY_W: (load[:, None, :] * days[None, :, None]).contiguous(),
                  HISTORY_MASK: torch.ones(batch_size, D),
                  COVARIATES: torch.zeros(batch_size, self.n_covariates)}
        return tuple(shapes[n] for n in self.input_names)


def export_module(model: TaskModel, dispatch: str = "gather") -> ExportModule:
    """The contract-shaped module the exporter traces (see ``ExportModule``)."""
    return ExportModule(model, dispatch)
