"""The household's history as model input: context normalisation, naive candidates, point evidence.

The profile tasks see the window being scored, ``load_w [B, L]`` with ``observed [B, L]``, and the
``D`` days before it, ``history_w [B, D, L]`` (oldest day first; ``history_w[:, k, j]`` lies
``(D - k) * L`` bins before ``load_w[:, j]``, the same time of day) with ``history_mask [B, D]``
(1 = the day is there). Everything here is written with plain tensor ops so it exports to
ONNX/TFLite inside the task graphs.

Why these choices (each measured before it was adopted; the evaluation's ablation with D = 0 keeps
measuring the history's worth, ``bench/results/evaluation.md``):

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


def linear_fill(x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Fill the unobserved points of x [B, L] by linear interpolation between the nearest observed
    neighbours (nearest value at the ends, 0 if a row has none). Written with [B, L, L] masked
    max/min and gather so that it exports to plain ONNX/TFLite ops (no cumulative max)."""
    L = x.shape[1]
    idx = torch.arange(L, device=x.device, dtype=x.dtype)
    obs = observed > 0.5
    before = idx[None, :] <= idx[:, None]  # [i, j]: j <= i
    prev = torch.where(obs[:, None, :] & before[None], idx, -1.0).amax(-1)
    nxt = torch.where(obs[:, None, :] & before.T[None], idx, float(L)).amin(-1)
    has_prev, has_next = prev >= 0, nxt < L
    x_prev = torch.gather(x, 1, prev.clamp(0, L - 1).long())
    x_next = torch.gather(x, 1, nxt.clamp(0, L - 1).long())
    w = (idx - prev) / (nxt - prev).clamp_min(1.0)
    inner = x_prev + w * (x_next - x_prev)
    edge = torch.where(has_prev, x_prev, torch.where(has_next, x_next, torch.zeros_like(x)))
    return torch.where(obs, x, torch.where(has_prev & has_next, inner, edge))


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

    @property
    def days(self) -> int:
        return self.hist_n.shape[1]

    def denorm(self, y_n: torch.Tensor) -> torch.Tensor:
        """Normalised [B, ...] back to W."""
        shape = (y_n.shape[0],) + (1,) * (y_n.dim() - 1)
        return y_n * self.std_w.reshape(shape) + self.mean_w.reshape(shape)


def _masked_moments(x: torch.Tensor, w: torch.Tensor, dims) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and count of ``x`` over ``dims`` where ``w`` = 1 (dims kept)."""
    n = w.sum(dims, keepdim=True).clamp_min(1.0)
    mean = (x * w).sum(dims, keepdim=True) / n
    var = (((x - mean) * w) ** 2).sum(dims, keepdim=True) / n
    return mean, var, n


def context_norm(load_w: torch.Tensor, observed: torch.Tensor, history_w: torch.Tensor | None,
                 history_mask: torch.Tensor | None, clip: float = CLIP, rel_eps: float = 1e-3) -> Context:
    """Normalise window and history by the history's mean and std (the window's own observed
    statistics when no history day is there). Shapes: load_w, observed [B, L]; history_w [B, D, L];
    history_mask [B, D]; D may be 0 (or the history None).

    ``stats`` [B, 6]: log coefficient of variation, the window's level minus the history's per-slot
    mean (normalised, over its observed points), share of history days present, whether any is,
    share of the window observed, log of the window's std over the normalising std.
    """
    B, L = load_w.shape
    obs = observed.to(load_w.dtype)
    mean_t, var_t, n_t = _masked_moments(load_w, obs, 1)
    D = 0 if history_w is None else history_w.shape[1]
    if D:
        m = history_mask.to(load_w.dtype)
        m3 = m[:, :, None].expand(B, D, L)
        mean_h, var_h, n_h = _masked_moments(history_w, m3, (1, 2))
        has = (m.sum(1, keepdim=True) > 0).to(load_w.dtype)
        mean = has * mean_h[:, :, 0] + (1 - has) * mean_t
        var = has * var_h[:, :, 0] + (1 - has) * var_t
    else:
        mean, var, has = mean_t, var_t, torch.zeros_like(mean_t)
    std = torch.sqrt(var + (rel_eps * mean) ** 2 + 1e-6)
    x_n = ((load_w - mean) / std).clamp(-clip, clip) * obs
    fill_n = linear_fill(x_n, obs)
    if D:
        hist_n = ((history_w - mean[:, :, None]) / std[:, :, None]).clamp(-clip, clip) * m3
        slot_mean, slot_var, _ = _masked_moments(hist_n, m3, 1)
        slot_mean, slot_std = slot_mean[:, 0], torch.sqrt(slot_var[:, 0] + 1e-4)
        level = ((x_n - slot_mean) * obs).sum(1, keepdim=True) / n_t
        share = m.mean(1, keepdim=True)
    else:
        hist_n = load_w.new_zeros(B, 0, L)
        m = load_w.new_zeros(B, 0)
        slot_mean, slot_std = torch.zeros_like(fill_n), torch.ones_like(fill_n)
        level, share = torch.zeros_like(mean), torch.zeros_like(mean)
    stats = torch.cat([torch.log(std / (mean.abs() + std)), level.clamp(-clip, clip), share, has,
                       obs.mean(1, keepdim=True), torch.log(torch.sqrt(var_t + 1e-6) / std).clamp(-10, 10)], 1)
    return Context(mean, std, x_n, obs, fill_n, hist_n, m, slot_mean, slot_std, stats)


def _day(ctx: Context, days_back: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The history day ``days_back`` days before the window ([B, L]) and its mask ([B, 1])."""
    k = ctx.days - days_back
    if k < 0:
        return None
    return ctx.hist_n[:, k], ctx.history_mask[:, k:k + 1]


def level_match(base: torch.Tensor, x_n: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Shift ``base`` [B, L] so its mean over the observed points equals the window's."""
    n = observed.sum(1, keepdim=True).clamp_min(1.0)
    return base + ((x_n - base) * observed).sum(1, keepdim=True) / n


def imputation_candidates(ctx: Context) -> torch.Tensor:
    """[B, K, L] fills in normalised units: linear interpolation, then (with history) the per-slot
    history mean, yesterday and the same day last week, each level-matched to the observed points
    (a missing day falls back to the history mean). K = 1, 2, 3 or 4 with D = 0, >= 1, >= 1, >= 7."""
    out = [ctx.fill_n]
    if ctx.days:
        out.append(level_match(ctx.slot_mean, ctx.x_n, ctx.observed))
        for back in (1, 7):
            day = _day(ctx, back)
            if day is not None:
                values, present = day
                out.append(level_match(present * values + (1 - present) * ctx.slot_mean, ctx.x_n, ctx.observed))
    return torch.stack(out, 1)


def forecast_candidates(ctx: Context, hour_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Day-ahead [B, K, L] and hour-ahead [B, K, hour_steps] candidates in normalised units for the
    L bins after the window: same time yesterday (the window itself), same time last week (the
    history day 6 days before the window), the mean of the last 7 days, and persistence (the last
    value). K = 4 with D >= 6, else 2 (yesterday, persistence)."""
    B, L = ctx.fill_n.shape
    win = ctx.fill_n
    cands = [win]
    if ctx.days:
        week = _day(ctx, 6) if ctx.days >= 6 else _day(ctx, ctx.days)
        values, present = week
        cands.append(present * values + (1 - present) * win)
        recent = ctx.hist_n[:, max(ctx.days - 6, 0):]
        m = ctx.history_mask[:, max(ctx.days - 6, 0):, None]
        cands.append((win + (recent * m).sum(1)) / (1 + m.sum(1)))
    cands.append(win[:, L - 1:L].expand(B, L))
    day = torch.stack(cands, 1)
    return day, day[:, :, :hour_steps]


def skill_features(ctx: Context) -> torch.Tensor:
    """[B, 3] log MAE with which yesterday, the same day last week and the per-slot history mean
    would have predicted the window: tells the heads which candidate suits this series."""
    if not ctx.days:
        return ctx.fill_n.new_zeros(ctx.fill_n.shape[0], N_SKILL)
    win = ctx.fill_n
    e1 = (win - ctx.hist_n[:, -1]).abs().mean(1, keepdim=True)
    e7 = (win - ctx.hist_n[:, ctx.days - 7]).abs().mean(1, keepdim=True) if ctx.days >= 7 else e1
    em = (win - ctx.slot_mean).abs().mean(1, keepdim=True)
    return torch.log(torch.cat([e1, e7, em], 1) + 1e-3)


def gap_closeness(observed: torch.Tensor) -> torch.Tensor:
    """[B, L] exp(-(distance to the nearest observed point - 1) / 2): 1 next to an observed point,
    small deep in a gap (where linear interpolation is least trustworthy)."""
    L = observed.shape[1]
    idx = torch.arange(L, dtype=observed.dtype, device=observed.device)
    o = observed > 0.5
    before = idx[None, :] <= idx[:, None]
    prev = torch.where(o[:, None, :] & before[None], idx, -1e4).amax(-1)
    nxt = torch.where(o[:, None, :] & before.T[None], idx, 1e4).amin(-1)
    dist = torch.minimum(idx - prev, nxt - idx).clamp(min=1.0, max=float(L))
    return torch.exp(-(dist - 1.0) / 2.0)


def run_length(flag: torch.Tensor, k: int = 4) -> torch.Tensor:
    """[B, L] 1 where a point lies in a run of at least ``k`` consecutive flagged points."""
    ones = torch.ones(1, 1, k, dtype=flag.dtype, device=flag.device)
    full = (F.conv1d(flag[:, None, :], ones, padding=k - 1)[:, 0] >= k - 0.5).to(flag.dtype)
    return (F.conv1d(full[:, None, :], ones)[:, 0] > 0.5).to(flag.dtype)


def point_evidence(ctx: Context) -> torch.Tensor:
    """[B, L, N_POINT] per-point evidence against the household's normal: z against the per-slot
    history, excess over the history's maximum / under its minimum at that slot, jump above both
    neighbours, equal-to-a-neighbour and exactly-zero flags with their runs of >= 4, the history's
    own rate of equal and zero bins, whether the point was observed, its normalised value, and the
    log ratios of the point to the history's per-slot mean and minimum (``ratio_evidence``), then
    those ratios' trailing means over the last ``RUN_HOURS`` (``run_evidence``)."""
    x = ctx.fill_n
    B, L = x.shape
    raw = ctx.denorm(x)
    z = (x - ctx.slot_mean) / (ctx.slot_std + 0.1)
    pos = torch.arange(L, device=x.device)
    if ctx.days:
        present = ctx.history_mask[:, :, None] > 0
        h_max = torch.where(present, ctx.hist_n, torch.full_like(ctx.hist_n, -1e4)).amax(1)
        h_min = torch.where(present, ctx.hist_n, torch.full_like(ctx.hist_n, 1e4)).amin(1)
        has = (ctx.history_mask.sum(1, keepdim=True) > 0).to(x.dtype)
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
    ones = torch.ones_like(x)
    base = torch.stack([z.clamp(-10, 10) / 3, over.clamp(max=CLIP) / 3, under.clamp(max=CLIP) / 3,
                        jump.clamp(-CLIP, CLIP) / 3, equal, zero, run_length(equal), run_length(zero),
                        (over > 1.0).to(x.dtype), h_equal[:, None] * ones, h_zero[:, None] * ones,
                        ctx.observed, torch.asinh(x), *ratio_evidence(ctx, raw)], -1)
    return torch.cat([base, run_evidence(base)], -1)


def run_evidence(base: torch.Tensor) -> torch.Tensor:
    """[B, L, 2 * len(RUN_HOURS)] trailing means over the last ``RUN_HOURS`` hours (each span in
    the window's own bins, L bins = one day, at least 2) of the two log ratios that end ``base``
    ([B, L, C], the per-point channels of ``point_evidence``: to the per-slot mean, to the minimum)."""
    L = base.shape[1]
    ratios = base[..., -2:]
    runs = [trailing_mean(ratios[..., c], max(2, int(round(hours * L / 24.0))))
            for hours in RUN_HOURS for c in range(2)]
    return torch.stack(runs, -1)


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
    if not ctx.days:
        return torch.zeros_like(raw), torch.zeros_like(raw)
    eps = 0.05 * ctx.mean_w.abs() + 1.0
    present = ctx.history_mask[:, :, None] > 0
    h_min = ctx.denorm(torch.where(present, ctx.hist_n, torch.full_like(ctx.hist_n, 1e4)).amin(1))
    h_mean = ctx.denorm(ctx.slot_mean)
    top = raw.clamp(min=0) + eps
    has = (ctx.history_mask.sum(1, keepdim=True) > 0).to(raw.dtype)

    def log_ratio(ref: torch.Tensor) -> torch.Tensor:
        return has * torch.log(top / (ref.clamp(min=0) + eps)).clamp(-RATIO_CLIP, RATIO_CLIP)
    return log_ratio(h_mean), log_ratio(h_min)


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
        tokens = self.patch_fc(patches) + self.pe + stat
        if cfg.history_days:
            m = ctx.history_mask[:, :, None]
            days = m * self.day_fc(ctx.hist_n) + (1 - m) * self.missing_day + self.day_offset + stat
            tokens = torch.cat([tokens, days], 1)
        return tokens


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
        logits = y[:, :-1] + self.closeness[None, :, None] * gap_closeness(ctx.observed)[:, None, :]
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
