"""From the NILM graph's outputs to one consistent answer per appliance (numpy, runs on the Pi).

The graph gives, per appliance ``a`` and sample ``t``, an ON logit and a power (``edge.task_io``:
``on_logit``, ``appliance_w``). Read separately they contradict each other (a TV "off" at 303 W,
an oven "on" at 0 W) and their sum can exceed what the meter measures. ``decide`` turns them into
one decision with three rules, applied in this order and deterministic:

1. **State** -- ``on[a, t] = on_logit[a, t] > threshold[a]``, with the per-appliance threshold
   calibrated on validation households (best F1; ``ApplianceCalibration.threshold_logit``, stored in
   the bundle manifest). Appliances the household does not have (``owned``) are always off.
2. **Evidence in the aggregate** -- an appliance switching on or off makes a step in what the
   meter measures (Hart 1992's edge principle). An appliance's ON runs (runs at most
   ``FRAGMENT_GAP_SAMPLES`` apart are one: a state that flickers) are tied to their edge: the
   strongest up-step of the aggregate within ``EDGE_SAMPLES`` samples of the run's start (for a
   run already on when the window starts, the strongest down-step near its end; ``steps``: the
   median of ``EDGE_SAMPLES`` samples after minus before), if that step is at least the
   appliance's minimum power. The run is on from its edge (off from it, tied by its end). Then:

   * **one step, one appliance** -- runs of several appliances tied to one edge (within one
     sample: several appliances switching at once, rare for independent appliances and what a
     model answers to a load it does not know, e.g. a heat pump it was not trained on) need
     evidence: the most confident one whose graph power (median over the run) is within
     ``STEP_TOLERANCE`` of the step keeps it alone; else the one whose range ``[min_w, max_w]``
     holds the step, if only one does; else, when no one of them can draw the step alone, those
     whose graph powers in their ranges add up to it within ``STEP_TOLERANCE`` keep it together;
     else none: the step stays unexplained (in the aggregate, in no appliance). Two look-alikes
     sharing one load (washing machine and dishwasher at 600 W each for a 1.4 kW heat pump)
     are no evidence of two appliances. An appliance whose calibration has ``shares_steps``
     False (``tune_rules``: validation showed the rule takes more of its true runs than false
     ones, e.g. a toaster whose step a microwave's graph power agrees with) is judged alone;
   * **a power in its range** -- any other run's power is the step of its edge, or without an edge
     what it adds to the aggregate (its median over the run minus the median over
     ``EDGE_SAMPLES`` samples either side). Where that step lies outside the appliance's range
     ``[min_w, max_w]`` (the 1st and 99th percentile of its ON power in training, at least
     ``MIN_ON_W``) and the graph's power for it is below the range, nothing supports the state: the run is
     off (a 1.4 kW step is no fridge, an 18 W step no TV, whatever the state says); so is a run
     of at most ``SHORT_RUN_SAMPLES`` samples whose step lies outside its range, whatever the
     graph's power (not for an appliance whose calibration has ``needs_step`` False, chosen as
     ``shares_steps``). A run that fills the window has no step: it stays on only with the graph's
     power at least the appliance's minimum.

   Power follows the state: off means exactly 0 W; on means the graph's power clipped into the
   range, or the run's step where that lies in the range and the graph's power (median over the
   run) is below it, or, for a run tied to an edge, differs from the step by more than
   ``STEP_TOLERANCE`` (what the meter saw it add: a small appliance's power head, trained on a
   loss scaled by the whole house, can stay at 0 W).
3. **Never more than the meter measured** -- per sample, with ``budget = max(load_w, 0)``: the ON
   appliances are taken in order of confidence (logit margin over the threshold) while their
   minimum powers still fit in the budget; the others are switched off (a 2 kW kettle cannot be on
   while the house draws 100 W). If the kept appliances' powers still add up to more than the
   budget, the part of each power above its minimum is scaled down by one common factor, so the sum
   equals the budget and every power stays inside its range.

A meter that exports (PV) has a negative net power: the budget is then 0 and nothing is reported
as running; the meter does not measure what the house consumes behind the panels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from edge.bundle import BundleFormatError
from edge.signal.runs import runs

MIN_ON_W = 1.0  # an appliance that is on draws at least this, whatever its calibration says
EDGE_SAMPLES = 3  # samples either side of an edge whose medians give its step; also how far a run's
# start may lie from the edge it is tied to (the graph's state is a sample or two early or late)
FRAGMENT_GAP_SAMPLES = 6  # ON runs of one appliance at most this many samples apart are judged as one
SHORT_RUN_SAMPLES = 6  # a run this short needs the meter's step in its range, whatever the graph's power
STEP_TOLERANCE = 0.3  # the graph's power agrees with a step when within this fraction of it


@dataclass(frozen=True)
class ApplianceCalibration:
    """Per-appliance decision constants, fitted on validation households by the trainer.

    ``merge_gap_s``: OFF gaps shorter than this belong to the same use (an oven's thermostat, a
    washing machine between heating and spinning); ``min_on_s``: a use shorter than this is no
    event (it still counts in the power and energy).
    """

    threshold_logit: float = 0.0
    min_w: float = 0.0
    max_w: float = float("inf")
    merge_gap_s: float = 0.0
    min_on_s: float = 0.0
    val_f1: float | None = None  # ON/OFF F1 at the threshold on the calibration windows
    val_on_share: float | None = None  # share of ON samples there (0: threshold left at 0)
    # Rule 2's judgments this appliance is held to (``tune_rules``, chosen on validation at the
    # decision): its runs take part in "one step, one appliance"; a run judged alone whose step
    # lies outside its range is switched off. False: the rule is not applied to it.
    shares_steps: bool = True
    needs_step: bool = True

    def __post_init__(self) -> None:
        if not (0.0 <= self.min_w <= self.max_w):
            raise BundleFormatError(f"appliance power range must satisfy 0 <= min_w <= max_w, got "
                              f"[{self.min_w}, {self.max_w}]")


@dataclass(frozen=True)
class NilmCalibration:
    """The NILM task's calibration from the bundle manifest (``tasks.nilm.calibration``)."""

    appliances: dict[str, ApplianceCalibration] = field(default_factory=dict)
    decision_lag_s: float = 0.0  # a sample is decided when this much of the future is in the window
    fitted_on: str = ""

    def get(self, name: str) -> ApplianceCalibration:
        return self.appliances.get(name, ApplianceCalibration())

    def to_dict(self) -> dict:
        """Plain JSON: an unbounded ``max_w`` or an unknown figure is ``null``."""
        apps = {k: {f: (v if v is None or isinstance(v, bool) or np.isfinite(v) else None)
                    for f, v in asdict(a).items()}
                for k, a in self.appliances.items()}
        return {"appliances": apps,
                "decision_lag_s": self.decision_lag_s, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: Mapping | None) -> NilmCalibration:
        """Parse a manifest entry; absent means uncalibrated (threshold 0, any power)."""
        if not data:
            return cls()
        try:
            apps = {str(k): ApplianceCalibration(**{f: v if isinstance(v, bool) else float(v)
                                                    for f, v in dict(a).items() if v is not None})
                    for k, a in dict(data.get("appliances", {})).items()}
            return cls(apps, float(data.get("decision_lag_s", 0.0)), str(data.get("fitted_on", "")))
        except (TypeError, ValueError) as e:
            raise BundleFormatError(f"NILM calibration in the manifest is malformed: {e}") from e


@dataclass
class Decision:
    """One consistent answer: ``on`` bool [A, T], ``power_w`` float [A, T] (0 where off),
    ``margin`` [A, T] (logit minus threshold: how sure), ``budget_w`` [T] (what the meter allowed)."""

    names: tuple[str, ...]
    on: np.ndarray
    power_w: np.ndarray
    margin: np.ndarray
    budget_w: np.ndarray


def decide(on_logit: np.ndarray, appliance_w: np.ndarray, load_w: np.ndarray, names: Sequence[str],
           calibration: NilmCalibration, owned: Iterable[str] | None = None) -> Decision:
    """Apply the three rules of the module docstring to one window.

    on_logit, appliance_w: [A, T] (the graph's outputs for one window); load_w: [T] the aggregate
    the graph saw (W, gaps filled); names: the A appliance keys in graph order; owned: the
    appliances this household has (None: all). Returns a ``Decision``; raises ``ValueError`` on
    shapes that do not match.
    """
    logit = np.asarray(on_logit, np.float64)
    power = np.asarray(appliance_w, np.float64)
    load = np.asarray(load_w, np.float64)
    if logit.shape != power.shape or logit.ndim != 2 or logit.shape[0] != len(names) \
            or load.shape != (logit.shape[1],):
        raise ValueError(f"on_logit {logit.shape}, appliance_w {power.shape}, load_w {load.shape} "
                         f"and {len(names)} names do not fit [A, T], [A, T], [T]")
    cal = [calibration.get(n) for n in names]
    thr = np.array([c.threshold_logit for c in cal])[:, None]
    lo = np.array([max(c.min_w, MIN_ON_W) for c in cal])[:, None]
    hi = np.array([c.max_w for c in cal])[:, None]
    keep = np.ones(len(names), bool) if owned is None else np.isin(list(names), list(owned))
    margin = logit - thr
    on = (margin > 0) & keep[:, None]
    budget = np.maximum(np.nan_to_num(load), 0.0)
    power = np.nan_to_num(power)
    on, step = edge_evidence(on, power, margin, budget, lo[:, 0], hi[:, 0],
                             shares=np.array([c.shares_steps for c in cal], bool),
                             needs_step=np.array([c.needs_step for c in cal], bool))
    power = np.where(on & np.isfinite(step), step, power)  # rule 2: the state's power
    power = np.where(on, np.clip(power, lo, hi), 0.0)
    on, power = _fit_budget(on, power, margin, lo, budget)
    return Decision(tuple(names), on, power, margin, budget)


def steps(load_w: np.ndarray, edge: int = EDGE_SAMPLES) -> np.ndarray:
    """The aggregate's step at each sample: ``step[s]`` = median of ``load_w[s:s + edge]`` minus
    median of ``load_w[s - edge:s]`` (fewer samples at the window's ends). load_w: [T] W. Returns
    [T] W, positive where the load rises; ``step[0]`` is NaN (nothing before it)."""
    load = np.asarray(load_w, np.float64)
    n_t = load.size
    out = np.full(n_t, np.nan)
    if n_t < 2:
        return out
    pad = np.concatenate([np.full(edge, np.nan), load, np.full(edge, np.nan)])
    win = np.lib.stride_tricks.sliding_window_view(pad, edge)  # win[i] = pad[i:i + edge]
    before = np.nanmedian(win[1:n_t], axis=1)  # load[s - edge:s] for s = 1..T-1
    after = np.nanmedian(win[edge + 1:edge + n_t], axis=1)  # load[s:s + edge]
    out[1:] = after - before
    return out


@dataclass(frozen=True)
class _Run:
    appliance: int
    start: int
    stop: int
    edge: int  # the sample of the aggregate's step the run is tied to
    up: bool  # tied by its start (an up-step) or, already on at the window's start, by its end
    step_w: float  # the size of that step (W, > 0)


def _tie_to_edge(a: int, start: int, stop: int, load: np.ndarray, step: np.ndarray, min_w: float,
                 edge: int) -> _Run | None:
    """The run's edge: the strongest up-step within ``edge`` samples of its start, or for a run
    that starts with the window the strongest down-step near its end. The medians of ``steps``
    give a clean step its full size on neighbouring samples too; among those within half of the
    strongest, the edge is where the load jumps most from one sample to the next. None: no step of
    at least ``min_w`` there (the appliance's own minimum power), or the run fills the window."""
    n_t = step.size
    if start > 0:
        at, sign = start, 1.0
    elif stop < n_t:
        at, sign = stop, -1.0
    else:
        return None
    lo_s, hi_s = max(at - edge, 1), min(at + edge, n_t - 1)
    cand = sign * np.nan_to_num(step[lo_s:hi_s + 1], nan=-np.inf)
    size = float(cand.max())
    if not size >= max(min_w, MIN_ON_W):
        return None
    jump = sign * (load[lo_s:hi_s + 1] - load[lo_s - 1:hi_s])
    best = int(np.argmax(np.where(cand >= 0.5 * size, jump, -np.inf)))
    return _Run(a, start, stop, lo_s + best, sign > 0, size)


def _run_step(load: np.ndarray, start: int, stop: int, edge: int) -> float:
    """What a run adds to the aggregate: its median over the run minus its median over up to
    ``edge`` samples either side (one side at the window's edge); NaN when it fills the window."""
    outside = np.concatenate([load[max(start - edge, 0):start], load[stop:stop + edge]])
    return float(np.median(load[start:stop]) - np.median(outside)) if outside.size else float("nan")


def _edge_groups(tied: list[_Run]) -> list[list[_Run]]:
    """Runs of the same direction whose edges lie within one sample of each other, grouped."""
    groups: list[list[_Run]] = []
    for up in (True, False):
        for r in sorted((r for r in tied if r.up == up), key=lambda r: r.edge):
            if groups and groups[-1][0].up == up and r.edge - groups[-1][-1].edge <= 1:
                groups[-1].append(r)
            else:
                groups.append([r])
    return groups


def _explain(group: list[_Run], power: np.ndarray, margin: np.ndarray, lo: np.ndarray,
             hi: np.ndarray) -> set[int]:
    """The appliances that keep an edge several appliances switched at (rule 2 of the module
    docstring); an appliance with several runs there (a state that flickers) makes one claim."""
    step_w = max(r.step_w for r in group)
    samples: dict[int, list[int]] = {}
    for r in group:
        samples.setdefault(r.appliance, []).extend(range(r.start, r.stop))
    graph_w = {a: float(np.median(power[a, t])) for a, t in samples.items()}
    agree = [a for a, w in graph_w.items() if abs(w - step_w) <= STEP_TOLERANCE * step_w]
    if agree:  # the graph's own power for it is the step
        return {max(agree, key=lambda a: float(np.mean(margin[a, samples[a]])))}
    fits = [a for a in samples if lo[a] <= step_w <= hi[a]]
    if len(fits) == 1:  # the step's size names one of them
        return set(fits)
    claim = [a for a, w in graph_w.items() if lo[a] <= w <= hi[a]]
    if not fits and len(claim) > 1 and abs(sum(graph_w[a] for a in claim) - step_w) <= STEP_TOLERANCE * step_w:
        return set(claim)  # a step no one of them can draw, and their powers add up to it
    return set()  # several could draw it alone (one load split between look-alikes), or none


def _uses(row: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each ON run of a [T] row, runs at most ``FRAGMENT_GAP_SAMPLES`` apart as one."""
    starts, stops = runs(_close_gaps(row, FRAGMENT_GAP_SAMPLES))
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _close_gaps(row: np.ndarray, gap: int) -> np.ndarray:
    """The row with OFF gaps of at most ``gap`` samples between two ON runs set ON (one use whose
    state flickers is judged once)."""
    out = np.asarray(row, bool).copy()
    starts, stops = runs(out)
    for stop, start in zip(stops[:-1].tolist(), starts[1:].tolist(), strict=True):
        if start - stop <= gap:
            out[stop:start] = True
    return out


def edge_evidence(on: np.ndarray, power_w: np.ndarray, margin: np.ndarray, load_w: np.ndarray,
                  lo_w: np.ndarray, hi_w: np.ndarray, edge: int = EDGE_SAMPLES,
                  shares: np.ndarray | None = None, needs_step: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Rule 2 of the module docstring: ON runs the aggregate does not support are switched off.

    on: bool [A, T] (the states after the thresholds); power_w, margin: [A, T] (the graph's power,
    W, and logit minus threshold); load_w: [T] W; lo_w, hi_w: [A] each appliance's range (W);
    shares, needs_step: bool [A] (None: all True), the appliances held to "one step, one
    appliance" and to a step in their range when judged alone (``ApplianceCalibration``).
    Returns (on [A, T], step [A, T]): the kept states and, where the graph's power is to be
    replaced, the step of the run in W (inside the range); NaN where the graph's power stands.
    """
    load = np.asarray(load_w, np.float64)
    step_at = steps(load, edge)
    power, margin = np.asarray(power_w, np.float64), np.asarray(margin, np.float64)
    state = np.asarray(on, bool)
    shares = np.ones(len(state), bool) if shares is None else np.asarray(shares, bool)
    needs_step = np.ones(len(state), bool) if needs_step is None else np.asarray(needs_step, bool)
    on, use_step = state.copy(), np.full(state.shape, np.nan)
    tied = [(a, start, stop, _tie_to_edge(a, start, stop, load, step_at, lo_w[a], edge))
            for a, row in enumerate(state) for start, stop in _uses(row)]
    shared = set()  # runs at an edge several appliances switched at: judged together
    for group in _edge_groups([r for *_, r in tied if r is not None and shares[r.appliance]]):
        if len({r.appliance for r in group}) > 1:
            shared.update(group)
            kept = _explain(group, power, margin, lo_w, hi_w)
            for r in group:
                if r.appliance not in kept:
                    on[r.appliance, r.start:r.stop] = False
    for a, start, stop, run in tied:
        if run is not None:
            wrong_side = slice(start, max(start, run.edge)) if run.up else slice(min(stop, run.edge), stop)
            on[a, wrong_side] = False  # on from its edge (up), off from it (down)
            if run in shared:
                continue
        step_w = run.step_w if run is not None else _run_step(load, start, stop, edge)
        keep, use_step[a, start:stop] = _judge_alone(run is not None, stop - start, step_w,
                                                     float(np.median(power[a, start:stop])), lo_w[a], hi_w[a])
        if not keep and needs_step[a]:
            on[a, start:stop] = False
    return on, np.where(on, use_step, np.nan)


def _judge_alone(tied: bool, n_samples: int, step_w: float, graph_w: float, lo_w: float, hi_w: float
                 ) -> tuple[bool, float]:
    """A run no other appliance shares an edge with: (keep it, the power it takes from its step or
    NaN for the graph's). ``step_w`` NaN: the run fills the window (no step to compare)."""
    graph_ok = graph_w >= lo_w  # the graph gives it a power (clipped into the range later)
    if not np.isfinite(step_w):
        return graph_ok, float("nan")
    if not lo_w <= step_w <= hi_w:
        return graph_ok and n_samples > SHORT_RUN_SAMPLES, float("nan")
    if not graph_ok or (tied and abs(graph_w - step_w) > STEP_TOLERANCE * step_w):
        return True, step_w
    return True, float("nan")


def _fit_budget(on: np.ndarray, power: np.ndarray, margin: np.ndarray, lo: np.ndarray,
                budget: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rule 3, vectorised over samples: most confident first while minimum powers fit, then a
    common scale on the part above the minimums."""
    order = np.argsort(np.where(on, -margin, np.inf), axis=0, kind="stable")  # confident first
    lo_sorted = np.take_along_axis(np.where(on, lo, 0.0), order, axis=0)
    fits_sorted = np.cumsum(lo_sorted, axis=0) <= budget[None, :]
    fits = np.empty_like(fits_sorted)
    np.put_along_axis(fits, order, fits_sorted, axis=0)
    on = on & fits
    power = np.where(on, power, 0.0)
    floor = np.where(on, lo, 0.0)
    above = power - floor
    room = budget - floor.sum(axis=0)
    total_above = above.sum(axis=0)
    scale = np.where(total_above > room, room / np.maximum(total_above, 1e-12), 1.0)
    return on, np.where(on, floor + above * np.clip(scale, 0.0, 1.0)[None, :], 0.0)


def check_consistent(on: np.ndarray, power_w: np.ndarray, budget_w: np.ndarray,
                     calibration: NilmCalibration | None = None, names: Sequence[str] = (),
                     tol_w: float = 1e-6) -> list[str]:
    """The rules as checks (empty list: consistent). Used by tests and by the agent's self-check."""
    on, power, budget = np.asarray(on, bool), np.asarray(power_w, float), np.asarray(budget_w, float)
    problems = []
    if np.any(power[~on] != 0):
        problems.append("an appliance that is off draws power")
    if np.any(power[on] < MIN_ON_W - tol_w):
        problems.append("an appliance that is on draws no power")
    if np.any(power.sum(axis=0) > budget + tol_w):
        problems.append("the appliances draw more than the meter measured")
    if calibration is not None:
        for i, name in enumerate(names):
            c = calibration.get(name)
            p = power[i][on[i]]
            lo = max(c.min_w, MIN_ON_W)
            if p.size and (p.min() < lo - tol_w or p.max() > c.max_w + tol_w):
                problems.append(f"{name}: power outside [{lo}, {c.max_w}] W while on")
    return problems


# --- calibration on validation windows (workstation: the bundle writer) -------------------------

THRESHOLD_CANDIDATES = 201  # quantiles of an appliance's logits tried as its threshold
RANGE_PERCENTILES = (1.0, 99.0)  # of the true ON power: the appliance's range before the margin
RANGE_MARGIN = 0.1  # the range is widened by this fraction on both sides
LAG_TOLERANCE_F1 = 0.02  # a decision lag is enough when the F1 there is this close to mid-window


def f1_score(pred: np.ndarray, true: np.ndarray) -> float:
    """ON/OFF F1 of two boolean arrays (0 when neither has an ON sample)."""
    tp = float(np.sum(pred & true))
    denom = float(np.sum(pred) + np.sum(true))
    return 2.0 * tp / denom if denom else 0.0


def best_threshold(logit: np.ndarray, true_on: np.ndarray) -> tuple[float, float]:
    """The logit threshold with the best F1 (``on = logit > threshold``) and that F1; among
    quantiles of the logits plus 0 (the untrained default). No ON sample in ``true_on``: 0, 0."""
    logit, true_on = np.asarray(logit, np.float64).ravel(), np.asarray(true_on, bool).ravel()
    if not true_on.any():
        return 0.0, 0.0
    candidates = np.unique(np.append(np.quantile(logit, np.linspace(0.0, 1.0, THRESHOLD_CANDIDATES)), 0.0))
    candidates = candidates[candidates < logit.max()]  # the threshold must let something through
    scores = [f1_score(logit > c, true_on) for c in candidates]
    i = int(np.argmax(scores))
    return float(candidates[i]), float(scores[i])


def power_range(power_w: np.ndarray, true_on: np.ndarray) -> tuple[float, float]:
    """``[min_w, max_w]``: the 1st..99th percentile of the true ON power, widened by 10 %."""
    p = np.asarray(power_w, np.float64)[np.asarray(true_on, bool)]
    p = p[np.isfinite(p) & (p > 0)]
    if p.size == 0:
        return 0.0, float("inf")
    lo, hi = np.percentile(p, RANGE_PERCENTILES)
    return float(lo * (1 - RANGE_MARGIN)), float(hi * (1 + RANGE_MARGIN))


def shortest_use_s(true_on: np.ndarray, resolution_s: float) -> float:
    """The 5th percentile of the true ON runs' durations (s) over windows ``[N, T]``; at least one
    sample. Runs cut by a window's edge count as they are seen."""
    lengths = np.array([n for row in np.asarray(true_on, bool) for n in np.subtract(*runs(row)[::-1])])
    if lengths.size == 0:
        return float(resolution_s)
    return float(max(np.percentile(lengths, 5.0), 1.0) * resolution_s)


def decision_lag(pred_on: np.ndarray, true_on: np.ndarray, resolution_s: float) -> float:
    """How much of the future a sample needs before it is decided (s): the smallest lag among 0,
    1/16, 1/8 and 1/4 of the window whose F1 (over a band of 1/16 of the window ending there) is
    within ``LAG_TOLERANCE_F1`` of the F1 in the window's middle half; else 1/4 of the window.
    ``pred_on``, ``true_on``: [N, A, T]. Bidirectional attention sees less context at the edge."""
    pred, true = np.asarray(pred_on, bool), np.asarray(true_on, bool)
    n_t = pred.shape[-1]
    band = max(n_t // 16, 1)
    mid = f1_score(pred[..., n_t // 4: 3 * n_t // 4], true[..., n_t // 4: 3 * n_t // 4])
    for lag in (0, n_t // 16, n_t // 8):
        stop = n_t - lag
        if f1_score(pred[..., stop - band: stop], true[..., stop - band: stop]) >= mid - LAG_TOLERANCE_F1:
            return float(lag * resolution_s)
    return float(n_t // 4 * resolution_s)


def fit_calibration(on_logit: np.ndarray, true_on: np.ndarray, true_power_w: np.ndarray,
                    names: Sequence[str], resolution_s: float, merge_gap_s: Mapping[str, float] | None = None,
                    fitted_on: str = "") -> NilmCalibration:
    """Fit the decision constants on validation windows.

    on_logit: [N, A, T] the exported graph's ON logits; true_on (bool), true_power_w (W): [N, A, T]
    the truth of the same windows; names: the A appliance keys; resolution_s: seconds per sample;
    merge_gap_s: per appliance, OFF gaps (s) that stay inside one use (absent: two samples).
    Per appliance: the threshold with the best F1 (``best_threshold``), the power range
    (``power_range``), ``min_on_s`` (``shortest_use_s``); one ``decision_lag_s``
    (``decision_lag``). An appliance without ON samples keeps threshold 0 and any power, and its
    ``val_on_share`` is 0 so the manifest says it was not calibrated.
    """
    logit = np.asarray(on_logit, np.float64)
    true_on = np.asarray(true_on, np.float64) > 0.5
    power = np.asarray(true_power_w, np.float64)
    if logit.ndim != 3 or logit.shape != true_on.shape or logit.shape != power.shape \
            or logit.shape[1] != len(names):
        raise ValueError(f"on_logit {logit.shape}, true_on {true_on.shape}, true_power_w {power.shape} "
                         f"and {len(names)} names do not fit [N, A, T]")
    gaps = dict(merge_gap_s or {})
    apps, pred = {}, np.zeros(logit.shape, bool)
    for a, name in enumerate(names):
        thr, f1 = best_threshold(logit[:, a], true_on[:, a])
        lo, hi = power_range(power[:, a], true_on[:, a])
        pred[:, a] = logit[:, a] > thr
        apps[name] = ApplianceCalibration(
            thr, lo, hi, float(gaps.get(name, 2 * resolution_s)),
            shortest_use_s(true_on[:, a], resolution_s), f1, float(true_on[:, a].mean()))
    lag = decision_lag(pred, true_on, resolution_s)
    return NilmCalibration(apps, lag, fitted_on)


RULE_GAIN_F1 = 0.002  # a rule is dropped for an appliance only when the mean F1 gains more than this


def tune_rules(cal: NilmCalibration, on_logit: np.ndarray, appliance_w: np.ndarray, load_w: np.ndarray,
               true_on: np.ndarray, names: Sequence[str],
               owned: Sequence[Iterable[str] | None] | None = None) -> NilmCalibration:
    """Which of rule 2's judgments each appliance is held to, chosen on validation at the decision.

    "One step, one appliance" and "a step in its range" keep an unknown load from being claimed by
    several look-alikes, but they also take true runs away: where the graph finds a toaster and a
    microwave at one 1.2 kW step, or a TV and a fridge at one 100 W step, only one keeps it, and a
    TV whose graph power is low is dropped with a step the TV's own fluctuation blurs. Whether that
    is worth it depends on the appliance and on the graph. Greedy, on the validation windows: with
    every appliance held to both judgments, each appliance in turn is released from "one step,
    one appliance" (``shares_steps``), then from "a step in its range" (``needs_step``), and kept
    released when the mean decided ON/OFF F1 over the appliances seen running gains more than
    ``RULE_GAIN_F1``. Thresholds, ranges and rules 1 and 3 are unchanged.

    cal: ``fit_calibration``'s result; on_logit, appliance_w: [N, A, T] the graph's outputs on
    the validation windows; load_w: [N, T] W; true_on: [N, A, T]; owned: per window the
    household's appliances (None: all). Returns the calibration with the chosen flags and
    ``val_f1`` the decided F1 with them. Raises ``ValueError`` on shapes that do not fit.
    """
    logit = np.asarray(on_logit, np.float64)
    power = np.asarray(appliance_w, np.float64)
    load = np.asarray(load_w, np.float64)
    truth = np.asarray(true_on, np.float64) > 0.5
    if logit.ndim != 3 or logit.shape != power.shape or logit.shape != truth.shape \
            or load.shape != (logit.shape[0], logit.shape[2]) or logit.shape[1] != len(names):
        raise ValueError(f"on_logit {logit.shape}, appliance_w {power.shape}, load_w {load.shape}, "
                         f"true_on {truth.shape} and {len(names)} names do not fit [N, A, T] and [N, T]")
    owned = [None] * len(logit) if owned is None else list(owned)
    seen = truth.any(axis=(0, 2))
    if not seen.any():
        return cal
    best_f1 = _decided_f1(cal, logit, power, load, truth, names, owned)
    for flag in ("shares_steps", "needs_step"):
        for a, name in enumerate(names):
            if not seen[a]:
                continue
            trial = _with_flag(cal, name, flag, False)
            f1 = _decided_f1(trial, logit, power, load, truth, names, owned)
            if f1[seen].mean() > best_f1[seen].mean() + RULE_GAIN_F1:
                cal, best_f1 = trial, f1
    apps = dict(cal.appliances)
    for a, name in enumerate(names):
        if seen[a]:
            apps[name] = replace(cal.get(name), val_f1=float(best_f1[a]))
    return NilmCalibration(apps, cal.decision_lag_s, cal.fitted_on)


def _with_flag(cal: NilmCalibration, name: str, flag: str, value: bool) -> NilmCalibration:
    return NilmCalibration({**cal.appliances, name: replace(cal.get(name), **{flag: value})},
                           cal.decision_lag_s, cal.fitted_on)


def _decided_f1(cal: NilmCalibration, logit: np.ndarray, power: np.ndarray, load: np.ndarray,
                truth: np.ndarray, names: Sequence[str], owned: list) -> np.ndarray:
    """[A] the F1 of ``decide``'s states over all windows."""
    tp, n_pred, n_true = (np.zeros(len(names)) for _ in range(3))
    for i in range(len(logit)):
        on = decide(logit[i], power[i], load[i], names, cal, owned[i]).on
        tp += np.sum(on & truth[i], axis=1)
        n_pred += on.sum(axis=1)
        n_true += truth[i].sum(axis=1)
    denom = n_pred + n_true
    return np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1.0), 0.0)
