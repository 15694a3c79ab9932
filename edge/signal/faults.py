"""Gateway faults in a meter's profile window, judged against the meter's own history.

The faults a gateway sees are not attacks: a meter whose register freezes (stuck value), reads
zero, flips the sign of a value or delivers a single corrupt bin (spike). Each rule here asks one
question of the window [L] of bin means (W) and of the meter's own ``D`` days before it (the
history context the agent already keeps, ``edge.agent.history``): *has this household ever looked
like this?* A rule fires only where the answer is no, so what is normal for one meter (a flat
standby that reads the same integer watts for hours, a coarse register, PV export at noon) is
never a fault for it, and the same reading is one on a meter that never did it.

Rules (per point; a window has a fault when any point has one):

- ``spike``: a single bin far above both its neighbours. Its excess over the higher neighbour
  ``e_t = x_t - max(x_{t-1}, x_{t+1})`` is judged with Hampel's outlier rule (Hampel 1974, "The
  influence curve and its role in robust estimation", JASA 69; the moving-window form is the
  Hampel filter of Pearson 2002, "Outliers in process modeling and identification", IEEE Trans.
  Control Systems Technology 10(1)) against the same excess over every bin of the history:
  ``(e_t - median) / (1.4826 MAD) > spike_k``. Appliance use makes that distribution
  heavy-tailed (a sampled kettle or a 30-min oven bin is an isolated excess too), so a spike must
  also stand alone (``x_t > spike_ratio`` times its higher neighbour: a use that continues in the
  next bin is not one) and be unusual for that time of day (above ``spike_slot_factor`` times the
  highest reading of the history days within ``slot_halfwidth`` slots of it). Judged only where
  both neighbours are known: the newest bin is judged in the next round.
- ``stuck``: a run of identical readings (to ``rel_tol``) at least ``min_stuck_s`` long that the
  meter's own repeat rate makes improbable. Runs of repeats are taken as geometric: with ``q`` the
  history's share of readings near that level (``level_rel`` / ``level_w``) that repeat the one
  before (shrunk towards the whole history's share with ``prior_readings`` pseudo-readings), a run
  of ``n`` has probability ``q^(n-1)``; below ``run_alpha`` it is a fault. A standby that reads
  90 W for 2 h every night (a quantised meter, a coarse register) has a high ``q`` at 90 W and
  may read it for 3 h; a register frozen at 412.7 W on a meter whose readings never repeat is a
  fault after ``min_stuck_s``.
- ``zero_run``: a run of readings within ``zero_w`` of 0 at least ``min_zero_s`` long, longer
  than any in the history and improbable under the same repeat law at level 0 (a meter that never
  reads zero: any such run).
- ``sign_error``: a reading below ``-export_w`` on a meter whose history never exports (no bin
  below ``-export_w`` in any history day); on a meter that does (PV), a negative reading where no
  history day ever exported within ``slot_halfwidth`` slots of that time of day (a sign error at
  night; export at noon is its normal).

The rules need ``min_history_days`` days of history (fewer: nothing is judged, and the report says
so). Counter resets and clock jumps are not visible in bin means; the reading guard
(``firmware_bridge.guard``) flags them reading by reading and the agent adds those events to the
report (``FaultReport.with_events``).

No library we know does this: the Hampel filter packages (``hampel`` on PyPI) judge a point against
its moving window in one series, pandas-based; ADTK's ``PersistAD``/``LevelShiftAD`` (unmaintained
since 2020) do the same. None judges a point against the same household's earlier days, which is
what keeps a flat standby or PV export from firing. The arithmetic is a few numpy lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge.signal.errors import SignalInputError
from edge.signal.runs import runs

FAULT_KINDS: tuple[str, ...] = ("spike", "stuck", "zero_run", "sign_error", "counter_reset", "clock_jump")
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution x 1.4826 = its standard deviation


@dataclass(frozen=True)
class FaultConfig:
    """Thresholds of the rules (see the module docstring); durations in s, powers in W."""

    spike_k: float = 16.0  # Hampel's k on the excess over the neighbours
    spike_ratio: float = 8.0  # ... and this many times the higher neighbour (at least spike_slot_w)
    spike_slot_factor: float = 2.0  # ... and above this times the highest reading around that time of day
    spike_slot_w: float = 30.0  # (plus this) in the history
    slot_halfwidth: int = 3  # "around that time of day": the slot and this many either side, every day
    min_stuck_s: float = 7200.0
    min_zero_s: float = 7200.0
    run_alpha: float = 1e-6  # a run of identical readings less likely than this under the meter's repeat rate
    prior_readings: float = 10.0  # pseudo-readings of the whole history's repeat rate at a level
    min_repeat_rate: float = 0.01
    rel_tol: float = 1e-6  # identical readings: |a - b| <= rel_tol * max(|a|, 1 W)
    level_rel: float = 0.05  # "at that level": within 5 % ...
    level_w: float = 2.0  # ... or 2 W
    zero_w: float = 1.0
    export_w: float = 10.0
    min_history_days: int = 3

    def __post_init__(self) -> None:
        for name in ("spike_k", "spike_ratio", "spike_slot_factor", "min_stuck_s", "min_zero_s", "run_alpha", "zero_w", "export_w"):
            if not getattr(self, name) > 0:
                raise SignalInputError(f"FaultConfig.{name} must be > 0, got {getattr(self, name)!r}")


@dataclass
class FaultReport:
    """Which rule fired where: ``points[kind]`` bool [L] for each kind that fired (absent: none)."""

    points: dict[str, np.ndarray] = field(default_factory=dict)
    judged: bool = True  # False when the history was too short for the rules
    reason: str = ""

    @property
    def kinds(self) -> list[str]:
        """The kinds that fired, in ``FAULT_KINDS`` order."""
        return [k for k in FAULT_KINDS if k in self.points and self.points[k].any()]

    @property
    def any(self) -> bool:
        return bool(self.kinds)

    def mask(self, length: int) -> np.ndarray:
        """bool [length]: points with any fault."""
        out = np.zeros(length, bool)
        for m in self.points.values():
            out |= m
        return out

    def with_events(self, kind: str, mask: np.ndarray) -> FaultReport:
        """This report plus bins where the reading guard saw ``kind`` (``counter_reset``,
        ``clock_jump``): ``mask`` bool [L]."""
        if kind not in FAULT_KINDS:
            raise SignalInputError(f"unknown fault kind {kind!r}; known: {FAULT_KINDS}")
        m = np.asarray(mask, bool)
        if not m.any():
            return self
        return FaultReport({**self.points, kind: m | self.points.get(kind, False)}, self.judged, self.reason)


def _same(a: np.ndarray, b: np.ndarray, rel_tol: float) -> np.ndarray:
    return np.abs(a - b) <= rel_tol * np.maximum(np.maximum(np.abs(a), np.abs(b)), 1.0)


def identical_runs(x: np.ndarray, rel_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of runs of >= 2 consecutive identical finite values of ``x`` [T] (stops
    exclusive, as ``edge.signal.runs.runs``)."""
    same = np.zeros(len(x), bool)
    with np.errstate(invalid="ignore"):
        same[1:] = _same(x[1:], x[:-1], rel_tol) & np.isfinite(x[1:]) & np.isfinite(x[:-1])
    starts, stops = runs(same)
    return starts - 1, stops


def _repeat_rate(hist: np.ndarray, level: float, tol: float, cfg: FaultConfig) -> float:
    """The history's chance that a reading within ``tol`` of ``level`` repeats the one before:
    repeats / readings at that level, shrunk towards the whole history's repeat rate with
    ``cfg.prior_readings`` pseudo-readings, clipped to [``cfg.min_repeat_rate``, 0.99]."""
    with np.errstate(invalid="ignore"):
        prev, cur = hist[:-1], hist[1:]
        known = np.isfinite(prev) & np.isfinite(cur)
        rep = known & _same(cur, prev, cfg.rel_tol)
        at = known & (np.abs(cur - level) <= tol)
    overall = rep.sum() / max(known.sum(), 1)
    rate = (rep[at].sum() + cfg.prior_readings * overall) / (at.sum() + cfg.prior_readings)
    return float(np.clip(rate, cfg.min_repeat_rate, 0.99))


def _improbable_run(hist: np.ndarray, level: float, n: int, tol: float, cfg: FaultConfig) -> bool:
    """A run of ``n`` identical readings has probability rate^(n - 1) under the meter's own repeat
    rate at that level (runs of repeats as a geometric law); below ``cfg.run_alpha`` it is a fault."""
    return (n - 1) * math.log(_repeat_rate(hist, level, tol, cfg)) < math.log(cfg.run_alpha)


def _longest_run(mask: np.ndarray) -> int:
    starts, stops = runs(mask)
    return int((stops - starts).max()) if len(starts) else 0


def detect_faults(window_w: np.ndarray, history_w: np.ndarray | None, history_mask: np.ndarray | None,
                  resolution_s: float, cfg: FaultConfig | None = None) -> FaultReport:
    """The gateway faults in one window (see the module docstring).

    window_w: [L] bin means (W), NaN where the meter sent nothing (never judged).
    history_w: [D, L] the meter's D days before the window, oldest first (``history_w[k, j]`` lies
    ``(D - k) * L`` bins before ``window_w[j]``, the agent's ``HistoryContext``); history_mask: [D],
    1 = the day is there. Returns a ``FaultReport`` (``judged`` False with fewer than
    ``cfg.min_history_days`` days). Raises SignalInputError on shapes that do not match.
    """
    cfg = cfg or FaultConfig()
    x = np.asarray(window_w, np.float64)
    if x.ndim != 1 or not len(x):
        raise SignalInputError(f"window_w must be a non-empty 1-D array, got shape {x.shape}")
    if resolution_s <= 0:
        raise SignalInputError(f"resolution_s must be > 0, got {resolution_s}")
    if history_w is None or history_mask is None:
        return FaultReport(judged=False, reason="no history")
    h = np.asarray(history_w, np.float64)
    hm = np.asarray(history_mask, np.float64).reshape(-1) > 0
    if h.ndim != 2 or h.shape[1] != len(x) or h.shape[0] != len(hm):
        raise SignalInputError(f"history_w {h.shape} and history_mask {hm.shape} do not fit a window of {len(x)}")
    if hm.sum() < cfg.min_history_days:
        return FaultReport(judged=False, reason=f"{int(hm.sum())} history days, the rules need {cfg.min_history_days}")
    hist = np.where(hm[:, None], h, np.nan).reshape(-1)  # contiguous in time, NaN on missing days
    slot_lo, slot_hi = _slot_range(np.where(hm[:, None], h, np.nan)[hm], cfg.slot_halfwidth)
    points = {"spike": _spikes(hist, x, slot_hi, cfg), "stuck": np.zeros(len(x), bool),
              "zero_run": _zero_runs(hist, x, resolution_s, cfg), "sign_error": _sign_errors(hist, x, slot_lo, cfg)}
    points["stuck"] = _stuck(hist, x, resolution_s, cfg) & ~points["zero_run"]
    return FaultReport({k: m for k, m in points.items() if m.any()})


def _excess(series: np.ndarray) -> np.ndarray:
    """x_t - max(x_{t-1}, x_{t+1}) for every inner point of ``series`` (NaN at the ends/unknown)."""
    out = np.full(len(series), np.nan)
    if len(series) >= 3:
        out[1:-1] = series[1:-1] - np.maximum(series[:-2], series[2:])
    return out


def _slot_range(days_w: np.ndarray, halfwidth: int) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) reading [L] of the history days [d, L] at each slot and ``halfwidth``
    slots either side (wrapping round midnight), over all days."""
    L = days_w.shape[1]
    idx = (np.arange(L)[:, None] + np.arange(-halfwidth, halfwidth + 1)[None, :]) % L  # [L, 2h+1]
    around = days_w[:, idx]  # [d, L, 2h+1]
    return np.nanmin(around, axis=(0, 2)), np.nanmax(around, axis=(0, 2))


def _spikes(hist: np.ndarray, x: np.ndarray, slot_hi: np.ndarray, cfg: FaultConfig) -> np.ndarray:
    ref = _excess(hist)
    ref = ref[np.isfinite(ref)]
    if len(ref) < 10:
        return np.zeros(len(x), bool)
    med = float(np.median(ref))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(ref - med))) + 1.0  # + 1 W: a meter flat for days
    e = _excess(np.concatenate([hist[-1:], x]))[1:]  # the first bin's left neighbour is the history's last
    unusual = x > cfg.spike_slot_factor * (np.maximum(slot_hi, 0.0) + cfg.spike_slot_w)
    with np.errstate(invalid="ignore"):
        alone = x > cfg.spike_ratio * np.maximum(x - e, cfg.spike_slot_w)  # x - e: the higher neighbour
        return np.isfinite(e) & ((e - med) / sigma > cfg.spike_k) & alone & unusual


def _stuck(hist: np.ndarray, x: np.ndarray, resolution_s: float, cfg: FaultConfig) -> np.ndarray:
    out = np.zeros(len(x), bool)
    min_bins = max(2, math.ceil(cfg.min_stuck_s / resolution_s))
    for s, e in zip(*identical_runs(x, cfg.rel_tol), strict=True):
        n = e - s
        level = float(x[s])
        if n >= min_bins and _improbable_run(hist, level, n, max(cfg.level_rel * abs(level), cfg.level_w), cfg):
            out[s:e] = True
    return out


def _zero_runs(hist: np.ndarray, x: np.ndarray, resolution_s: float, cfg: FaultConfig) -> np.ndarray:
    out = np.zeros(len(x), bool)
    with np.errstate(invalid="ignore"):
        zero, hist_zero = np.abs(x) <= cfg.zero_w, np.abs(hist) <= cfg.zero_w
    min_bins = max(2, math.ceil(cfg.min_zero_s / resolution_s))
    for s, e in zip(*runs(zero), strict=True):
        if e - s >= min_bins and _longest_run(hist_zero) < e - s and _improbable_run(hist, 0.0, e - s, cfg.zero_w, cfg):
            out[s:e] = True
    return out


def _sign_errors(hist: np.ndarray, x: np.ndarray, slot_lo: np.ndarray, cfg: FaultConfig) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        negative = x < -cfg.export_w
        if not np.any(hist < -cfg.export_w):
            return negative
        return negative & (slot_lo >= -cfg.export_w)
