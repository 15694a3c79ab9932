"""Batch size, epochs, steps and patience chosen from the size of the data (small data trains).

A user's own data is often one meter and two months: a few hundred to a few thousand day-long
windows, where the simulator's batch of 64 and 100 epochs either refuse to start ("N windows < one
batch") or overfit. :func:`adapt_schedule` picks

- the batch size ~ n / 32 as a power of two in [8, 64] (at least 32 steps per epoch),
- epochs so that about ``target_steps`` optimizer steps run, and at least ``min_epochs``,
- patience (epochs without a better validation loss before early stopping) a fifth of the
  epochs, at least 3,

and :meth:`Schedule.describe` says it in one line for the log and the route's choices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge.errors import DataError

MIN_BATCH = 8
MAX_BATCH = 64


@dataclass(frozen=True)
class Schedule:
    """What small-data adaptation chose for one training stage."""

    batch_size: int
    epochs: int
    max_steps: int
    patience: int
    n_windows: int

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.n_windows // self.batch_size)

    def describe(self, stage: str, early_stop: bool = True) -> str:
        stop = f", early stop after {self.patience} epochs without validation gain" if early_stop else ""
        return (f"{stage}: {self.n_windows} windows -> batch {self.batch_size}, {self.steps_per_epoch} "
                f"steps/epoch, up to {self.epochs} epochs ({self.max_steps} steps){stop}")

    def to_dict(self) -> dict:
        return asdict(self)


def adapt_schedule(n_windows: int, target_steps: int, max_batch: int = MAX_BATCH, min_batch: int = MIN_BATCH,
                   min_epochs: int = 3) -> Schedule:
    """The schedule for ``n_windows`` training windows (see the module docstring).

    Raises ``DataError`` when there are fewer windows than the smallest batch."""
    if n_windows < min_batch:
        raise DataError(f"{n_windows} training windows are fewer than the smallest batch of {min_batch}; "
                        "give more days")
    batch = int(2 ** np.floor(np.log2(max(n_windows / 32, 1))))
    batch = int(np.clip(batch, min_batch, max_batch))
    per_epoch = max(1, n_windows // batch)
    epochs = max(min_epochs, int(np.ceil(target_steps / per_epoch)))
    steps = min(target_steps, epochs * per_epoch) if epochs > min_epochs else epochs * per_epoch
    return Schedule(batch, epochs, steps, max(3, epochs // 5), n_windows)
