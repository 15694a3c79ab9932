"""Anomaly thresholds fitted to a false-alarm budget, on the workstation and per meter on the Pi.

numpy and the standard library only (no torch, no scipy): the agent refits a meter's threshold from
its own history with the same code the trainer uses on validation days.

A false alarm is a clean day on which the detector fires at least once (the agent scores a rolling
window several times a day; flags on one day are one alarm, the way a household sees it). The
budget is ``target_per_month`` false alarms per meter per month (default 1), so a clean day may
fire with probability at most p = target / 30. Validation rarely covers enough days to see that
rate directly, so the threshold is the larger of

- the empirical bound: above the highest clean daily score when the validation days allow fewer
  than one alarm, otherwise the smallest threshold with at most the allowed number of alarm days;
- the tail bound: a normal fit to the clean daily maxima (median and 1.4826 x MAD, so one odd day
  does not move it), at its 1 - p quantile.

The calibration figures (both bounds, the rate seen on validation, the fit) are returned as a
dict for the checkpoint and the bundle manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np

from edge.errors import DataError

DAYS_PER_MONTH = 30.0
DEFAULT_TARGET_PER_MONTH = 1.0
DEFAULT_RECALIBRATE_AFTER_DAYS = 14
MAD_TO_STD = 1.4826
MIN_SPREAD = 1e-3  # logits: a fit on identical scores still gets a finite tail


class CalibrationError(DataError):
    """Scores that cannot be calibrated (too few, not finite)."""


@dataclass
class ThresholdCalibration:
    """A fitted threshold on a score (a logit: higher = more anomalous) and how it was found."""

    threshold: float
    target_false_alarms_per_month: float
    n_days: int
    n_windows: int
    empirical_threshold: float
    tail_threshold: float
    tail_center: float
    tail_spread: float
    false_alarm_days: int  # clean days that fire at the chosen threshold
    false_alarms_per_month: float  # as seen on the calibration days
    method: str = "max(empirical, normal tail of daily maxima)"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def daily_max(scores: np.ndarray, day: np.ndarray) -> np.ndarray:
    """The highest score of each day (days in ascending order of ``day``)."""
    scores, day = np.asarray(scores, np.float64).ravel(), np.asarray(day).ravel()
    if scores.shape != day.shape:
        raise CalibrationError(f"{scores.shape[0]} scores but {day.shape[0]} day indices")
    _, inv = np.unique(day, return_inverse=True)
    out = np.full(inv.max() + 1 if len(inv) else 0, -np.inf)
    np.maximum.at(out, inv, scores)
    return out


def tail_fit(day_max: np.ndarray) -> tuple[float, float]:
    """Robust (center, spread) of daily maxima: median and 1.4826 x MAD (floored)."""
    center = float(np.median(day_max))
    spread = float(MAD_TO_STD * np.median(np.abs(day_max - center)))
    return center, max(spread, MIN_SPREAD, 0.05 * float(np.std(day_max)))


def fit_threshold(scores: np.ndarray, day: np.ndarray, target_per_month: float = DEFAULT_TARGET_PER_MONTH,
                  rule: str = "max") -> ThresholdCalibration:
    """Threshold on clean ``scores`` (one per window; ``day`` = the window's day) for at most
    ``target_per_month`` alarm days per 30 days. ``rule``: ``"max"`` of the empirical and tail
    bounds (validation days known to be clean), ``"tail"`` the robust tail bound alone (a meter's
    own history, which may hold a real attack). Raises :class:`CalibrationError` on fewer than 3
    days or non-finite scores."""
    if rule not in ("max", "tail"):
        raise CalibrationError(f"rule must be 'max' or 'tail', got {rule!r}")
    scores = np.asarray(scores, np.float64).ravel()
    if not np.isfinite(scores).all():
        raise CalibrationError(f"{int((~np.isfinite(scores)).sum())} non-finite scores")
    if target_per_month <= 0:
        raise CalibrationError(f"target_per_month must be > 0, got {target_per_month}")
    peaks = np.sort(daily_max(scores, day))
    n_days = len(peaks)
    if n_days < 3:
        raise CalibrationError(f"calibration needs clean scores from at least 3 days, got {n_days}")
    allowed = int(np.floor(target_per_month * n_days / DAYS_PER_MONTH))
    # with `allowed` alarm days permitted, the threshold sits just above the (allowed+1)-th highest peak
    top = peaks[n_days - 1 - allowed]
    empirical = float(np.nextafter(top, np.inf))
    center, spread = tail_fit(peaks)
    p_day = min(target_per_month / DAYS_PER_MONTH, 0.5)
    tail = center + spread * NormalDist().inv_cdf(1.0 - p_day)
    threshold = max(empirical, tail) if rule == "max" else tail
    fired = int(np.sum(peaks > threshold))
    return ThresholdCalibration(
        threshold=float(threshold), target_false_alarms_per_month=float(target_per_month), n_days=n_days,
        n_windows=int(scores.size), empirical_threshold=empirical, tail_threshold=float(tail),
        tail_center=center, tail_spread=spread, false_alarm_days=fired,
        false_alarms_per_month=fired * DAYS_PER_MONTH / n_days,
        method="max(empirical, normal tail of daily maxima)" if rule == "max" else
        "normal tail of daily maxima (median, MAD)")


def alarm_episodes(flags: np.ndarray) -> int:
    """Alarms a household sees in a time-ordered run of a detector's flags: the rising edges
    (a flag that stays up over consecutive evaluations is one alarm)."""
    f = np.asarray(flags, bool).ravel()
    return int(f[:1].sum() + np.sum(f[1:] & ~f[:-1]))


def alarm_days(scores: np.ndarray, day: np.ndarray, threshold: float) -> int:
    """Days on which at least one score is above ``threshold``."""
    return int(np.sum(daily_max(scores, day) > threshold))


def recalibrate(day_max_history: np.ndarray, target_per_month: float = DEFAULT_TARGET_PER_MONTH,
                min_days: int = DEFAULT_RECALIBRATE_AFTER_DAYS) -> ThresholdCalibration | None:
    """A meter's own threshold from the daily maxima of its scores on the Pi, or None before
    ``min_days`` days. The robust tail bound alone: a real attack in the history moves the
    median and MAD little, where the empirical maximum would hide every later attack."""
    peaks = np.asarray(day_max_history, np.float64)
    peaks = peaks[np.isfinite(peaks)]
    if len(peaks) < max(min_days, 3):
        return None
    return fit_threshold(peaks, np.arange(len(peaks)), target_per_month, rule="tail")


@dataclass
class MeterThreshold:
    """One meter's anomaly threshold on the Pi: the bundle's until the meter has ``after_days``
    days of its own scores, then refitted from them every day (numpy only, no torch).

    ``observe(day, logit)`` takes every window score the agent computes (``day`` = the local day
    the window ends on); ``threshold`` and ``source`` are what the quality message reports.
    """

    bundle_threshold: float
    target_per_month: float = DEFAULT_TARGET_PER_MONTH
    after_days: int = DEFAULT_RECALIBRATE_AFTER_DAYS
    history_days: int = 60  # daily maxima kept (a rolling two months)
    daily_max: dict[int, float] = field(default_factory=dict)
    fitted: ThresholdCalibration | None = None
    _fitted_through: int | None = None

    def observe(self, day: int, logit: float) -> None:
        if not np.isfinite(logit):
            return
        day = int(day)
        self.daily_max[day] = max(self.daily_max.get(day, -np.inf), float(logit))
        for old in sorted(self.daily_max)[:-self.history_days]:
            del self.daily_max[old]

    def refit(self, today: int) -> None:
        """Refit from the complete days before ``today`` (once per day)."""
        if self._fitted_through == today:
            return
        done = np.array([v for d, v in sorted(self.daily_max.items()) if d < today])
        self.fitted = recalibrate(done, self.target_per_month, self.after_days)
        self._fitted_through = today

    @property
    def threshold(self) -> float:
        return self.fitted.threshold if self.fitted is not None else self.bundle_threshold

    @property
    def source(self) -> str:
        if self.fitted is None:
            have = len(self.daily_max)
            return f"bundle (the meter's own after {self.after_days} days; {have} so far)"
        return f"meter history ({self.fitted.n_days} days)"
