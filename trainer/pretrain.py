"""Pre-training of the unified model, seed 000 Algorithm 2.

Per step: sample a batch of profiles, instance-normalise, add Gaussian noise, hide a random
``mask_ratio`` of the patches, extract load characteristics z through the MoE encoder and the
information bottleneck, recover the profile with the linear head g, and minimise eq 26
(reconstruction + beta * KL + w_value * CV^2(Value) + w_load * CV^2(Payload)) with Adam.

Seeded, resumable (``last.pt`` holds optimizer, RNG and position in the epoch), a progress bar,
``metrics.jsonl`` and ``pretrain.png`` (losses and per-layer expert utilisation). The same code runs
under ``torchrun --nproc_per_node=N`` with DistributedDataParallel: the mask and input noise are
drawn per *global* batch from a step-seeded generator and each rank uses its slice, so the loss
curve follows the single-process one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge.errors import DataError
from trainer import distributed as D
from trainer.checkpoint import DataSpec, save_checkpoint
from trainer.data import ArrayDataset, check_history
from trainer.loop import LoopConfig, LoopState, TrainLoop
from trainer.model import ModelConfig, UnifiedModel

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """Defaults follow Table I (epochs 100, batch 16, Adam lr 1e-3)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    out_dir: str = "runs/pretrain"
    epochs: int = 100
    batch_size: int = 16  # global batch (split across DDP ranks)
    lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: str = "constant"  # "constant" (the paper) | "cosine"
    mask_ratio: float = 0.4  # share of patches hidden per profile (not given in the paper)
    day_drop: float = 0.3  # context models: share of history days hidden per window (Alg. 2 over the context)
    noise_std: float = 0.1  # Gaussian input noise, in instance-normalised units
    grad_clip: float = 1.0
    seed: int = 0
    max_steps: int | None = None
    log_every: int = 10
    ckpt_every: int = 500  # steps between resumable checkpoints (and at each epoch end)
    resume: bool = True
    progress: bool = True
    plot: bool = True
    threads: int | None = None  # torch intra-op threads (None: leave torch's default)
    val_batch_size: int = 512
    data_spec: DataSpec | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if isinstance(self.data_spec, dict):
            self.data_spec = DataSpec(**self.data_spec)
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not 0 <= self.day_drop < 1:
            raise ValueError(f"day_drop must be in [0, 1), got {self.day_drop}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def random_patch_mask(batch: int, n_patches: int, ratio: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """bool [batch, n_patches], exactly round(ratio * P) True per row (at least 1, at most P-1)."""
    n_mask = min(max(int(round(ratio * n_patches)), 1), n_patches - 1)
    scores = torch.rand(batch, n_patches, generator=generator)
    idx = scores.argsort(dim=1)[:, :n_mask]
    return torch.zeros(batch, n_patches, dtype=torch.bool).scatter_(1, idx, True)


def _step_inputs(cfg: PretrainConfig, step: int, global_batch: int, ctx: D.DistContext
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patch mask, input noise and kept history days ([B, D] float, 1 = kept) for the whole
    global batch of this step; this rank's slice."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    mc = cfg.model
    mask = random_patch_mask(global_batch, mc.n_patches, cfg.mask_ratio, g)
    noise = cfg.noise_std * torch.randn(global_batch, mc.seq_len, generator=g)
    keep_days = (torch.rand(global_batch, mc.history_days, generator=g) >= cfg.day_drop).float()
    rows = np.array_split(np.arange(global_batch), ctx.world)[ctx.rank]
    return mask[rows], noise[rows], keep_days[rows]


def history_inputs(batch: dict[str, np.ndarray], device, keep_days: torch.Tensor | None = None
                   ) -> dict[str, torch.Tensor]:
    """``history_w`` / ``history_mask`` of a batch as tensors (none when the data has no history);
    ``keep_days`` [B, D] hides history days (pre-training)."""
    if "history_w" not in batch:
        return {}
    mask = torch.from_numpy(np.asarray(batch["history_mask"], np.float32))
    if keep_days is not None:
        mask = mask * keep_days
    return {"history_w": torch.from_numpy(np.asarray(batch["history_w"], np.float32)).to(device),
            "history_mask": mask.to(device)}


def _lr_at(cfg: PretrainConfig, step: int, total: int) -> float:
    if cfg.lr_schedule == "constant":
        return cfg.lr
    warm = max(total // 50, 1)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min((step - warm) / max(total - warm, 1), 1.0)))


@torch.no_grad()
def evaluate_pretrain(model: UnifiedModel, data: ArrayDataset, cfg: PretrainConfig) -> dict:
    """Eq 26 terms on ``data`` in eval mode, with a fixed mask (seeded), plus masked-point MAE (W)."""
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(cfg.seed + 7919)
    sums: dict[str, float] = {}
    n, mae_sum, mae_n = 0, 0.0, 0.0
    for batch in data.batches(cfg.val_batch_size, shuffle=False, drop_last=False):
        x = torch.from_numpy(batch["load_w"]).float()
        mask = random_patch_mask(len(x), cfg.model.n_patches, cfg.mask_ratio, g)
        out, losses = model(x, targets=x, mask=mask, **history_inputs(batch, "cpu"))
        for k, v in losses.terms().items():
            sums[k] = sums.get(k, 0.0) + v * len(x)
        hidden = mask.repeat_interleave(cfg.model.patch_len, dim=1)
        mae_sum += float((out - x).abs()[hidden].sum())
        mae_n += float(hidden.sum())
        n += len(x)
    model.train(was_training)
    res = {f"val_{k}": v / max(n, 1) for k, v in sums.items()}
    res["val_masked_mae_w"] = mae_sum / max(mae_n, 1)
    return res


class _Log:
    """metrics.jsonl (rank 0) and the expert utilisation counted between epoch ends."""

    def __init__(self, cfg: PretrainConfig, ctx: D.DistContext):
        self.cfg, self.ctx = cfg, ctx
        self.path = Path(cfg.out_dir) / "metrics.jsonl"
        self.util_counts = torch.zeros(cfg.model.n_layers, cfg.model.n_experts)
        self.t0, self.seen = time.perf_counter(), 0

    def write(self, record: dict) -> None:
        if self.ctx.is_main:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def pretrain(cfg: PretrainConfig, train_data, val_data=None) -> Path:
    """Algorithm 2. ``train_data``/``val_data``: ArrayDataset, dict with ``load_w`` or [N, L] array.

    Returns the path of the final checkpoint (``<out_dir>/pretrain.pt``, kind "pretrain").
    ``cfg`` is not changed (the data spec it records comes from the data when not given).
    """
    ctx = D.setup()
    try:
        return _pretrain(cfg, ctx, train_data, val_data)
    finally:
        D.teardown(ctx)


def _pretrain(cfg: PretrainConfig, ctx: D.DistContext, train_data, val_data) -> Path:
    train = ArrayDataset.coerce(train_data, "pretrain")
    val = ArrayDataset.coerce(val_data, "pretrain") if val_data is not None else None
    L = train.arrays["load_w"].shape[1]
    if cfg.model.seq_len != L:
        raise DataError(f"profiles have {L} points but the model expects seq_len={cfg.model.seq_len}")
    if len(train) < cfg.batch_size:
        raise DataError(f"{len(train)} training profiles < one batch of {cfg.batch_size}")
    check_history(train, cfg.model.history_days, "pre-training data")
    check_history(val, cfg.model.history_days, "pre-training validation data")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data_spec = cfg.data_spec or DataSpec(seq_len=L, n_patches=cfg.model.n_patches,
                                          resolution_s=int(train.meta.get("resolution_s", 1800)),
                                          source=str(train.meta.get("source", "")))
    torch.manual_seed(cfg.seed)  # identical init on every rank
    model = UnifiedModel(cfg.model).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + 1 + ctx.rank)  # gate and IB noise differ per rank
    logbook = _Log(cfg, ctx)
    loop = TrainLoop(model, opt, LoopConfig(epochs=cfg.epochs, max_steps=cfg.max_steps,
                                            grad_clip=cfg.grad_clip, keep_best=False,
                                            validate_partial_epoch=False, ckpt_every=cfg.ckpt_every,
                                            log_every=cfg.log_every, progress=cfg.progress,
                                            desc="pretrain"),
                     ctx=ctx, checkpoint=out / "last.pt", resume=cfg.resume,
                     fingerprint={"model_config": cfg.model.to_dict(), "batch_size": cfg.batch_size,
                                  "seed": cfg.seed},
                     extra_state=lambda: {"util_counts": logbook.util_counts},
                     load_extra_state=lambda extra: logbook.util_counts.copy_(extra["util_counts"]))
    if not loop.resume() and ctx.is_main:
        logbook.path.write_text("")
    ddp_model = D.wrap(model, ctx)
    per_epoch = train.n_batches(cfg.batch_size)
    total = loop.total_steps(per_epoch)
    metrics: dict = {}

    def step_loss(batch, st: LoopState):
        x = torch.from_numpy(batch["load_w"]).float().to(ctx.device)
        mask, noise, keep_days = _step_inputs(cfg, st.step, cfg.batch_size, ctx)
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, st.step, total)
        _, losses = ddp_model(x, targets=x, mask=mask.to(ctx.device), noise=noise.to(ctx.device),
                              **history_inputs(batch, ctx.device, keep_days[:len(x)]))
        logbook.seen += len(x) * ctx.world
        if len(losses.tokens_per_expert):
            logbook.util_counts += losses.tokens_per_expert.cpu()
        return losses.total, {"losses": losses}

    def after_step(st: LoopState, logged: dict) -> None:
        if st.step % cfg.log_every == 0 or st.step == 1:
            _log_step(logbook, st, logged["losses"].terms(), opt,
                      logbook.seen / (time.perf_counter() - logbook.t0))

    def validate() -> float:
        nonlocal metrics
        metrics = evaluate_pretrain(model, val, cfg) if (val is not None and ctx.is_main) else {}
        return metrics.get("val_loss", math.nan)

    def after_epoch(st: LoopState, _record: dict) -> None:
        counts = D.all_reduce_sum(logbook.util_counts, ctx)
        util = (counts / counts.sum(1, keepdim=True).clamp_min(1)).tolist()
        logbook.util_counts.zero_()
        logbook.write({"step": st.step, "epoch": st.epoch, "expert_utilisation": util, **metrics})
        logbook.t0, logbook.seen = time.perf_counter(), 0
        D.barrier(ctx)

    state = loop.fit(lambda epoch, skip: train.batches(cfg.batch_size, seed=cfg.seed, epoch=epoch,
                                                       rank=ctx.rank, world=ctx.world, skip=skip),
                     per_epoch, step_loss, validate, after_step=after_step, after_epoch=after_epoch)
    path = out / "pretrain.pt"
    if ctx.is_main:
        metrics = metrics or (evaluate_pretrain(model, val, cfg) if val is not None else {})
        save_checkpoint(path, model, kind="pretrain", model_cfg=cfg.model, data_spec=data_spec,
                        metrics=metrics, step=state.step, epoch=state.epoch,
                        extra={"pretrain_config": {**cfg.to_dict(), "data_spec": data_spec.to_dict()}})
        if cfg.plot:
            plot_pretrain(logbook.path, out / "pretrain.png")
    D.barrier(ctx)
    return path


def _log_step(logbook: _Log, st: LoopState, logged: dict, opt, samples_per_s: float) -> None:
    keys = ("loss", "recon", "kl", "balance")
    parts = D.all_reduce_mean(torch.tensor([logged[k] for k in keys]), logbook.ctx)
    logbook.write({"step": st.step, "epoch": st.epoch, **{k: float(v) for k, v in zip(keys, parts, strict=True)},
                   "beta": logbook.cfg.model.beta, "lr": opt.param_groups[0]["lr"],
                   "samples_per_s": samples_per_s})


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_pretrain(metrics_path: str | Path, png_path: str | Path) -> Path:
    """Losses over steps (train terms, validation) and the last epoch's expert utilisation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_metrics(metrics_path)
    steps = [r for r in recs if "loss" in r]
    epochs = [r for r in recs if "expert_utilisation" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key in ("loss", "recon", "balance"):
        ax1.plot([r["step"] for r in steps], [r[key] for r in steps], label=key)
    ax1.plot([r["step"] for r in steps], [r["kl"] * r.get("beta", 1e-3) for r in steps], label="beta x kl")
    val = [r for r in epochs if "val_loss" in r]
    if val:
        ax1.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val loss")
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_title("pre-training loss (eq 26)")
    ax1.legend()
    if epochs:
        util = np.asarray(epochs[-1]["expert_utilisation"])
        im = ax2.imshow(util, aspect="auto", cmap="viridis", vmin=0)
        ax2.set_xticks(range(util.shape[1]))
        ax2.set_yticks(range(util.shape[0]))
        for (i, j), v in np.ndenumerate(util):
            if util.size <= 256:
                ax2.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
        ax2.set_xlabel("expert")
        ax2.set_ylabel("MoE layer")
        ax2.set_title(f"share of routed tokens per expert (epoch {epochs[-1]['epoch']})")
        fig.colorbar(im, ax=ax2)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return Path(png_path)
