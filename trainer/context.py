"""The household's history as model input: context normalisation, naive candidates, point evidence.

The profile tasks see the window being scored, ``load_w [B, L]`` with ``observed [B, L]``, and the
``D`` days before it, ``history_w [B, D, L]`` (oldest day first; ``history_w[:, k, j]`` lies
``(D - k) * L`` bins before ``load_w[:, j]``, the same time of day) with ``history_mask [B, D]``
(1 = the day is there). Everything here is written with plain tensor ops so it exports to
ONNX/TFLite inside the task graphs.

Why these choices (each measured before it was adopted; the evaluation's ablation with D = 0 keeps
measuring the history's worth, ``bench/results/ablation.md``; the evaluation against the baselines
with and without it, ``bench/results/evaluation.md`` and ``evaluation_D0.md``):

* Context normalisation, not instance normalisation. Seed 000 normalises each window by its own mean
  and std, which maps a day scaled by 1.3 onto the same tokens as the clean day. Here the window and
  its history are normalised by the mean and std of the history days (the window's own statistics
  only when no history day is there), so the window's level relative to the household's normal
  stays visible. Values are clipped to +-``clip`` normalised units so that a counter reset (-10^8 W)
  cannot swamp the int8 activations.
* Naive candidates. No naive method wins everywhere (same day last week on national demand, the
  history median on spiky households, linear interpolation on smooth series), so the regression
  heads output softmax weights over candidates plus a correction, initialised to a blend of them:
  the model starts at the naive methods and learns which one fits the series and what they miss.
* Point evidence. Faults a gateway sees (stuck value, zero run, spike, counter reset) are local and
  exact: a run of equal or zero bins, a value above anything the household did in its history. The
  anomaly head gets these per-point features beside the encoder's characteristics.
* Run evidence. A meter thief under-reports for hours; one point of it lies inside the household's
  own spread, hours of it do not. The point evidence therefore also carries trailing means, over the
  last 3 and 6 hours, of each point's log ratio to the history's per-slot mean and minimum, and the
  window evidence their extremes. Measured on the demo preset's validation households (D = 7,
  p' = 0.2 p over the window's last 6 h): the per-point features alone left the trained head at a
  window AUC of 0.55, the 3-h trailing mean of the ratio to the per-slot minimum separates the same
  windows with AUC 0.97 (80 % of them above every clean window's value).

Graph size. On the Pi a batch-1 call is dominated by onnxruntime's per-node overhead, not by
arithmetic (tensors of 7 x 48 values), so this code computes what it can as one tensor: window
and history moments in one pass over a [B, D + 1, L] stack, the gap bounds once for the fill and
the closeness, the history candidates level-matched together, the point evidence built as
[B, channels, L] blocks and its run means as one convolution. The Pi student's imputation graph
(com.microsoft.MoE form) went from 309 to 247 nodes with the same outputs (to float rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from trainer.model import Encoded, ModelConfig


# ---------------------------------------------------------------------------------------------
# Plain-op building blocks (shared with the single-window model of trainer.model)


def gap_bounds(observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest observed point at or before (``prev``) and at or after (``nxt``) each
    point of observed [B, L], as floats [B, L]; -L and 2L where there is none. Written with [B, L, L]
    masked max/min so that it exports to plain ONNX/TFLite ops (no cumulative max); computed once per
    window and shared by ``linear_fill`` and ``gap_closeness``."""
    L = observed.shape[1]
    idx = torch.arange(L, device=observed.device, dtype=observed.dtype)
    obs = (observed > 0.5)[:, None, :]
    before = idx[None, :] <= idx[:, None]  # [i, j]: j <= i
    prev = torch.where(obs & before[None], idx, -float(L)).amax(-1)
    nxt = torch.where(obs & before.T[None], idx, 2.0 * L).amin(-1)
    return prev, nxt


def linear_fill(x: torch.Tensor, observed: torch.Tensor,
                bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Fill the unobserved points of x [B, L] by linear interpolation between the nearest observed
    neighbours (nearest value at the ends, 0 if a row has none); ``bounds``: ``gap_bounds(observed)``
    when the caller has them. Plain ONNX/TFLite ops (masked max/min and gather)."""
    L = x.shape[1]
    idx = torch.arange(L, device=x.device, dtype=x.dtype)
    prev, nxt = gap_bounds(observed) if bounds is None else bounds
    has_prev, has_next = prev >= 0, nxt < L
    x_prev = torch.gather(x, 1, prev.clamp(0, L - 1).long())
    x_next = torch.gather(x, 1, nxt.clamp(0, L - 1).long())
    w = (idx - prev) / (nxt - prev).clamp_min(1.0)
    inner = x_prev + w * (x_next - x_prev)
    edge = torch.where(has_prev, x_prev, torch.where(has_next, x_next, 0.0))
    return torch.where(observed > 0.5, x, torch.where(has_prev & has_next, inner, edge))


def sinusoidal_table(n_pos: int, d_model: int) -> torch.Tensor:
    """[n_pos, d_model] fixed sinusoidal positional encoding of [28] (Vaswani et al.)."""
    pos = torch.arange(n_pos, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(n_pos, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d_model // 2]
    return pe


CLIP = 30.0  # normalised units
EQUAL_TOL = 1e-4  # normalised units: two bins this close are "the same value"
ZERO_W = 0.5  # W: a bin this close to 0 is "zero"
N_STATS = 6
N_SKILL = 3
RUN_HOURS = (3.0, 6.0)  # trailing spans of the run evidence
N_POINT = 15 + 2 * len(RUN_HOURS)
RATIO_CLIP = 3.0  # |log ratio| cap of the ratio evidence (a factor of 20)
N_WINDOW_EVIDENCE = 4 + 4 * len(RUN_HOURS)


@dataclass
class Context:
    """A window and its history, normalised by the history's statistics (all [B, ...] tensors)."""

    mean_w: torch.Tensor  # [B, 1]
    std_w: torch.Tensor  # [B, 1]
    x_n: torch.Tensor  # [B, L] normalised window, 0 where missing
    observed: torch.Tensor  # [B, L]
    fill_n: torch.Tensor  # [B, L] x_n with missing points linearly interpolated
    hist_n: torch.Tensor  # [B, D, L]
    history_mask: torch.Tensor  # [B, D]
    slot_mean: torch.Tensor  # [B, L] per-slot mean over the history days present
    slot_std: torch.Tensor  # [B, L]
    stats: torch.Tensor  # [B, N_STATS] scale-free summary (see ``context_norm``)
    # computed once per call and shared by the heads (None: recomputed where needed)
    n_observed: torch.Tensor | None = None  # [B, 1] observed points of the window (at least 1)
    has_history: torch.Tensor | None = None  # [B, 1] 1 if any history day is there
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None  # ``gap_bounds(observed)``

    @property
    def days(self) -> int:
        return self.hist_n.shape[1]

    def denorm(self, y_n: torch.Tensor) -> torch.Tensor:
        """Normalised [B, ...] back to W."""
        shape = (y_n.shape[0],) + (1,) * (y_n.dim() - 1)
        return y_n * self.std_w.reshape(shape) + self.mean_w.reshape(shape)

    def n_obs(self) -> torch.Tensor:
        """[B, 1] observed points of the window, at least 1."""
        if self.n_observed is None:
            return self.observed.sum(1, keepdim=True).clamp_min(1.0)
        return self.n_observed

    def has(self) -> torch.Tensor:
        """[B, 1] 1 if any history day is there."""
        if self.has_history is None:
            return (self.history_mask.sum(1, keepdim=True) > 0).to(self.fill_n.dtype)
        return self.has_history

    def gap_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return gap_bounds(self.observed) if self.bounds is None else self.bounds


def _masked_moments(x: torch.Tensor, w: torch.Tensor, dims) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and count of ``x`` over ``dims`` where ``w`` = 1 (dims kept)."""
    n = w.sum(dims, keepdim=True).clamp_min(1.0)
    mean = (x * w).sum(dims, keepdim=True) / n
    var = (((x - mean) * w) ** 2).sum(dims, keepdim=True) / n
    return mean, var, n


def _window_and_history_moments(load_w: torch.Tensor, obs: torch.Tensor, history_w: torch.Tensor,
                                m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                          torch.Tensor, torch.Tensor]:
    """Masked mean and variance of the history days present (over days and slots) and of the
    window's observed points, in one pass: the window is row D of a [B, D + 1, L] stack and a
    constant [D + 1, 2] matrix sums each row's totals into its group (history, window). Returns
    rows [B, D + 1, L], their weights, mean [B, 2], var [B, 2] and count [B, 2] (at least 1).
    (Fewer graph nodes than two passes: a context call is dominated by per-node overhead.)"""
    D, L = history_w.shape[1], history_w.shape[2]
    rows = torch.cat([history_w, load_w[:, None]], 1)
    w = torch.cat([m[:, :, None] * torch.ones(L, dtype=load_w.dtype, device=load_w.device), obs[:, None]], 1)
    group = torch.zeros(D + 1, 2, dtype=load_w.dtype, device=load_w.device)
    group[:D, 0] = 1.0
    group[D, 1] = 1.0
    n = (w.sum(-1) @ group).clamp_min(1.0)
    mean = ((rows * w).sum(-1) @ group) / n
    dev = (rows - (mean @ group.T)[:, :, None]) * w
    var = ((dev * dev).sum(-1) @ group) / n
    return rows, w, mean, var, n


def context_norm(load_w: torch.Tensor, observed: torch.Tensor, history_w: torch.Tensor | None,
                 history_mask: torch.Tensor | None, clip: float = CLIP, rel_eps: float = 1e-3) -> Context:
    """Normalise window and history by the history's mean and std (the window's own observed
    statistics when no history day is there). Shapes: load_w, observed [B, L]; history_w [B, D, L];
    history_mask [B, D] (1 = the day is there, 0 = missing); D may be 0 (or the history None).

    ``stats`` [B, 6]: log coefficient of variation, the window's level minus the history's per-slot
    mean (normalised, over its observed points), share of history days present, whether any is,
    share of the window observed, log of the window's std over the normalising std.
    """
    D = 0 if history_w is None else history_w.shape[1]
    if not D:
        return _window_norm(load_w, observed, clip, rel_eps)
    B, L = load_w.shape
    obs = observed.to(load_w.dtype)
    m = history_mask.to(load_w.dtype)
    rows, w, mean2, var2, n2 = _window_and_history_moments(load_w, obs, history_w, m)
    n_days = m.sum(1, keepdim=True)
    has_b = n_days > 0
    has = has_b.to(load_w.dtype)
    mean_h, mean_t = mean2.split(1, 1)
    var_h, var_t = var2.split(1, 1)
    mean, var = torch.where(has_b, mean_h, mean_t), torch.where(has_b, var_h, var_t)
    std = torch.sqrt(var + (rel_eps * mean) ** 2 + 1e-6)
    rows_n = ((rows - mean[:, :, None]) / std[:, :, None]).clamp(-clip, clip) * w
    hist_n, x_n = rows_n.split((D, 1), 1)
    x_n = x_n[:, 0]
    n_t = n2[:, 1:]
    bounds = gap_bounds(obs)
    fill_n = linear_fill(x_n, obs, bounds)
    n_d = n_days.clamp_min(1.0)
    slot_mean = hist_n.sum(1) / n_d  # hist_n is 0 on missing days
    dev = (hist_n - slot_mean[:, None]) * m[:, :, None]
    slot_std = torch.sqrt((dev * dev).sum(1) / n_d + 1e-4)
    level = ((x_n - slot_mean) * obs).sum(1, keepdim=True) / n_t
    stats = torch.cat([torch.log(std / (mean.abs() + std)), level.clamp(-clip, clip), n_days / D, has,
                       obs.mean(1, keepdim=True), torch.log(torch.sqrt(var_t + 1e-6) / std).clamp(-10, 10)], 1)
    return Context(mean, std, x_n, obs, fill_n, hist_n, m, slot_mean, slot_std, stats, n_t, has, bounds)


def _window_norm(load_w: torch.Tensor, observed: torch.Tensor, clip: float, rel_eps: float) -> Context:
    """``context_norm`` without history days: the window's own observed statistics."""
    B, L = load_w.shape
    obs = observed.to(load_w.dtype)
    mean, var, n_t = _masked_moments(load_w, obs, 1)
    std = torch.sqrt(var + (rel_eps * mean) ** 2 + 1e-6)
    x_n = ((load_w - mean) / std).clamp(-clip, clip) * obs
    fill_n = linear_fill(x_n, obs)
    zero = torch.zeros_like(mean)
    stats = torch.cat([torch.log(std / (mean.abs() + std)), zero, zero, zero, obs.mean(1, keepdim=True),
                       torch.log(torch.sqrt(var + 1e-6) / std).clamp(-10, 10)], 1)
    return Context(mean, std, x_n, obs, fill_n, load_w.new_zeros(B, 0, L), load_w.new_zeros(B, 0),
                   torch.zeros_like(fill_n), torch.ones_like(fill_n), stats)


def _recent_days(ctx: Context, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Yesterday and the same day last week (yesterday again if D < 7; ``n`` = 1: yesterday alone):
    their normalised values [B, n, L] and masks [B, n] (one Gather each)."""
    idx = torch.tensor([ctx.days - 1, ctx.days - 7 if ctx.days >= 7 else ctx.days - 1][:n],
                       device=ctx.hist_n.device)
    return ctx.hist_n.index_select(1, idx), ctx.history_mask.index_select(1, idx)


def level_match(base: torch.Tensor, x_n: torch.Tensor, observed: torch.Tensor,
                n_obs: torch.Tensor | None = None) -> torch.Tensor:
    """Shift ``base`` [B, L] (or [B, K, L], each row alike) so its mean over the observed points of
    observed [B, L] equals the window's x_n [B, L]; ``n_obs`` [B, 1]: their count if known."""
    n = observed.sum(1, keepdim=True).clamp_min(1.0) if n_obs is None else n_obs
    if base.dim() == 3:
        x_n, observed, n = x_n[:, None], observed[:, None], n[:, None]
    return base + ((x_n - base) * observed).sum(-1, keepdim=True) / n


def imputation_candidates(ctx: Context) -> torch.Tensor:
    """[B, K, L] fills in normalised units: linear interpolation, then (with history) the per-slot
    history mean, yesterday and the same day last week, each level-matched to the observed points
    (a missing day falls back to the history mean). K = 1, 2, 3 or 4 with D = 0, >= 1, >= 1, >= 7.
    The history candidates are level-matched as one [B, K - 1, L] tensor."""
    if not ctx.days:
        return ctx.fill_n[:, None]
    days, mask = _recent_days(ctx, 2 if ctx.days >= 7 else 1)
    present = mask[:, :, None] > 0.5
    slot = ctx.slot_mean[:, None]
    bases = torch.cat([slot, torch.where(present, days, slot)], 1)
    return torch.cat([ctx.fill_n[:, None], level_match(bases, ctx.x_n, ctx.observed, ctx.n_obs())], 1)


def forecast_candidates(ctx: Context, hour_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Day-ahead [B, K, L] and hour-ahead [B, K, hour_steps] candidates in normalised units for the
    L bins after the window: same time yesterday (the window itself), same time last week (the
    history day 6 days before the window), the mean of the last 7 days, and persistence (the last
    value). K = 4 with D >= 6, else 2 (yesterday, persistence)."""
    B, L = ctx.fill_n.shape
    win = ctx.fill_n
    cands = [win]
    if ctx.days:
        k = ctx.days - 6 if ctx.days >= 6 else 0
        cands.append(torch.where(ctx.history_mask[:, k:k + 1] > 0.5, ctx.hist_n[:, k], win))
        recent = ctx.hist_n[:, max(ctx.days - 6, 0):]
        m = ctx.history_mask[:, max(ctx.days - 6, 0):, None]
        cands.append((win + (recent * m).sum(1)) / (1 + m.sum(1)))
    cands.append(win[:, L - 1:L].expand(B, L))
    day = torch.stack(cands, 1)
    return day, day[:, :, :hour_steps]


def skill_features(ctx: Context) -> torch.Tensor:
    """[B, 3] log MAE with which yesterday, the same day last week (yesterday again if D < 7) and
    the per-slot history mean would have predicted the window: tells the heads which candidate
    suits this series."""
    if not ctx.days:
        return ctx.fill_n.new_zeros(ctx.fill_n.shape[0], N_SKILL)
    refs = torch.cat([_recent_days(ctx)[0], ctx.slot_mean[:, None]], 1)
    return torch.log((ctx.fill_n[:, None] - refs).abs().mean(-1) + 1e-3)


def gap_closeness(observed: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """[B, L] exp(-(distance to the nearest observed point - 1) / 2): 1 next to an observed point,
    small deep in a gap (where linear interpolation is least trustworthy). ``bounds``:
    ``gap_bounds(observed)`` when the caller has them."""
    L = observed.shape[1]
    idx = torch.arange(L, dtype=observed.dtype, device=observed.device)
    prev, nxt = gap_bounds(observed) if bounds is None else bounds
    dist = torch.minimum(idx - prev, nxt - idx).clamp(min=1.0, max=float(L))
    return torch.exp((1.0 - dist) * 0.5)


def run_length(flag: torch.Tensor, k: int = 4) -> torch.Tensor:
    """[B, L] (or [B, C, L], each channel alone) 1 where a point lies in a run of at least ``k``
    consecutive flagged points."""
    x = flag[:, None, :] if flag.dim() == 2 else flag
    C = x.shape[1]
    ones = torch.ones(C, 1, k, dtype=flag.dtype, device=flag.device)
    full = (F.conv1d(x, ones, padding=k - 1, groups=C) >= k - 0.5).to(flag.dtype)
    out = (F.conv1d(full, ones, groups=C) > 0.5).to(flag.dtype)
    return out[:, 0] if flag.dim() == 2 else out


def point_evidence(ctx: Context) -> torch.Tensor:
    """[B, L, N_POINT] per-point evidence against the household's normal: z against the per-slot
    history, excess over the history's maximum / under its minimum at that slot, jump above both
    neighbours, equal-to-a-neighbour and exactly-zero flags with their runs of >= 4, the history's
    own rate of equal and zero bins, whether the point was observed, its normalised value, and the
    log ratios of the point to the history's per-slot mean and minimum (``ratio_evidence``), then
    those ratios' trailing means over the last ``RUN_HOURS`` (``run_evidence``). Built as
    [B, channels, L] blocks and transposed once (fewer graph nodes than one stack per channel)."""
    x = ctx.fill_n
    B, L = x.shape
    raw = ctx.denorm(x)
    z = (x - ctx.slot_mean) / (ctx.slot_std + 0.1)
    pos = torch.arange(L, device=x.device)
    h_min = None
    if ctx.days:
        present = ctx.history_mask[:, :, None] > 0
        h_max = torch.where(present, ctx.hist_n, -1e4).amax(1)
        h_min = torch.where(present, ctx.hist_n, 1e4).amin(1)
        has = ctx.has()
        over, under = has * (x - h_max).clamp(min=0), has * (h_min - x).clamp(min=0)
        n_days = ctx.history_mask.sum(1).clamp_min(1.0)
        steps = (ctx.hist_n[:, :, 1:] - ctx.hist_n[:, :, :-1]).abs() < EQUAL_TOL
        h_equal = (steps.to(x.dtype) * ctx.history_mask[:, :, None]).sum((1, 2)) / (n_days * (L - 1))
        h_raw = ctx.denorm(ctx.hist_n)
        h_zero = ((h_raw.abs() < ZERO_W).to(x.dtype) * ctx.history_mask[:, :, None]).sum((1, 2)) / (n_days * L)
    else:
        over = under = torch.zeros_like(x)
        h_equal = h_zero = x.new_zeros(B)
    pad = torch.cat([x[:, :1], x, x[:, -1:]], 1)
    d_prev, d_next = x - pad[:, :-2], x - pad[:, 2:]
    jump = torch.minimum(d_prev, d_next)
    equal = torch.maximum((d_prev.abs() < EQUAL_TOL).to(x.dtype) * (pos > 0).to(x.dtype),
                          (d_next.abs() < EQUAL_TOL).to(x.dtype) * (pos < L - 1).to(x.dtype))
    zero = (raw.abs() < ZERO_W).to(x.dtype)
    flags = torch.stack([equal, zero], 1)
    ones = torch.ones_like(x)
    ratios = _ratio_evidence(ctx, raw, h_min)
    base = torch.cat([torch.stack([z.clamp(-10, 10) / 3, over.clamp(max=CLIP) / 3, under.clamp(max=CLIP) / 3,
                                   jump.clamp(-CLIP, CLIP) / 3], 1), flags, run_length(flags),
                      torch.stack([(over > 1.0).to(x.dtype), h_equal[:, None] * ones, h_zero[:, None] * ones,
                                   ctx.observed, torch.asinh(x)], 1), ratios, _trailing_means(ratios)], 1)
    return base.transpose(1, 2)


def _run_spans(L: int) -> list[int]:
    """``RUN_HOURS`` in bins of a window of L bins (one day), at least 2."""
    return [max(2, int(round(hours * L / 24.0))) for hours in RUN_HOURS]


def _trailing_means(ratios: torch.Tensor) -> torch.Tensor:
    """[B, 2, L] log ratios (to the per-slot mean, to the minimum) -> [B, 2 * len(RUN_HOURS), L]
    their ``trailing_mean`` over each span of ``RUN_HOURS`` (span by span, ratio by ratio), as one
    convolution: every span's kernel is right-aligned in the longest one, zeros before it."""
    L = ratios.shape[-1]
    spans = _run_spans(L)
    K = max(spans)
    w = torch.zeros(2 * len(spans), 2, K, dtype=ratios.dtype, device=ratios.device)
    for i, k in enumerate(spans):
        for c in range(2):
            w[2 * i + c, c, K - k:] = 1.0 / k
    pad = torch.cat([ratios[..., :1].expand(ratios.shape[0], 2, K - 1), ratios], -1)
    return F.conv1d(pad, w)


def run_evidence(base: torch.Tensor) -> torch.Tensor:
    """[B, L, 2 * len(RUN_HOURS)] trailing means over the last ``RUN_HOURS`` hours (each span in
    the window's own bins, L bins = one day, at least 2) of the two log ratios that end ``base``
    ([B, L, C], the per-point channels of ``point_evidence``: to the per-slot mean, to the minimum)."""
    return _trailing_means(base[..., -2:].transpose(1, 2)).transpose(1, 2)


def trailing_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """[B, L] mean of each point and the ``k - 1`` before it; before the window's start the first
    point stands in (a convolution, so it exports to plain ONNX/TFLite ops)."""
    pad = torch.cat([x[:, :1].expand(x.shape[0], k - 1), x], 1)
    ones = torch.full((1, 1, k), 1.0 / k, dtype=x.dtype, device=x.device)
    return F.conv1d(pad[:, None, :], ones)[:, 0]


def ratio_evidence(ctx: Context, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two [B, L] log ratios (clipped to +-``RATIO_CLIP``): the point (W) over the history's
    per-slot mean and over its per-slot minimum, both offset by 5 % of the history's mean level
    (+1 W) so a zero stays finite. A scaling attack p(1 + lambda) multiplies a household's standby
    floor too, which its own days never do: in normalised units (history std) that shift is a
    fraction of a unit, as a ratio it is log(1 + lambda). 0 without any history day."""
    to_mean, to_min = _ratio_evidence(ctx, raw).unbind(1)
    return to_mean, to_min


def _ratio_evidence(ctx: Context, raw: torch.Tensor, h_min_n: torch.Tensor | None = None) -> torch.Tensor:
    """``ratio_evidence`` as one [B, 2, L] tensor; ``h_min_n`` [B, L]: the history's per-slot
    minimum (normalised units) if the caller has it."""
    if not ctx.days:
        return torch.zeros_like(raw)[:, None].expand(raw.shape[0], 2, raw.shape[1])
    eps = (0.05 * ctx.mean_w.abs() + 1.0)[:, :, None]
    if h_min_n is None:
        h_min_n = torch.where(ctx.history_mask[:, :, None] > 0, ctx.hist_n, 1e4).amin(1)
    refs = ctx.denorm(torch.stack([ctx.slot_mean, h_min_n], 1))
    top = raw.clamp(min=0)[:, None] + eps
    return ctx.has()[:, :, None] * torch.log(top / (refs.clamp(min=0) + eps)).clamp(-RATIO_CLIP, RATIO_CLIP)


# ---------------------------------------------------------------------------------------------
# Embedding and the candidate head


def n_imputation_candidates(history_days: int) -> int:
    """K of ``imputation_candidates``: linear, + slot mean and yesterday (D >= 1), + last week (D >= 7)."""
    return 1 + (2 if history_days >= 1 else 0) + (1 if history_days >= 7 else 0)


def n_forecast_candidates(history_days: int) -> int:
    """K of ``forecast_candidates``."""
    return 4 if history_days >= 1 else 2


def head_features(enc: Encoded) -> torch.Tensor:
    """[B, n_tokens * d_model + N_STATS + N_SKILL]: the characteristics z of every token and the
    context's scale-free summary, what every context head reads."""
    z = enc.z.reshape(enc.z.shape[0], -1)
    return torch.cat([z, enc.context.stats, skill_features(enc.context)], 1)


def anomaly_features(enc: Encoded, point_ev: torch.Tensor, dropout: nn.Module | None = None) -> torch.Tensor:
    """[B, anomaly_width]: what the anomaly heads read: the characteristics z averaged over the
    tokens (d_model, through ``dropout``), the context's scale-free summary and skill, and the
    window evidence (``window_evidence`` of ``point_ev``). Not every token's z as the other heads:
    on the demo preset (D = 7, 300 fine-tuning steps) linear heads on all n_tokens * d_model values
    fitted the training attacks' noise, window AUC 0.89 for p' = 0.2 p over the last 6 h against
    0.98 with the token mean (clean and attacked validation windows of the same households)."""
    z = enc.z.mean(1)
    z = dropout(z) if dropout is not None else z
    return torch.cat([z, enc.context.stats, skill_features(enc.context), window_evidence(enc.context, point_ev)], 1)


def anomaly_width(cfg: ModelConfig) -> int:
    """Width of ``anomaly_features``."""
    return cfg.d_model + N_STATS + N_SKILL + N_WINDOW_EVIDENCE


def head_width(cfg: ModelConfig) -> int:
    """Width of ``head_features``."""
    return cfg.n_tokens * cfg.d_model + N_STATS + N_SKILL


class ContextEmbedding(nn.Module):
    """Eq 3 for a window with its history: P patch tokens of the window, each from its values,
    observed flags and the history's per-slot mean and std (FC over 4 x patch_len), plus the
    sinusoidal PE; one token per history day (FC over its L values) plus a learned day-offset
    embedding, or a learned "missing day" token; every token also gets a projection of the
    context's scale-free statistics. Tokens [B, P + D, d_model]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        P, d, pl = cfg.n_patches, cfg.d_model, cfg.patch_len
        self.patch_fc = nn.Linear(4 * pl, d)
        self.register_buffer("pe", sinusoidal_table(P, d), persistent=False)
        self.stat_fc = nn.Linear(N_STATS, d)
        D = cfg.history_days
        if D:
            self.day_fc = nn.Linear(cfg.seq_len, d)
            self.day_offset = nn.Parameter(torch.randn(D, d) * 0.1)
            self.missing_day = nn.Parameter(torch.zeros(d))

    def forward(self, ctx: Context) -> torch.Tensor:
        cfg = self.cfg
        B, P, pl = ctx.fill_n.shape[0], cfg.n_patches, cfg.patch_len
        chans = [ctx.fill_n, ctx.observed, ctx.slot_mean, ctx.slot_std]
        patches = torch.cat([c.reshape(B, P, pl) for c in chans], -1)
        stat = self.stat_fc(ctx.stats)[:, None, :]
        tokens, position = self.patch_fc(patches), self.pe
        if cfg.history_days:  # the mask is 0/1: a day is there or it is not
            days = torch.where(ctx.history_mask[:, :, None] > 0.5, self.day_fc(ctx.hist_n), self.missing_day)
            tokens, position = torch.cat([tokens, days], 1), torch.cat([self.pe, self.day_offset], 0)
        return tokens + position + stat


class CandidateHead(nn.Module):
    """Imputation / recovery g: softmax weights over the imputation candidates per point plus a
    correction, both linear in ``head_features``; zero-initialised so training starts at their
    blend, with linear interpolation favoured next to observed points (``gap_closeness`` times a
    learned per-candidate weight, initially 2 for linear). Returns the fill in normalised units."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.K, self.L = n_imputation_candidates(cfg.history_days), cfg.seq_len
        self.out = nn.Linear(head_width(cfg), self.L * (self.K + 1))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.closeness = nn.Parameter(torch.zeros(self.K))
        with torch.no_grad():
            self.closeness[0] = 2.0

    def forward(self, enc: Encoded, dropout: nn.Module | None = None) -> torch.Tensor:
        ctx = enc.context
        f = head_features(enc)
        y = self.out(dropout(f) if dropout is not None else f).reshape(f.shape[0], self.K + 1, self.L)
        logits = y[:, :-1] + self.closeness[None, :, None] * gap_closeness(ctx.observed, ctx.gap_bounds())[:, None, :]
        return (torch.softmax(logits, 1) * imputation_candidates(ctx)).sum(1) + y[:, -1]


def window_evidence(ctx: Context, point_ev: torch.Tensor) -> torch.Tensor:
    """[B, N_WINDOW_EVIDENCE]: mean |z|, mean z, max |z| of the window against the per-slot history,
    its mean offset from the per-slot history mean (normalised units), then the minimum and maximum
    over the window of each run channel of ``point_ev`` (``point_evidence`` [B, L, N_POINT]: its
    last ``2 * len(RUN_HOURS)`` channels, hours-long deviations of either sign)."""
    z = (ctx.fill_n - ctx.slot_mean) / (ctx.slot_std + 0.1)
    runs = point_ev[..., N_POINT - 2 * len(RUN_HOURS):]
    return torch.cat([z.abs().mean(1, keepdim=True), z.mean(1, keepdim=True), z.abs().amax(1, keepdim=True),
                      (ctx.fill_n - ctx.slot_mean).mean(1, keepdim=True), runs.amin(1), runs.amax(1)],
                     1).clamp(-CLIP, CLIP)
