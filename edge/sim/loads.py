"""Whole-house loads driven by weather and habits: space heating (resistive or heat pump) and
cooling under thermostat cycling, EV charging sessions and PV generation."""

from __future__ import annotations

import numpy as np

from edge.sim import weather as wx
from edge.sim.grid import ChunkContext, Segments, is_work_day, reactive_var
from edge.sim.specs import (
    COOLING_PF,
    EV_PF,
    HEATING_PF,
    PV_PF,
)

_STREAM_EV = 0x4556
_HEAT_CAPACITY_J_PER_K = 15e6  # effective thermal mass of a house (typ. 10-30 MJ/K)
# Thermostat periods are not multiples of common sampling intervals, so cycling does not alias
# into a fixed pattern in 30-min means.
_HEAT_PERIOD_S, _HP_PERIOD_S, _COOL_PERIOD_S = 1117.0, 1777.0, 911.0


def _pwm(ctx: ChunkContext, duty: np.ndarray, period_s: float, phase: float) -> np.ndarray:
    """Thermostat on/off: on for the first ``duty`` fraction of every period."""
    return ((ctx.ts / period_s + phase) % 1.0) < duty


def _comfort_timing(ctx: ChunkContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: comfort wanted, hours since comfort ended, hours since comfort started.

    Computed on the hourly activity rows (which start two days before the chunk) and capped at
    36 h, so the result does not depend on where a run is cut.
    """
    comfort_h = (ctx.activity > 0.15).reshape(-1)
    idx = np.arange(len(comfort_h))
    last_on = np.maximum.accumulate(np.where(comfort_h, idx, -10**6))
    last_off = np.maximum.accumulate(np.where(~comfort_h, idx, -10**6))
    row = (ctx.local_day - ctx.day0) * 24 + ctx.hour_idx
    frac_h = (ctx.local % 3600) / 3600
    since_on = np.minimum(row - last_on[row] - 1 + frac_h, 36.0)
    since_off = np.minimum(row - last_off[row] - 1 + frac_h, 36.0)
    return comfort_h[row], np.where(comfort_h[row], 0.0, since_on), np.where(comfort_h[row], since_off, 0.0)


def heating_power(ctx: ChunkContext) -> tuple[np.ndarray, ...]:
    """Space heating with night/away setback and building thermal mass.

    No thermal state is integrated (that would couple days); instead the first-order building
    response is written in closed form: after comfort ends the house coasts, indoor temperature
    decays from the comfort setpoint towards outdoors with time constant ``tau_h``, and heating
    resumes only once it reaches the setback temperature; when comfort starts again the heater
    runs a reheat boost for two hours.
    """
    cfg = ctx.cfg
    tau_h = _HEAT_CAPACITY_J_PER_K / max(cfg.heat_loss_w_per_k, 1.0) / 3600  # building time constant
    comfort, since_end, since_start = _comfort_timing(ctx)
    coast_c = ctx.temp_c + (cfg.comfort_c - ctx.temp_c) * np.exp(-since_end / tau_h)
    act = ctx.act_at_grid()
    gains_w = 150.0 + 300.0 * act
    loss_w = np.where(comfort, cfg.heat_loss_w_per_k * (cfg.comfort_c - ctx.temp_c),
                      np.where(coast_c <= cfg.setback_c, cfg.heat_loss_w_per_k * (cfg.setback_c - ctx.temp_c), 0.0))
    boost = np.where(comfort & (since_start < 2.0), 1.6, 1.0)
    demand_w = np.clip(loss_w * boost - gains_w, 0, None)
    if cfg.heating == "resistive":
        duty = np.clip(demand_w / cfg.heating_power_w, 0, 1)
        p = cfg.heating_power_w * _pwm(ctx, duty, _HEAT_PERIOD_S, ctx.hh["heat_phase"])
    else:  # heat pump: modulates between 30 % and 100 %, cycles below the minimum
        cop = np.clip(2.9 + 0.085 * ctx.temp_c, 1.8, 5.0)
        p_el = np.minimum(demand_w / cop, cfg.heating_power_w)
        p_min = 0.3 * cfg.heating_power_w
        cyc = _pwm(ctx, p_el / p_min, _HP_PERIOD_S, ctx.hh["heat_phase"])
        p = np.where(p_el < p_min, p_min * cyc, p_el)
    p = p.astype(np.float64)
    return p, reactive_var(p, HEATING_PF[cfg.heating]), p > 0


def cooling_power(ctx: ChunkContext) -> tuple[np.ndarray, ...]:
    cfg = ctx.cfg
    act = ctx.act_at_grid()
    sun = np.clip(ctx.sun, 0, None)
    load_w = cfg.heat_loss_w_per_k * (ctx.temp_c - cfg.cooling_setpoint_c) + 400.0 * sun
    wanted = (act > 0.15) | ctx.hh["cool_always"]
    duty = np.where(wanted, np.clip(load_w / 3.0 / cfg.cooling_power_w, 0, 1), 0.0)
    p = cfg.cooling_power_w * _pwm(ctx, duty, _COOL_PERIOD_S, ctx.hh["cool_phase"]).astype(np.float64)
    return p, reactive_var(p, COOLING_PF), p > 0


def ev_segments(ctx: ChunkContext) -> Segments:
    """Charging sessions: constant power, then a three-step taper (constant-voltage phase)."""
    cfg = ctx.cfg
    p_charge = float(np.clip(cfg.ev_kwh_per_day / 12.0, 0.2, 0.9))
    days = ctx.event_day_arr
    u = wx.hash_uniform(ctx.seed, days[:, None], _STREAM_EV, np.arange(4)[None, :])
    home = ctx.activity.sum(axis=1) > 0
    charge = home & (u[:, 0] <= p_charge)
    if not charge.any():
        return Segments.empty()
    days, u = days[charge], u[charge]
    energy_wh = np.clip(cfg.ev_kwh_per_day / p_charge * (0.6 + 0.8 * u[:, 1]), 2, 60) * 1000
    work = np.array([is_work_day(int(d)) for d in days])
    arrive_h = np.clip(18.2 + wx.hash_normal(ctx.seed, days, _STREAM_EV, 9), 15, 23)
    hour = np.full(len(days), 24.5) + u[:, 2] if cfg.ev_timer else np.where(work, arrive_h, 10 + 10 * u[:, 3])
    t = ctx.day_start_utc(days) + hour * 3600
    p = cfg.ev_charger_w
    steps = [(0.92 * energy_wh / p * 3600, p)] + [(0.08 / 3 * energy_wh / (f * p) * 3600, f * p)
                                                   for f in (0.75, 0.5, 0.3)]
    parts = []
    for dur, pw in steps:
        parts.append(Segments(t.copy(), t + dur, np.full(len(t), pw), np.full(len(t), float(reactive_var(pw, EV_PF)))))
        t = t + dur
    return Segments.concat(parts)


def pv_power(ctx: ChunkContext) -> tuple[np.ndarray, ...]:
    """PV export (negative power): clear-sky irradiance (Meinel air-mass model) x cloud factor."""
    cfg = ctx.cfg
    s = ctx.sun
    up = s > 0.01
    irr = np.zeros(ctx.n)
    irr[up] = s[up] * 0.7 ** (s[up] ** -0.678) / 0.7
    cloud = wx.cloud_factor(cfg.weather_seed, ctx.ts, cfg.climate)
    p = -cfg.pv_kwp * 1000.0 * 0.8 * irr * cloud
    return p, reactive_var(p, PV_PF), p < -0.5
