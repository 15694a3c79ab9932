"""Event-driven appliances: Poisson uses per day whose start hours follow occupancy and the
appliance's hour affinity, turned into constant-power segments (on/off, multi-phase cycles,
compressor thermostats) or grid series (variable, always-on loads)."""

from __future__ import annotations

import numpy as np

from edge.sim import weather as wx
from edge.sim.config import DAY_S
from edge.sim.grid import ChunkContext, Segments, drop_overlaps, paint, reactive_var, stream_id
from edge.sim.specs import (
    ACTIVITY,
    HOUR_AFFINITY,
    ApplianceSpec,
)


def _hour_weights(ctx: ChunkContext, spec: ApplianceSpec) -> np.ndarray:
    """[event days, 24] relative start probability per local hour."""
    if spec.hours == "dark":
        hours_utc = ctx.day_start_utc(ctx.event_day_arr)[:, None] + 3600 * (np.arange(24) + 0.5)[None, :]
        s = wx.solar_elevation_sin(hours_utc, ctx.cfg.climate.latitude_deg, ctx.cfg.solar_offset_h)
        return ctx.activity * np.clip(0.6 - s / 0.25, 0.05, 1.0)
    return ctx.activity * HOUR_AFFINITY[spec.hours][None, :]


def _reference_weight(ctx: ChunkContext, spec: ApplianceSpec) -> float:
    """Weight sum of an average week day, so that uses_per_day is the long-run mean."""
    arch = ACTIVITY[ctx.cfg.archetype]
    aff = 0.45 if spec.hours == "dark" else HOUR_AFFINITY[spec.hours]
    ref = (5 * arch["work"] + 2 * arch["free"]) / 7 * aff
    return float(np.sum(ref))


def _poisson_inverse_cdf(u: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Poisson(mu) variates from uniforms u (vectorised inverse CDF; mu up to a few hundred)."""
    mu = np.clip(np.asarray(mu, np.float64), 0, None)
    k_max = int(np.ceil(mu.max() + 10 * np.sqrt(mu.max()) + 10)) if len(mu) else 1
    k = np.arange(k_max)
    log_pmf = k[None, :] * np.log(np.maximum(mu, 1e-300))[:, None] - mu[:, None] - _log_factorial(k)[None, :]
    cdf = np.cumsum(np.exp(log_pmf), axis=1)
    counts = (cdf < u[:, None]).sum(axis=1)
    return np.where(mu > 0, counts, 0).astype(np.int64)


def _log_factorial(k: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, len(k))))])[: len(k)]


def _sample_starts(ctx: ChunkContext, spec: ApplianceSpec, stream: int) -> np.ndarray:
    """Start times (UTC s) of all uses over the event days, sorted.

    Per day: a Poisson number of uses (inverse CDF of a keyed uniform), then each use's hour
    from that day's hour weights (inverse CDF) and a uniform position inside the hour. All
    variates are keyed by (seed, day, stream, use index), so days are independent of chunking.
    """
    upd = ctx.cfg.uses_per_day.get(spec.name, float(np.mean(spec.uses_per_day))) * ctx.cfg.activity_scale
    w = _hour_weights(ctx, spec)
    total = w.sum(axis=1)
    days = ctx.event_day_arr
    mu = upd * total / _reference_weight(ctx, spec)
    counts = _poisson_inverse_cdf(wx.hash_uniform(ctx.seed, days, stream, 0), mu)
    if counts.sum() == 0:
        return np.zeros(0)
    row = np.repeat(np.arange(len(days)), counts)
    j = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # index within day
    cdf = np.cumsum(w / np.where(total > 0, total, 1.0)[:, None], axis=1)
    cdf[:, -1] = 1.0
    u_hour = wx.hash_uniform(ctx.seed, days[row], stream, 1 + 2 * j)
    flat = (cdf + np.arange(len(days))[:, None]).reshape(-1)
    hour = np.searchsorted(flat, row + u_hour, side="right") - 24 * row
    hour = np.clip(hour, 0, 23) + wx.hash_uniform(ctx.seed, days[row], stream, 2 + 2 * j)
    return np.sort(ctx.day_start_utc(days[row]) + hour * 3600)


def onoff_segments(ctx: ChunkContext, spec: ApplianceSpec, rated_w: float) -> Segments:
    stream = stream_id(spec.name)
    starts = _sample_starts(ctx, spec, stream)
    # Durations are derived from each start time, so they do not depend on the chunking.
    u = _hash_uniform(starts, stream)
    dur = spec.duration_s[0] + u * (spec.duration_s[1] - spec.duration_s[0])
    ends = starts + dur
    power = np.full(len(starts), rated_w)
    if spec.multi_instance:  # each lamp/room its own power
        power = rated_w * (0.5 + _hash_uniform(starts, stream + 7))
    else:
        keep = drop_overlaps(starts, ends)
        starts, ends, power = starts[keep], ends[keep], power[keep]
    return Segments(starts, ends, power, reactive_var(power, spec.pf))


def _hash_uniform(x: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic uniforms in [0, 1) from values (event start times), independent of chunking."""
    v = (np.round(np.asarray(x, dtype=np.float64) * 1000).astype(np.int64) ^ np.int64(salt * 0x9E3779B1))
    v = v.astype(np.uint64)
    v ^= v >> np.uint64(33)
    v *= np.uint64(0xFF51AFD7ED558CCD)
    v ^= v >> np.uint64(33)
    v *= np.uint64(0xC4CEB9FE1A85EC53)
    v ^= v >> np.uint64(33)
    return (v >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def cycle_segments(ctx: ChunkContext, spec: ApplianceSpec, rated_w: float) -> Segments:
    """Multi-state runs: consecutive phases; thermostat phases split into on-periods."""
    stream = stream_id(spec.name)
    starts = _sample_starts(ctx, spec, stream)
    if len(starts) == 0:
        return Segments.empty()
    durs = np.stack([ph.duration_s[0] + _hash_uniform(starts, stream + 31 * k + 1)
                     * (ph.duration_s[1] - ph.duration_s[0]) for k, ph in enumerate(spec.phases)], axis=1)
    offsets = np.concatenate([np.zeros((len(starts), 1)), np.cumsum(durs, axis=1)], axis=1)
    keep = drop_overlaps(starts, starts + offsets[:, -1])
    starts, durs, offsets = starts[keep], durs[keep], offsets[keep]
    parts = []
    for k, ph in enumerate(spec.phases):
        t0, dur = starts + offsets[:, k], durs[:, k]
        p = rated_w * ph.power_frac
        q = float(reactive_var(p, ph.pf))
        if ph.duty >= 1.0:
            a, b = t0, t0 + dur
        else:  # on for duty * period at the start of every period of the phase
            n_per = np.ceil(dur / ph.period_s).astype(np.int64)
            ev = np.repeat(np.arange(len(t0)), n_per)
            c = np.arange(n_per.sum()) - np.repeat(np.cumsum(n_per) - n_per, n_per)
            a = t0[ev] + c * ph.period_s
            b = np.minimum(a + ph.duty * ph.period_s, (t0 + dur)[ev])
        parts.append(Segments(a, b, np.full(len(a), p), np.full(len(a), q)))
    return Segments.concat(parts)


def _knot_noise(ctx: ChunkContext, stream: int, knot_s: int) -> np.ndarray:
    """Smooth noise in [0, 1) at the grid: keyed random knots every ``knot_s``, interpolated."""
    d0 = int(ctx.t0_s // DAY_S)
    d1 = int((ctx.t0_s + ctx.n * ctx.step_s) // DAY_S) + 1
    per_day = DAY_S // knot_s
    days = np.arange(d0, d1 + 1)
    knots = wx.hash_uniform(ctx.seed, days[:, None], stream, np.arange(per_day)[None, :]).reshape(-1)
    knot_ts = d0 * DAY_S + knot_s * np.arange(len(knots), dtype=np.float64)
    return np.interp(ctx.ts, knot_ts, knots)


def variable_power(ctx: ChunkContext, spec: ApplianceSpec, rated_w: float) -> tuple[np.ndarray, ...]:
    """Type 3: sessions (on/off) whose power varies continuously within a session."""
    seg = onoff_segments(ctx, spec, 1.0)
    _, _, cover = paint(ctx, [seg.power_w, seg.reactive_var, np.ones_like(seg.power_w)],
                         seg.start_s, seg.end_s)
    level = 0.35 + 0.65 * _knot_noise(ctx, stream_id(spec.name) + 3, 120)
    p = rated_w * np.clip(cover, 0, 1) * level
    return p, reactive_var(p, spec.pf), cover > 1e-9


def always_on_power(ctx: ChunkContext, spec: ApplianceSpec, rated_w: float) -> tuple[np.ndarray, ...]:
    wobble = 0.97 + 0.06 * _knot_noise(ctx, stream_id(spec.name) + 3, 900)
    p = rated_w * wobble
    return p, reactive_var(p, spec.pf), np.ones(ctx.n, bool)


def _activity_at(ctx: ChunkContext, t_s: np.ndarray) -> np.ndarray:
    local = t_s + ctx.cfg.clock_offsets_s(t_s)
    row = np.floor(local / DAY_S).astype(np.int64) - ctx.day0
    hour = ((local % DAY_S) // 3600).astype(np.int64)
    ok = (row >= 0) & (row < len(ctx.activity))
    out = np.full(len(t_s), 0.3)
    out[ok] = ctx.activity[row[ok], hour[ok]]
    return out


def compressor_segments(ctx: ChunkContext, spec: ApplianceSpec, rated_w: float) -> Segments:
    """Thermostatic compressor cycles; warmer kitchens and door openings raise the duty cycle.

    Cycles are generated per UTC day (clipped at midnight) so a day is chunk-independent.
    """
    stream = stream_id(spec.name)
    duty_base = ctx.hh["freezer_duty" if spec.name == "freezer" else "fridge_duty"]
    on_mean = float(np.mean(spec.duration_s))
    d0 = int(ctx.t0_s // DAY_S)
    d1 = int((ctx.t0_s + ctx.n * ctx.step_s - 1) // DAY_S)
    days = np.arange(d0, d1 + 1)
    t_out, _ = wx.day_means(ctx.cfg.weather_seed, days, ctx.cfg.climate)
    indoor_c = 20.0 + 0.35 * np.clip(t_out - 14.0, 0.0, None)
    duty = np.clip(duty_base * (1 + 0.04 * (indoor_c - 20)), 0.12, 0.8)[:, None]
    n = int(DAY_S / (on_mean / duty.min())) + 8
    i = np.arange(n)[None, :]
    on = on_mean * (0.85 + 0.3 * wx.hash_uniform(ctx.seed, days[:, None], stream, i))
    off = on * (1 - duty) / duty * (0.85 + 0.3 * wx.hash_uniform(ctx.seed, days[:, None], stream + 1, i))
    first = days[:, None] * DAY_S + wx.hash_uniform(ctx.seed, days, stream + 2)[:, None] * (on[:, :1] + off[:, :1])
    cum = np.concatenate([np.zeros((len(days), 1)), np.cumsum(on + off, axis=1)[:, :-1]], axis=1)
    act = _activity_at(ctx, (first + cum).reshape(-1)).reshape(on.shape)
    off = off * (1 - 0.3 * act)  # door openings shorten the off periods
    t = first + np.concatenate([np.zeros((len(days), 1)), np.cumsum(on + off, axis=1)[:, :-1]], axis=1)
    end_day = ((days + 1) * DAY_S)[:, None] + 0 * t
    k = t < end_day
    t, on, end_day = t[k], on[k], end_day[k]
    q = float(reactive_var(rated_w, spec.pf))
    parts = [Segments(t, np.minimum(t + on, end_day), np.full(len(t), rated_w), np.full(len(t), q))]
    if ctx.step_s <= 5:  # inrush at compressor start, visible at 1-5 s resolution
        parts.append(Segments(t, t + 1.5, np.full(len(t), 3.0 * rated_w),
                               np.full(len(t), float(reactive_var(3.0 * rated_w, 0.6)))))
    if spec.name == "fridge" and ctx.hh["fridge_defrost"]:  # daily defrost heater
        t_def = days * DAY_S + DAY_S * wx.hash_uniform(ctx.seed, days, stream + 3)
        parts.append(Segments(t_def, np.minimum(t_def + 1500, (days + 1) * DAY_S),
                               np.full(len(days), 220.0), np.zeros(len(days))))
    return Segments.concat(parts)
