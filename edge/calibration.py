"""Anomaly thresholds fitted to a false-alarm budget, on the workstation and per meter on the Pi.

numpy and the standard library only (no torch, no scipy): the agent refits a meter's threshold from
its own history with the same code the trainer uses on validation days.

A false alarm is a clean day on which the detector fires at least once (the agent scores a rolling
window several times a day; flags on one day are one alarm, the way a household sees it). The
budget is ``target_per_month`` false alarms per meter per month (default 1), so a clean day may
fire with probability at most p = target / 30. Validation rarely covers enough days to see that
rate directly: ten clean days are ten daily maxima, and the largest of ten is only the daily
1 - 1/11 quantile, far from 1 - 1/30. The threshold on known-clean validation scores is the largest of

- the empirical bound: above the highest clean daily score when the validation days allow fewer
  than one alarm, otherwise the smallest threshold with at most the allowed number of alarm days;
- the daily tail bound: a normal prediction bound on the clean daily maxima, c + s sqrt(1 + 1/n)
  t_{n-1}(1 - p) with c, s the median and 1.4826 x MAD (so one odd day does not move it) of the
  n days: the factor of the normal prediction bound (Hahn & Meeker 1991, Statistical Intervals,
  sec. 4.4, there with mean and s), which a new day exceeds with probability p averaged over the
  n days drawn, where the normal quantile alone is exceeded more often the fewer the days;
- when the days cannot show the budget (fewer than one alarm day allowed: under 30 days at one
  alarm a month), the window tail bound (:func:`window_tail_threshold`): every clean window
  score, not only each day's highest, through a generalized Pareto fit of their upper tail (peaks
  over threshold), at the per-window rate p / n_w (n_w windows a day). By the union bound
  P(a day's highest window > t) <= n_w P(window > t) whatever the dependence between a day's
  overlapping windows, so the daily budget holds when the tail fit does; the dependence only
  makes it conservative, which is why it is left out where the days resolve the budget alone.

The empirical bound is the floor: a threshold never sits below a clean validation day it would
have flagged beyond the budget. On synthetic clean days (a level per day plus autocorrelated
Student-t window noise, 48 windows a day; three seeds of 200 fits each), thresholds so fitted on
10 days fire on fresh clean days 0.8-1.2 times a month on average with 10 degrees of freedom and
1.2-1.4 with 4 (a heavier tail than the real series' validation windows show), where the
empirical bound and the normal quantile of the daily maxima alone fire 1.4-1.9 and 1.8-2.1 times
(tests/edge/test_calibration.py). A meter's own history on the Pi (``rule="tail"``, 14 days or
more) uses the daily tail bound alone, so a real attack inside the history moves it little; it
may raise the meter's threshold above the bundle's, never lower it (:attr:`MeterThreshold.threshold`).

The calibration figures (every bound, the tail fit, the rate seen on validation) are returned as a
dict for the checkpoint and the bundle manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from math import exp, lgamma, pi, sqrt

import numpy as np

from edge.errors import DataError

DAYS_PER_MONTH = 30.0
DEFAULT_TARGET_PER_MONTH = 1.0
DEFAULT_RECALIBRATE_AFTER_DAYS = 14
MAD_TO_STD = 1.4826
MIN_SPREAD = 1e-3  # logits: a fit on identical scores still gets a finite tail
# peaks over threshold: the upper 10 % of the scores (DuMouchel 1983, Ann. Statist. 11:1019), at least 10 of them
TAIL_FRACTION = 0.10
MIN_EXCEEDANCES = 10
MAX_ABS_SHAPE = 0.5  # the PWM estimator is reliable for |xi| < 0.5 (Hosking & Wallis 1987)


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
    # the window tail bound (NaN: too few scores for a tail fit, or a fit of daily maxima alone)
    window_tail_threshold: float = float("nan")
    windows_per_day: int = 1
    tail_shape: float = float("nan")  # generalized Pareto xi of the window scores' upper tail
    tail_scale: float = float("nan")  # its sigma (logits)
    tail_base: float = float("nan")  # the peaks-over-threshold base u (logit)
    tail_exceedances: int = 0  # scores above it

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


@lru_cache(maxsize=256)
def student_t_quantile(prob: float, dof: int) -> float:
    """The ``prob`` quantile (0.5 <= prob < 1) of Student's t with ``dof`` >= 1 degrees of freedom, by
    integrating its density (numpy only; accurate to ~1e-6 for prob <= 1 - 1e-6)."""
    if not 0.5 <= prob < 1.0 or dof < 1:
        raise CalibrationError(f"t quantile needs 0.5 <= prob < 1 and dof >= 1, got {prob}, {dof}")
    hi = 50.0
    while True:
        x = np.linspace(0.0, hi, 200_001)
        norm = exp(lgamma((dof + 1) / 2) - lgamma(dof / 2)) / sqrt(dof * pi)
        pdf = norm * (1 + x * x / dof) ** (-(dof + 1) / 2)
        cdf = 0.5 + np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) * (x[1] - x[0]) / 2)])
        if cdf[-1] >= prob:
            return float(np.interp(prob, cdf, x))
        hi *= 10.0


def prediction_bound(day_max: np.ndarray, p_day: float) -> tuple[float, float, float]:
    """(bound, center, spread): the normal prediction bound a new day's maximum exceeds with
    probability ``p_day`` (module docstring), center and spread from :func:`tail_fit`."""
    n = len(day_max)
    center, spread = tail_fit(day_max)
    factor = float(np.sqrt(1.0 + 1.0 / n)) * student_t_quantile(1.0 - p_day, n - 1)
    return center + spread * factor, center, spread


@dataclass(frozen=True)
class WindowTail:
    """A generalized Pareto fit of the upper tail of window scores and its bound (:func:`window_tail_threshold`)."""

    threshold: float  # the score exceeded with probability p_window (logit)
    shape: float  # xi (Coles 2001 eq 4.2 sign: > 0 heavy tail, < 0 bounded)
    scale: float  # sigma (logits)
    base: float  # u: the scores above it are the exceedances
    exceedances: int
    p_window: float  # the per-window exceedance rate the bound is at


def gpd_pwm(excess: np.ndarray) -> tuple[float, float]:
    """(xi, sigma) of a generalized Pareto distribution fitted to ``excess`` (> 0) by probability
    weighted moments: Hosking & Wallis (1987) Technometrics 29:339, eqs 4-5 with plotting positions
    (i - 0.35) / n, their k = -xi. Closed form, so numpy suffices; xi is clipped to +-0.5, where the
    estimator is reliable. Raises :class:`CalibrationError` on fewer than 2 values or no spread."""
    y = np.sort(np.asarray(excess, np.float64).ravel())
    if len(y) < 2 or not np.ptp(y) > 0:
        raise CalibrationError(f"a tail fit needs >= 2 distinct exceedances, got {len(y)}")
    pp = (np.arange(1, len(y) + 1) - 0.35) / len(y)
    a0, a1 = float(y.mean()), float(np.mean((1.0 - pp) * y))  # E[Y], E[Y (1 - F(Y))]
    k = a0 / (a0 - 2.0 * a1) - 2.0
    sigma = 2.0 * a0 * a1 / (a0 - 2.0 * a1)
    return float(np.clip(-k, -MAX_ABS_SHAPE, MAX_ABS_SHAPE)), float(sigma)


def window_tail_threshold(scores: np.ndarray, windows_per_day: int, p_day: float) -> WindowTail | None:
    """The score a clean window exceeds with probability ``p_day / windows_per_day``: peaks over
    threshold (Coles 2001, An Introduction to Statistical Modeling of Extreme Values, ch. 4.3) on
    the upper ``TAIL_FRACTION`` of ``scores`` (>= ``MIN_EXCEEDANCES``), tail quantile of eq 4.13.
    By the union bound a day of ``windows_per_day`` windows then fires with probability <= ``p_day``
    under any dependence between its windows. None when there are too few scores to fit a tail
    (fewer than twice ``MIN_EXCEEDANCES``) or the tail has no spread."""
    s = np.sort(np.asarray(scores, np.float64).ravel())
    n = len(s)
    k = max(MIN_EXCEEDANCES, int(np.ceil(TAIL_FRACTION * n)))
    if n < 2 * k:
        return None
    base = float(s[n - k - 1])
    try:
        xi, sigma = gpd_pwm(s[n - k:] - base)
    except CalibrationError:
        return None
    p_window = p_day / max(int(windows_per_day), 1)
    ratio = (k / n) / p_window  # zeta_u / p: how far beyond the base the quantile lies, in rate
    excess = sigma * np.log(ratio) if abs(xi) < 1e-9 else sigma / xi * (ratio ** xi - 1.0)
    return WindowTail(float(base + max(excess, 0.0)), xi, sigma, base, k, p_window)


def fit_threshold(scores: np.ndarray, day: np.ndarray, target_per_month: float = DEFAULT_TARGET_PER_MONTH,
                  rule: str = "max") -> ThresholdCalibration:
    """Threshold on clean ``scores`` (one per window; ``day`` = the window's day) for at most
    ``target_per_month`` alarm days per 30 days. ``rule``: ``"max"`` of the empirical, daily tail and
    window tail bounds (validation days known to be clean; module docstring), ``"tail"`` the robust
    daily tail bound alone (a meter's own history, which may hold a real attack). Raises
    :class:`CalibrationError` on fewer than 3 days or non-finite scores."""
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
    empirical = float(np.nextafter(peaks[n_days - 1 - allowed], np.inf))
    p_day = min(target_per_month / DAYS_PER_MONTH, 0.5)
    tail, center, spread = prediction_bound(peaks, p_day)
    per_day = int(np.unique(np.asarray(day).ravel(), return_counts=True)[1].max())
    # the windows' tail only where the days cannot show the budget (fewer than one alarm day allowed)
    wt = window_tail_threshold(scores, per_day, p_day) if rule == "max" and allowed == 0 else None
    if rule == "tail":
        threshold, method = tail, "normal prediction bound of daily maxima (median, MAD)"
    elif wt is None:
        threshold, method = max(empirical, tail), "max(empirical, normal prediction bound of daily maxima)"
    else:
        threshold = max(empirical, tail, wt.threshold)
        method = ("max(empirical, normal prediction bound of daily maxima, generalized Pareto tail of windows "
                  "x union bound)")
    fired = int(np.sum(peaks > threshold))
    figures = {} if wt is None else dict(
        window_tail_threshold=wt.threshold, tail_shape=wt.shape, tail_scale=wt.scale, tail_base=wt.base,
        tail_exceedances=wt.exceedances)
    return ThresholdCalibration(
        threshold=float(threshold), target_false_alarms_per_month=float(target_per_month), n_days=n_days,
        n_windows=int(scores.size), empirical_threshold=empirical, tail_threshold=float(tail),
        tail_center=center, tail_spread=spread, false_alarm_days=fired,
        false_alarms_per_month=fired * DAYS_PER_MONTH / n_days, method=method, windows_per_day=per_day, **figures)


def alarm_episodes(flags: np.ndarray) -> int:
    """Alarms a household sees in a time-ordered run of a detector's flags: the rising edges
    (a flag that stays up over consecutive evaluations is one alarm)."""
    f = np.asarray(flags, bool).ravel()
    return int(f[:1].sum() + np.sum(f[1:] & ~f[:-1]))


@dataclass
class AlarmHold:
    """Hysteresis of one meter's published anomaly flag: an alarm, once raised, stays up until the
    window flags have stayed down for ``release_after_s`` (0: the flag follows each window).

    The detector scores a rolling window (a day of bins at the default cadence) every bin, so
    consecutive windows share all but one bin; a score near its threshold crosses it up and down
    while the same unusual hours are still inside the window. Without a hold each crossing is a
    new alarm (a rising edge) on the household's phone; with it they are one alarm, as the
    threshold's budget counts them (alarm days, :func:`fit_threshold`). ``since_s`` is when the
    current alarm was raised (None when down).

    The agent's default (``schedule.alarm_release_after_s``) is one window span, a day: the alarm
    drops once every bin of the last flagged window has left the window and the windows since were
    clean, so it never ends while the readings that raised it are still being judged. Measured with
    the agent's replay on 20 simulated households of a fleet seed used neither for training nor by
    ``bench/false_alarms.py`` (seed 100, 30 January days, the demo bundle, the meters' own
    thresholds): 1.35 alarms per meter per month without a hold, 1.00 with 1 h, 0.70 with 6 h,
    0.60 with 12 h and with 24 h.
    """

    release_after_s: float
    since_s: float | None = None
    last_flag_s: float | None = None

    def update(self, flag: bool, t_s: float) -> bool:
        """The published flag for a window ending at ``t_s`` (s) whose own flag is ``flag``."""
        if flag:
            self.since_s = t_s if self.since_s is None else self.since_s
            self.last_flag_s = t_s
            return True
        if self.since_s is not None and t_s - self.last_flag_s < self.release_after_s:
            return True
        self.since_s = self.last_flag_s = None
        return False


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
        """The meter's own fit once it has one, never below the bundle's: the bundle's threshold was
        fitted on days known to be clean with every bound of :func:`fit_threshold`, while the
        meter's 14-60 un-vetted daily maxima give the normal bound alone, which on the skewed
        maxima of a day's windows sits below the 1/30 daily tail. Measured with the agent's replay
        (20 simulated households of fleet seed 100, used neither for training nor by
        ``bench/false_alarms.py``; 30 January days, the demo bundle, no alarm hold): letting the
        fit lower the cut raised the alarms from 1.35 to 3.15 per meter per month, and no meter's
        fit rose above the bundle's. A household whose normal scores high still raises its cut."""
        if self.fitted is None:
            return self.bundle_threshold
        return max(self.fitted.threshold, self.bundle_threshold)

    @property
    def source(self) -> str:
        if self.fitted is None:
            have = len(self.daily_max)
            return f"bundle (the meter's own after {self.after_days} days; {have} so far)"
        if self.fitted.threshold < self.bundle_threshold:
            return (f"meter history ({self.fitted.n_days} days; its fit {self.fitted.threshold:.2f} is below "
                    f"the bundle's {self.bundle_threshold:.2f}, which stays the floor)")
        return f"meter history ({self.fitted.n_days} days)"
