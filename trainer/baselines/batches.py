"""The batch and prediction types every baseline, the unified model and the evaluation share
(plain array dataclasses; shapes and units on each field)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.errors import TrainerError

STEPS_PER_DAY = 48  # 30-min profiles (seed 000: L = 48)


class BaselineError(TrainerError):
    """A baseline was used wrongly (predict before fit, inconsistent shapes)."""


@dataclass
class ForecastBatch:
    """Forecast windows. ``history_w`` ends at the forecast origin (oldest first); ``target_w``
    holds the next 48 half-hours (day-ahead); the hour-ahead target is ``target_w[:, :2]``.
    ``covariates`` [N, C] describe the target horizon (calendar + weather, known at the origin)
    and ``step_covariates`` [N, T_hist, S] the history steps (time of day, weekday, temperature)."""

    history_w: np.ndarray  # [N, T_hist]
    covariates: np.ndarray  # [N, C]
    step_covariates: np.ndarray  # [N, T_hist, S]
    target_w: np.ndarray  # [N, 48]
    household: np.ndarray  # [N] household index
    # the D days before the model's one-day window (the day before the origin), as a context model takes them (``history_w`` /
    # ``history_mask`` of ``edge.data.userdata.history_context``); None for a one-day evaluation
    context_w: np.ndarray | None = None  # [N, D, L], oldest day first, 0 where a day is missing
    context_mask: np.ndarray | None = None  # [N, D] 1 = the day is there

    def __len__(self) -> int:
        return len(self.history_w)

    def subset(self, idx: np.ndarray) -> ForecastBatch:
        return ForecastBatch(*(None if (v := getattr(self, f)) is None else v[idx] for f in self.__dataclass_fields__))


@dataclass
class ForecastPrediction:
    day_ahead_w: np.ndarray  # [N, 48]
    hour_ahead_w: np.ndarray  # [N, 2]


@dataclass
class ImputationBatch:
    """Daily profiles with a missing mask. ``load_w`` holds the true values everywhere (methods
    must only read observed points: use `observed_load`); ``previous_w`` is the day before."""

    load_w: np.ndarray  # [N, L]
    observed: np.ndarray  # [N, L] bool, True = observed
    previous_w: np.ndarray  # [N, L]
    ts_s: np.ndarray  # [N, L] int64
    household: np.ndarray  # [N]
    # the D days before the day, as a context model takes them (``history_w`` /
    # ``history_mask`` of ``edge.data.userdata.history_context``); None for a one-day evaluation
    context_w: np.ndarray | None = None  # [N, D, L], oldest day first, 0 where a day is missing
    context_mask: np.ndarray | None = None  # [N, D] 1 = the day is there

    def __len__(self) -> int:
        return len(self.load_w)

    def observed_load(self) -> np.ndarray:
        """The input a method may see: missing points are NaN."""
        return np.where(self.observed, self.load_w, np.nan)


@dataclass
class AnomalyBatch:
    """Windows of one day, possibly attacked; ``history_w`` are the clean days before it."""

    window_w: np.ndarray  # [N, L]
    history_w: np.ndarray  # [N, D_hist * L]
    window_label: np.ndarray  # [N] 0/1
    point_label: np.ndarray  # [N, L] 0/1
    attack: np.ndarray  # [N] str: "none" or an attack kind of edge.sim.inject ("scaling", "ramp_ii")
    # the D days before the window, as a context model takes them (``history_w`` /
    # ``history_mask`` of ``edge.data.userdata.history_context``); None for a one-day evaluation
    context_w: np.ndarray | None = None  # [N, D, L], oldest day first, 0 where a day is missing
    context_mask: np.ndarray | None = None  # [N, D] 1 = the day is there

    def __len__(self) -> int:
        return len(self.window_w)


@dataclass
class AnomalyPrediction:
    window_score: np.ndarray  # [N] higher = more anomalous
    point_score: np.ndarray  # [N, L]
    window_flag: np.ndarray  # [N] bool
    point_flag: np.ndarray  # [N, L] bool


@dataclass
class NILMBatch:
    """High-rate aggregate windows with per-appliance ground truth."""

    load_w: np.ndarray  # [N, T]
    appliance_w: np.ndarray  # [N, A, T]
    on: np.ndarray  # [N, A, T] bool
    ts_s: np.ndarray  # [N, T]
    appliances: list[str]
    resolution_s: int

    def __len__(self) -> int:
        return len(self.load_w)


@dataclass
class NILMPrediction:
    appliance_w: np.ndarray  # [N, A, T]
    on: np.ndarray  # [N, A, T] bool
