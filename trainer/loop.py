"""One training loop for everything the trainer fits: pre-training, fine-tuning, distillation and
the learned baselines (nanoGPT's one plain loop, with what every caller needs written once).

Per step: ``loss = step_loss(batch, state)``, a non-finite loss stops training with a
``TrainingError``, then zero_grad, backward, optional gradient clipping and the optimizer step.
Per epoch: the mean training loss (averaged over DDP ranks), the validation loss, an optional
``ReduceLROnPlateau``, the best-validation weights, early stopping after ``patience`` epochs
without improvement, and a resumable checkpoint. A progress bar shows the steps.

Resume: with a ``checkpoint`` path the loop writes ``LoopState`` + model, optimizer, scheduler,
best weights and the torch RNG state at every epoch end (and every ``ckpt_every`` steps), and
``fit`` continues from that file when it exists: mid-epoch, skipping the batches already seen.
The file records a ``fingerprint`` (the caller's config); resuming under another one is refused.

The caller keeps what is its own: how batches are drawn for an epoch (``epoch_batches(epoch,
skip)``), the loss, the validation metric and anything to log (``after_step``, ``after_epoch``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from trainer import distributed as D
from trainer.errors import TrainerError

log = logging.getLogger(__name__)


class TrainingError(TrainerError, RuntimeError):
    """Training cannot go on (a non-finite loss: lower the learning rate or check the data)."""


class ResumeError(TrainerError, RuntimeError):
    """A resume checkpoint that does not belong to this run (another config or model)."""


def check_finite(loss: torch.Tensor, step: int, what: str = "loss") -> None:
    if not torch.isfinite(loss):
        raise TrainingError(f"non-finite {what} ({loss.item()}) at step {step}; lower the learning "
                            "rate or check the data for extreme values")


@dataclass
class LoopConfig:
    """How long and how carefully to train; the same fields for every caller."""

    epochs: int
    max_steps: int | None = None  # stop after this many optimizer steps in total
    grad_clip: float | None = None  # max gradient L2 norm (None: no clipping)
    patience: int | None = None  # epochs without a better validation loss before stopping
    min_delta: float = 0.0  # a validation loss must beat the best by more than this
    keep_best: bool = True  # end with the best-validation weights (else the last ones)
    validate_partial_epoch: bool = True  # a max_steps stop mid-epoch is validated like an epoch end
    ckpt_every: int = 0  # steps between mid-epoch checkpoints (0: at epoch ends only)
    log_every: int = 20  # steps between loss updates on the progress bar
    progress: bool = True
    desc: str = "train"


@dataclass
class LoopState:
    """Where a run is; what a resume checkpoint restores."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    since_best: int = 0
    stopped: bool = False  # early stopping ended the run (a resume does not train further)
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


StepLoss = Callable[[Any, LoopState], "torch.Tensor | tuple[torch.Tensor, dict]"]


def batch_len(batch: Any) -> int:
    """Samples in a batch: a dict of arrays, a tuple of arrays or one array."""
    first = next(iter(batch.values())) if isinstance(batch, dict) else \
        batch[0] if isinstance(batch, tuple | list) else batch
    return len(first)


class TrainLoop:
    """``TrainLoop(model, optimizer, cfg, ...).fit(epoch_batches, step_loss, validate) -> LoopState``.

    ``params``: what to clip (default: the model's trainable parameters). ``scheduler``: a
    ``ReduceLROnPlateau`` stepped on each epoch's validation loss. ``train_mode``: puts the
    modules in training mode at each epoch start (default ``model.train()``). ``ctx``: the DDP
    context (only rank 0 writes checkpoints). ``extra_state``/``load_extra_state``: anything of
    the caller's to keep in the checkpoint (a numpy generator's state, utilisation counters).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: LoopConfig, *,
                 params: Iterable[torch.nn.Parameter] | None = None, scheduler=None,
                 train_mode: Callable[[], None] | None = None, ctx: D.DistContext | None = None,
                 checkpoint: str | Path | None = None, resume: bool = True,
                 fingerprint: dict | None = None,
                 extra_state: Callable[[], dict] | None = None,
                 load_extra_state: Callable[[dict], None] | None = None) -> None:
        self.model, self.opt, self.cfg = model, optimizer, cfg
        self.params = list(params) if params is not None else None
        self.scheduler, self.ctx = scheduler, ctx or D.DistContext()
        self.train_mode = train_mode or model.train
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self._resume_pending = resume
        self._before_partial: dict | None = None  # best-so-far before a scored partial epoch
        self.fingerprint = fingerprint or {}
        self.extra_state, self.load_extra_state = extra_state, load_extra_state
        self.state = LoopState()
        self.best_weights: dict[str, torch.Tensor] | None = None

    # -- public ------------------------------------------------------------------------------
    def total_steps(self, steps_per_epoch: int) -> int:
        total = steps_per_epoch * self.cfg.epochs
        return total if self.cfg.max_steps is None else min(self.cfg.max_steps, total)

    def fit(self, epoch_batches: Callable[[int, int], Iterable], steps_per_epoch: int,
            step_loss: StepLoss, validate: Callable[[], float] | None = None, *,
            after_step: Callable[[LoopState, dict], None] | None = None,
            after_epoch: Callable[[LoopState, dict], None] | None = None) -> LoopState:
        """Train until ``epochs``, ``max_steps`` or early stopping; returns the final state.

        ``epoch_batches(epoch, skip)`` yields the epoch's batches without the first ``skip``;
        ``step_loss(batch, state)`` returns the loss to minimise (or ``(loss, logged values)``;
        a logged ``"loss"`` is what the epoch's training loss averages, e.g. the task loss
        without a regulariser);
        ``validate()`` returns the validation loss (lower is better; without it the epoch's
        training loss decides). ``after_step(state, logged)`` runs after every optimizer step,
        ``after_epoch(state, record)`` after every epoch (``record`` is its history entry).
        """
        total = self.total_steps(steps_per_epoch)
        self.resume()
        bar = tqdm(total=total, initial=self.state.step, desc=self.cfg.desc, unit="step", leave=False,
                   disable=not (self.cfg.progress and self.ctx.is_main))
        try:
            while not self.state.stopped and self.state.epoch < self.cfg.epochs and self.state.step < total:
                losses = self._train_epoch(epoch_batches, step_loss, total, bar, after_step)
                if self.state.step >= total and self.state.batch_in_epoch < steps_per_epoch:
                    # max_steps reached mid-epoch: the partial epoch is validated (it may give the
                    # best weights) but the position stays mid-epoch, and what was best before it
                    # is kept, so a resume with more steps goes on exactly from there
                    if self.cfg.validate_partial_epoch:
                        self._score_partial(losses, validate)
                    break
                self._end_epoch(losses, validate, total, after_epoch)
        finally:
            bar.close()
        if self.checkpoint is not None:
            self.save()  # the weights training would go on from (a resume), not the best ones
        if self.cfg.keep_best and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        return self.state

    # -- one epoch -----------------------------------------------------------------------------
    def _train_epoch(self, epoch_batches, step_loss: StepLoss, total: int, bar, after_step
                     ) -> list[tuple[float, int]]:
        st, cfg = self.state, self.cfg
        self.train_mode()
        losses: list[tuple[float, int]] = []
        for batch in epoch_batches(st.epoch, st.batch_in_epoch):
            if st.step >= total:
                break
            out = step_loss(batch, st)
            loss, logged = out if isinstance(out, tuple) else (out, {})
            check_finite(loss, st.step)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                params = self.params if self.params is not None else \
                    [p for p in self.model.parameters() if p.requires_grad]
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.opt.step()
            logged = {"loss": loss.item(), **logged}
            losses.append((float(logged["loss"]), batch_len(batch)))
            st.step += 1
            st.batch_in_epoch += 1
            bar.update(1)
            if st.step % cfg.log_every == 0:
                recent = losses[-cfg.log_every:]
                bar.set_postfix(loss=f"{sum(v for v, _ in recent) / len(recent):.4f}")
            if after_step is not None:
                after_step(st, logged)
            if cfg.ckpt_every and st.step % cfg.ckpt_every == 0 and self.checkpoint is not None:
                self.save()
        return losses

    def _end_epoch(self, losses: list[tuple[float, int]], validate, total: int, after_epoch) -> None:
        st, cfg = self.state, self.cfg
        self._score_epoch(losses, validate, after_epoch)
        st.epoch += 1
        st.batch_in_epoch = 0
        if cfg.patience is not None and st.since_best >= cfg.patience:
            st.stopped = True
        if self.checkpoint is not None:
            self.save()

    def _losses(self, losses: list[tuple[float, int]], validate) -> tuple[float, float]:
        """(mean training loss over the DDP ranks, validation loss or else the training loss)."""
        n = sum(k for _, k in losses)
        mean = torch.tensor(sum(v * k for v, k in losses) / n if n else float("nan"), dtype=torch.float64)
        train_loss = float(D.all_reduce_mean(mean, self.ctx))
        return train_loss, (float(validate()) if validate is not None else train_loss)

    def _score_partial(self, losses: list[tuple[float, int]], validate) -> None:
        st = self.state
        self._before_partial = {"best_loss": st.best_loss, "best_epoch": st.best_epoch,
                                "since_best": st.since_best, "best_weights": self.best_weights}
        self._score_epoch(losses, validate, None, partial=True)

    def _score_epoch(self, losses: list[tuple[float, int]], validate, after_epoch, partial: bool = False) -> None:
        """Training and validation loss of the epoch, the plateau scheduler, the best weights."""
        st, cfg = self.state, self.cfg
        train_loss, val_loss = self._losses(losses, validate)
        if self.scheduler is not None and not partial:
            self.scheduler.step(val_loss)
        record = {"epoch": st.epoch, "step": st.step, "train_loss": train_loss, "val_loss": val_loss}
        st.history.append({**record, "partial": True} if partial else record)
        if val_loss < st.best_loss - cfg.min_delta:
            st.best_loss, st.best_epoch, st.since_best = val_loss, st.epoch, 0
            if cfg.keep_best:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st.since_best += 1
        if after_epoch is not None:
            after_epoch(st, record)

    # -- resume --------------------------------------------------------------------------------
    def save(self) -> Path | None:
        """Write the resume checkpoint (rank 0; tmp file + rename, never a torn file)."""
        if self.checkpoint is None or not self.ctx.is_main:
            return None
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "loop": self.state.to_dict(), "fingerprint": self.fingerprint,
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "best_weights": self.best_weights, "before_partial": self._before_partial,
            "torch_rng": torch.get_rng_state(),
            "extra": self.extra_state() if self.extra_state is not None else {},
        }
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, self.checkpoint)
        return self.checkpoint

    def resume(self) -> bool:
        """Continue from the resume checkpoint if there is one (once; ``fit`` calls it too)."""
        pending, self._resume_pending = self._resume_pending, False
        if not pending or self.checkpoint is None or not self.checkpoint.is_file():
            return False
        try:
            payload = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        except Exception as e:  # torch raises many types for a corrupt file
            raise ResumeError(f"cannot read the resume checkpoint {self.checkpoint}: {e}") from e
        if payload.get("fingerprint") != self.fingerprint:
            raise ResumeError(f"{self.checkpoint} was written by a run with another configuration; "
                              "use a new output directory or start over (no resume)")
        self.model.load_state_dict(payload["model"])
        self.opt.load_state_dict(payload["optimizer"])
        if self.scheduler is not None and payload.get("scheduler") is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.best_weights = payload.get("best_weights")
        self.state = LoopState(**payload["loop"])
        before = payload.get("before_partial")
        if before is not None:  # the run stopped mid-epoch: that epoch's scoring is undone
            self.best_weights = before.pop("best_weights")
            for k, v in before.items():
                setattr(self.state, k, v)
            self.state.history = [h for h in self.state.history if not h.get("partial")]
        torch.set_rng_state(payload["torch_rng"])
        if self.load_extra_state is not None:
            self.load_extra_state(payload.get("extra", {}))
        log.info("resumed %s at step %d (epoch %d, batch %d)", self.checkpoint, self.state.step,
                 self.state.epoch, self.state.batch_in_epoch)
        return True
