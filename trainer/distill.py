"""``unimeter train distill``: a fine-tuned teacher into a student sized for the Raspberry Pi.

The student is the same architecture (so it exports the same sparse way: noisy top-k MoE, k
kept) with fewer layers, fewer experts or a smaller width. Its loss on a batch is

    L = L_task(student)                                  (the task loss of trainer.tasks)
      + w_kd * sum_heads D(student head, teacher head)   (every output head; Hinton et al. 2015)
      + w_hidden * mean_j || h_j(student) - h_m(j)(teacher) ||^2 + || mu_s - mu_t ||^2
                                                         (teacher-initialised students only:
                                                          TinyBERT's hidden-state loss, Jiao et al.
                                                          2020 eq 7, with W_h = I as the widths match)
      + w_z  * || A z_student - z_teacher ||^2           (optional, load characteristics)
      + the student's MoE balance terms (inside the task model's forward)

with D the squared error in the window's normalised units (outputs in W are divided by the
teacher's instance std, which puts a 50 W and a 5 kW household on one scale) and, for logits,
the binary cross-entropy against the teacher's probabilities at temperature T, times T^2
(Hinton et al.'s scaling, so the gradient size does not depend on T). The z term needs a
learned adapter A (student d_model -> teacher d_model) because widths differ; it is dropped
after training. The teacher runs in eval mode (no gating noise, z = mu).

Initialisation (``DistillConfig.init="teacher"``, what ``train all`` runs; ``"random"`` by
default): a student as wide as the teacher (same d_model, d_k, d_expert, activation) starts from the teacher's weights, as DistilBERT does (Sanh et al. 2019,
section 3: "initialize the student from the teacher by taking one layer out of two"): the
embedding, the final norm, the information bottleneck and the heads are copied, student layer j
is teacher layer m(j) (:func:`layer_map`: evenly spaced, first and last kept), and a student with
fewer experts keeps, per layer, the teacher's experts that the training windows route most tokens
to, with their router rows (task-specific expert pruning, Chen et al. 2022, "Task-specific expert
pruning for sparse mixture-of-experts"). Such a student starts near the teacher instead of from
noise: with a random start the route's 600 steps of distillation left every student 14-51 %
behind the teacher on imputation, which had 800 steps of pre-training and 600 of fine-tuning
behind it (bench/results/realdata.md before this change). A narrower student starts at random.
With ``select_on="metric"`` (``train all``) training keeps the weights of the epoch with the best
validation task metric (imputation MAE on the missing points, forecast day-ahead MAE; the loss for
anomaly and NILM, whose judged F1 needs a calibrated threshold); a teacher-initialised student's
start is scored too, so training must beat it.

Reported: each task's metric (edge.signal.metrics, as in the evaluation) for teacher and student on the
validation windows: imputation MAE on the missing points, anomaly window F1, forecast
day-ahead MAE, NILM mean ON/OFF F1 and energy MAE.

The student checkpoint has the same format as a fine-tuned one (``trainer.checkpoint``), so
``load_task_model`` and the exporter read it unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.signal.metrics import classification_metrics, nilm_metrics, regression_metrics
from trainer.checkpoint import DataSpec, load_task_model, save_checkpoint
from trainer.data import ArrayDataset
from trainer.errors import TrainerError
from trainer.loop import LoopConfig, TrainLoop
from trainer.model import ModelConfig
from trainer.tasks import TaskModel

log = logging.getLogger(__name__)

LOGIT_OUTPUTS = ("window_logit", "point_logit", "on_logit")
WATT_OUTPUTS = ("pred_w", "day_ahead_w", "hour_ahead_w", "appliance_w")


class DistillError(TrainerError, ValueError):
    """Distillation cannot run as configured."""


def default_student_config(teacher: ModelConfig, **overrides) -> ModelConfig:
    """Table I width (d_model=16, d_k=4), half of Table I's depth, relu experts, the teacher's
    L, P and history days D. relu: the gathered expert blocks then need no Erf in the int8 graph, and
    onnxruntime's MoE kernels are several times faster with relu than with gelu."""
    base = dict(seq_len=teacher.seq_len, n_patches=teacher.n_patches, d_model=16, d_k=4,
                n_experts=8, top_k=2, n_layers=4, d_expert=32, activation="relu",
                observed_channel=teacher.observed_channel, dropout=0.0,
                history_days=teacher.history_days)
    return ModelConfig(**{**base, **overrides})


# Adam's learning rate by start (measured on the taylor series' imputation teacher through the route's
# validation days, preset small, 2 of 4 layers kept: worst cell 2.1 % better than the teacher at 5e-4,
# 8.8 % worse at 2e-3, which undoes much of the start).
LR_RANDOM = 2e-3
LR_FROM_TEACHER = 5e-4


@dataclass
class DistillConfig:
    out_dir: str = "runs/distill"
    epochs: int = 20
    batch_size: int = 64
    lr: float | None = None  # None: LR_RANDOM for a random start, LR_FROM_TEACHER for a teacher-initialised one
    w_task: float = 1.0
    w_kd: float = 1.0
    w_z: float = 0.0  # > 0: also match the load characteristics z through a linear adapter
    w_hidden: float = 1.0  # hidden-token matching of a teacher-initialised student (TinyBERT eq 7)
    init: str = "random"  # "teacher": start from the teacher's weights where the widths match (train all)
    select_on: str = "loss"  # best epoch by the validation task metric ("metric", train all) or the loss
    temperature: float = 2.0
    grad_clip: float = 1.0
    seed: int = 0
    max_steps: int | None = None
    patience: int = 5
    resume: bool = True  # continue from <out_dir>/<task>_last.pt after an interruption
    progress: bool = True
    threads: int | None = None
    plot: bool = True
    student_overrides: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Losses and metrics


def distill_loss(task: str, student_out: dict, teacher_out: dict, teacher_std_w: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """Sum over every head the student and teacher share (see the module docstring)."""
    terms = []
    for name, t in teacher_out.items():
        if name not in student_out:
            continue
        s = student_out[name]
        if name in LOGIT_OUTPUTS:
            soft = torch.sigmoid(t / temperature)
            terms.append(F.binary_cross_entropy_with_logits(s / temperature, soft) * temperature**2)
        elif name in WATT_OUTPUTS:
            scale = teacher_std_w.reshape(-1, *([1] * (t.dim() - 1)))
            terms.append(F.mse_loss(s / scale, t / scale))
    if not terms:
        raise DistillError(f"teacher and student share no output heads for task {task!r}")
    return torch.stack(terms).sum()


def task_metric(task: str, outputs: dict[str, np.ndarray], data: dict[str, np.ndarray],
                appliances: list[str] | None = None, resolution_s: int = 1800) -> dict[str, float]:
    """The task's headline metrics from model outputs (numpy; any backend) and labelled windows."""
    if task == "imputation":
        miss = data["observed"] < 0.5
        m = regression_metrics(data["target_w"][miss], outputs["load_w_filled"][miss])
        return {"mae_w": m["mae_w"], "rmse_w": m["rmse_w"], "mape_pct": m["mape_pct"]}
    if task == "anomaly":
        w = classification_metrics(data["window_label"], outputs["window_logit"].ravel() > 0)
        p = classification_metrics(data["point_label"], outputs["point_logit"] > 0)
        return {"window_f1": w["f1"], "window_accuracy": w["accuracy"], "point_f1": p["f1"]}
    if task == "forecast":
        d = regression_metrics(data["day_ahead_w"], outputs["day_ahead_w"])
        h = regression_metrics(data["hour_ahead_w"], outputs["hour_ahead_w"])
        return {"day_ahead_mae_w": d["mae_w"], "day_ahead_rmse_w": d["rmse_w"],
                "hour_ahead_mae_w": h["mae_w"]}
    if task == "nilm":
        names = appliances or [f"appliance_{j}" for j in range(outputs["appliance_w"].shape[1])]
        m = nilm_metrics(data["appliance_w"], data["appliance_on"] > 0.5, outputs["appliance_w"],
                         outputs["on_logit"] > 0, names, resolution_s)
        return {"mean_f1": m["mean_f1"], "mean_energy_mae_wh": m["mean_energy_mae_wh"]}
    raise DistillError(f"unknown task {task!r}")


HEADLINE = {"imputation": ("mae_w", "lower"), "anomaly": ("window_f1", "higher"),
            "forecast": ("day_ahead_mae_w", "lower"), "nilm": ("mean_f1", "higher")}


def _to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in batch.items()
            if np.issubdtype(np.asarray(v).dtype, np.number)}


@torch.no_grad()
def predict(model: TaskModel, data: ArrayDataset, batch_size: int = 512) -> dict[str, np.ndarray]:
    """Contract outputs of a task model over a dataset, in eval mode."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for batch in data.batches(batch_size, shuffle=False, drop_last=False):
        out = model(_to_torch(batch))
        for name in model.output_names:
            parts.setdefault(name, []).append(out[name].numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def evaluate_model(model: TaskModel, data: ArrayDataset, resolution_s: int = 1800) -> dict[str, float]:
    return task_metric(model.task, predict(model, data), data.arrays,
                       list(model.task_cfg.appliances), resolution_s)


# ---------------------------------------------------------------------------------------------
# Teacher initialisation (DistilBERT layer selection, MoE expert pruning)


SAME_WIDTH_FIELDS = ("seq_len", "n_patches", "d_model", "d_k", "d_expert", "activation", "moe",
                     "observed_channel", "fill_missing", "history_days", "use_ib")


def teacher_initialisable(student: ModelConfig, teacher: ModelConfig) -> bool:
    """True when ``student`` can start from ``teacher``'s weights: every width equal, no more layers
    or experts than the teacher and the same k."""
    return (all(getattr(student, f) == getattr(teacher, f) for f in SAME_WIDTH_FIELDS)
            and student.n_layers <= teacher.n_layers and student.n_experts <= teacher.n_experts
            and student.top_k == teacher.top_k)


def layer_map(n_teacher: int, n_student: int) -> list[int]:
    """Teacher layer of each student layer: evenly spaced, the first and last kept (4 -> 2: [0, 3];
    4 -> 3: [0, 2, 3]; DistilBERT's one layer out of two for 12 -> 6 differs only in the offset)."""
    if not 1 <= n_student <= n_teacher:
        raise DistillError(f"a student of {n_student} layers cannot be taken from a teacher of {n_teacher}")
    if n_student == 1:
        return [n_teacher - 1]
    return [int(round(j * (n_teacher - 1) / (n_student - 1))) for j in range(n_student)]


@torch.no_grad()
def expert_usage(teacher: TaskModel, data: ArrayDataset, batch_size: int = 512) -> torch.Tensor:
    """Tokens routed to each expert of each MoE layer over ``data`` [n_layers, E] (teacher in eval
    mode: no gating noise, the routing the teacher runs)."""
    from trainer.model import tokens_per_expert

    teacher.eval()
    total = None
    for batch in data.batches(batch_size, shuffle=False, drop_last=False):
        _, enc = teacher.outputs(_to_torch(batch))
        counts = tokens_per_expert(enc.routing, teacher.model_cfg.n_experts)
        total = counts if total is None else total + counts
    return total


def kept_experts(usage: torch.Tensor, n_keep: int) -> list[list[int]]:
    """Per layer, the ``n_keep`` most used experts (ascending index, so routing order is kept)."""
    return [sorted(torch.argsort(row, descending=True)[:n_keep].tolist()) for row in usage]


@torch.no_grad()
def init_from_teacher(student: TaskModel, teacher: TaskModel, layers: list[int],
                      experts: list[list[int]] | None = None) -> None:
    """Copy the teacher's weights into a same-width ``student``: every tensor outside the encoder
    layers as is, student layer j from teacher layer ``layers[j]``, and of its MoE only the experts
    ``experts[j]`` (expert weights [E, ...] and router rows [E, d_model] indexed alike)."""
    t_state = teacher.state_dict()
    out = {}
    for name, value in student.state_dict().items():
        m = re.match(r"backbone\.layers\.(\d+)\.(.*)", name)
        if m is None:
            out[name] = t_state[name]
            continue
        j, rest = int(m.group(1)), m.group(2)
        src = t_state[f"backbone.layers.{layers[j]}.{rest}"]
        if experts is not None and src.shape != value.shape:
            idx = torch.as_tensor(experts[j])
            src = src.index_select(0, idx)
        if src.shape != value.shape:
            raise DistillError(f"{name}: teacher {tuple(src.shape)} vs student {tuple(value.shape)}")
        out[name] = src
    student.load_state_dict(out)


def student_from_teacher(teacher: TaskModel, s_cfg: ModelConfig, train: ArrayDataset) -> tuple[TaskModel, dict]:
    """A student of ``s_cfg`` initialised from ``teacher`` (:func:`init_from_teacher`), and what was
    kept: ``{"layers": [...], "experts": [[...], ...] or None}``."""
    student = TaskModel(s_cfg, teacher.task_cfg)
    layers = layer_map(teacher.model_cfg.n_layers, s_cfg.n_layers)
    experts = None
    if s_cfg.n_experts < teacher.model_cfg.n_experts:
        usage = expert_usage(teacher, train)
        experts = kept_experts(usage[layers], s_cfg.n_experts)
    init_from_teacher(student, teacher, layers, experts)
    return student, {"layers": layers, "experts": experts}


class HiddenTokens:
    """The encoder layers' outputs [B, T, d_model] of the last forward, caught by forward hooks
    (the model returns none of them): teacher layer ``layers[j]`` against student layer j."""

    def __init__(self, student: TaskModel, teacher: TaskModel, layers: list[int]) -> None:
        self.layers = layers
        self.student: dict[int, torch.Tensor] = {}
        self.teacher: dict[int, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._catch(self.student, j))
                        for j, m in enumerate(student.backbone.layers)]
        self.handles += [teacher.backbone.layers[i].register_forward_hook(self._catch(self.teacher, i))
                         for i in set(layers)]

    @staticmethod
    def _catch(store: dict, key: int):
        def hook(_module, _inputs, output):
            store[key] = output[0]
        return hook

    def loss(self) -> torch.Tensor:
        """TinyBERT eq 7 with W_h = I: mean over the student's layers of the MSE of its hidden tokens."""
        return torch.stack([F.mse_loss(self.student[j], self.teacher[i])
                            for j, i in enumerate(self.layers)]).mean()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# ---------------------------------------------------------------------------------------------
# Training


class _ZAdapter(nn.Module):
    def __init__(self, d_student: int, d_teacher: int):
        super().__init__()
        self.proj = nn.Linear(d_student, d_teacher)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z)


def _step_loss(cfg: DistillConfig, student: TaskModel, teacher: TaskModel, adapter: _ZAdapter | None,
               batch: dict[str, torch.Tensor], hidden: HiddenTokens | None = None
               ) -> tuple[torch.Tensor, dict[str, float]]:
    with torch.no_grad():
        t_out, t_enc = teacher.outputs(batch)
    s_out, s_enc = student.outputs(batch)
    task_loss = student.task_loss(batch, s_out, s_enc)
    kd = distill_loss(student.task, s_out, t_out, t_enc.stats.std_w, cfg.temperature)
    loss = cfg.w_task * task_loss + cfg.w_kd * kd
    parts = {"task": task_loss.item(), "kd": kd.item()}
    if hidden is not None:
        h_loss = hidden.loss() + F.mse_loss(s_enc.mu, t_enc.mu)
        loss = loss + cfg.w_hidden * h_loss
        parts["hidden"] = h_loss.item()
    if adapter is not None:
        s_z = s_enc.z
        if s_z.shape[:2] != t_enc.z.shape[:2]:
            raise DistillError(f"z matching needs equal patch counts: {tuple(s_z.shape)} vs {tuple(t_enc.z.shape)}")
        z_loss = F.mse_loss(adapter(s_z), t_enc.z)
        loss = loss + cfg.w_z * z_loss
        parts["z"] = z_loss.item()
    return loss, parts


def _train(cfg: DistillConfig, student: TaskModel, teacher: TaskModel, train: ArrayDataset,
           val: ArrayDataset, resolution_s: int, hidden: HiddenTokens | None, from_teacher: bool
           ) -> tuple[list[dict], dict]:
    adapter = _ZAdapter(student.model_cfg.d_model, teacher.model_cfg.d_model) if cfg.w_z > 0 else None
    params = list(student.parameters()) + (list(adapter.parameters()) if adapter else [])
    opt = torch.optim.Adam(params, lr=cfg.lr)  # resolved by distill()
    loop = TrainLoop(student, opt, LoopConfig(epochs=cfg.epochs, max_steps=cfg.max_steps,
                                              grad_clip=cfg.grad_clip, patience=cfg.patience,
                                              progress=cfg.progress, desc=f"distill {student.task}"),
                     params=params, checkpoint=Path(cfg.out_dir) / f"{student.task}_last.pt",
                     resume=cfg.resume, fingerprint=_fingerprint(cfg, student, teacher),
                     extra_state=lambda: {"adapter": adapter.state_dict() if adapter else None},
                     load_extra_state=lambda extra: adapter and adapter.load_state_dict(extra["adapter"]))
    validate = _validation(cfg, student, teacher, adapter, val, resolution_s, hidden)
    start = validate() if from_teacher else math.nan
    if math.isfinite(start):  # a teacher-initialised student may already be at its best: training must beat it
        loop.state.best_loss = start
        loop.best_weights = {k: v.detach().clone() for k, v in student.state_dict().items()}
    state = loop.fit(lambda epoch, skip: train.batches(cfg.batch_size, seed=cfg.seed, epoch=epoch, skip=skip),
                     train.n_batches(cfg.batch_size),
                     lambda batch, _st: _step_loss(cfg, student, teacher, adapter, _to_torch(batch), hidden),
                     validate)
    return state.history, {"best_val_loss": state.best_loss, "best_epoch": state.best_epoch,
                           "start_val_loss": start if math.isfinite(start) else None, "selected_on": _selected_on(cfg, student.task)}


def _selected_on(cfg: DistillConfig, task: str) -> str:
    metric, direction = HEADLINE[task]
    return metric if cfg.select_on == "metric" and direction == "lower" else "loss"


def _validation(cfg: DistillConfig, student: TaskModel, teacher: TaskModel, adapter, val: ArrayDataset,
                resolution_s: int, hidden: HiddenTokens | None):
    """What early stopping and the best weights follow: the task's headline metric on the validation
    windows where lower is better and meaningful without a threshold (imputation, forecast), else
    the distillation loss."""
    if cfg.select_on not in ("metric", "loss"):
        raise DistillError(f"select_on must be 'metric' or 'loss', got {cfg.select_on!r}")
    metric = _selected_on(cfg, student.task)
    if metric != "loss":
        return lambda: evaluate_model(student, val, resolution_s)[metric]
    return lambda: _val_loss(cfg, student, teacher, adapter, val, hidden)


def _fingerprint(cfg: DistillConfig, student: TaskModel, teacher: TaskModel) -> dict:
    """What a resumed run must share with the interrupted one."""
    return {"student": student.model_cfg.to_dict(), "teacher": teacher.model_cfg.to_dict(),
            "task": student.task_cfg.to_dict(),
            **{k: getattr(cfg, k) for k in ("batch_size", "lr", "w_task", "w_kd", "w_z", "w_hidden", "init",
                                             "select_on", "temperature", "seed")}}


@torch.no_grad()
def _val_loss(cfg, student, teacher, adapter, val: ArrayDataset, hidden: HiddenTokens | None = None) -> float:
    student.eval()
    total, n = 0.0, 0
    for batch in val.batches(512, shuffle=False, drop_last=False):
        loss, _ = _step_loss(cfg, student, teacher, adapter, _to_torch(batch), hidden)
        total += float(loss) * len(batch["load_w"])
        n += len(batch["load_w"])
    return total / max(n, 1)


def _make_student(cfg: DistillConfig, teacher: TaskModel, s_cfg: ModelConfig, train: ArrayDataset
                  ) -> tuple[TaskModel, dict, HiddenTokens | None]:
    """(student, what it was initialised from, the hidden-token hooks or None)."""
    if cfg.init not in ("teacher", "random"):
        raise DistillError(f"init must be 'teacher' or 'random', got {cfg.init!r}")
    if cfg.init == "teacher" and teacher_initialisable(s_cfg, teacher.model_cfg):
        student, kept = student_from_teacher(teacher, s_cfg, train)
        hidden = HiddenTokens(student, teacher, kept["layers"]) if cfg.w_hidden > 0 else None
        return student, {"from": "teacher", **kept}, hidden
    return TaskModel(s_cfg, teacher.task_cfg), {"from": "random"}, None


def distill(teacher_ckpt: Path | str, student_cfg: ModelConfig | None, train_data,
            val_data=None, cfg: DistillConfig | None = None) -> Path:
    """Distil a fine-tuned teacher checkpoint into a student; returns ``<out_dir>/<task>.pt``.

    ``train_data``/``val_data``: ``ArrayDataset`` or dict of arrays with the task's keys
    (``trainer.data.TASK_KEYS``). Without ``val_data``, 20% of the training windows are held out.
    ``student_cfg=None`` uses ``default_student_config(teacher)``.
    """
    cfg = cfg or DistillConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    teacher = load_task_model(teacher_ckpt).eval()
    teacher.requires_grad_(False)
    task = teacher.task
    train = ArrayDataset.coerce(train_data, task)
    if val_data is None:
        order = np.random.default_rng(cfg.seed).permutation(len(train))
        n_val = max(1, len(train) // 5)
        train, val = train.subset(order[n_val:]), train.subset(order[:n_val])
    else:
        val = ArrayDataset.coerce(val_data, task)
    if len(train) < cfg.batch_size:
        raise DistillError(f"{len(train)} training windows < one batch of {cfg.batch_size}")
    s_cfg = student_cfg or default_student_config(teacher.model_cfg, **cfg.student_overrides)
    if (s_cfg.seq_len, s_cfg.n_patches) != (teacher.model_cfg.seq_len, teacher.model_cfg.n_patches) \
            and cfg.w_z > 0:
        raise DistillError("z distillation needs the student's L and P to equal the teacher's")
    torch.manual_seed(cfg.seed)
    ckpt = teacher.checkpoint
    resolution_s = int(ckpt.get("data_spec", {}).get("resolution_s", 1800))
    student, kept, hidden = _make_student(cfg, teacher, s_cfg, train)
    if cfg.lr is None:
        cfg = replace(cfg, lr=LR_FROM_TEACHER if kept["from"] == "teacher" else LR_RANDOM)
    try:
        history, best = _train(cfg, student, teacher, train, val, resolution_s, hidden, kept["from"] == "teacher")
    finally:
        if hidden is not None:
            hidden.remove()
    report = {"teacher": evaluate_model(teacher, val, resolution_s),
              "student": evaluate_model(student, val, resolution_s),
              "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
              "student_parameters": sum(p.numel() for p in student.parameters()),
              "n_val_windows": len(val), "init": kept, **best}
    out = Path(cfg.out_dir)
    path = save_checkpoint(
        out / f"{task}.pt", student, kind="task", model_cfg=s_cfg, task_cfg=teacher.task_cfg,
        data_spec=DataSpec(**{k: v for k, v in ckpt.get("data_spec", {}).items()
                              if k in DataSpec.__dataclass_fields__}),
        metrics={"distill": report}, epoch=best["best_epoch"],
        extra={"distill_config": cfg.to_dict(), "teacher_checkpoint": str(teacher_ckpt),
               "history": history})
    (out / f"{task}_distill_report.json").write_text(json.dumps(report, indent=2) + "\n")
    if cfg.plot:
        _plot(history, report, out / f"{task}_distill.png", task)
    log.info("distilled %s: %s", task, report)
    return path


def _plot(history: list[dict], report: dict, png: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    ep = [h["epoch"] for h in history]
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["val_loss"] for h in history], "s-", label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("task + distillation loss")
    a.legend()
    keys = list(report["teacher"])
    x = np.arange(len(keys))
    b.bar(x - 0.2, [report["teacher"][k] for k in keys], 0.4, label="teacher")
    b.bar(x + 0.2, [report["student"][k] for k in keys], 0.4, label="student")
    b.set_xticks(x, keys, rotation=20)
    b.legend()
    fig.suptitle(f"distillation: {task} ({report['teacher_parameters']} -> {report['student_parameters']} parameters)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
