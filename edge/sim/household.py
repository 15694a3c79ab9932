"""Appliance-level household simulator (numpy only).

A household is a :class:`HouseholdConfig` (which appliances it owns and how big they are, who
lives there, heating, PV, EV, climate). :func:`simulate_household` turns it into a
:class:`HouseholdTrace`: aggregate net active and reactive power as a meter would report them
(noise, quantisation), cumulative import/export energy counters, per-appliance ground truth,
outdoor temperature and calendar.

How it works (and why it is fast and deterministic):

- Time is an internal grid of ``step_s = resolution_s`` (<= 60 s) or ``gcd(resolution_s, 60)``
  (coarser outputs are block means of the 1-min grid, so a 30-min profile is the true mean power).
- Every random choice is drawn from a generator keyed by ``(seed, day, purpose)``
  (counter-based :func:`edge.sim.weather.hash_uniform`): a day is the same whether it is simulated alone (the live
  stream) or inside a year. Events of the previous days that spill past midnight are included.
- Appliance uses are *events* sampled per day: a Poisson number of uses whose start hours follow
  occupancy activity (by hour, work/free day, wake-up time, vacations) times the appliance's hour
  affinity. Each event becomes constant-power *segments* (cycle appliances have several phases,
  thermostat phases are split into on-periods). Segments are painted onto the grid with exact
  fractional coverage of the first and last bin, using ``np.bincount`` on difference arrays, so
  energy is exact at any resolution.
- Weather-driven loads (heating, cooling, PV) and compressor cycles are vectorised over the grid.
- Reactive power is ``Q = P * tan(acos(|pf|)) * sign(pf)`` per appliance and phase.
- Behaviour follows the household's wall clock: a fixed ``utc_offset_h`` or an IANA ``tz`` with
  daylight saving (switching at UTC midnight of the change day); sun and weather use local
  standard time. Profiles are cut at local midnights.
- The meter integrates the true net power into the import/export counters; the reported power
  is the interval mean plus Gaussian noise (``noise_w + noise_frac * |P|``), quantised to
  ``quantum_w``.

Memory: about ``9 * n_samples * n_appliances`` bytes for the trace (1-min, one year, 20
appliances: ~95 MB); long runs are simulated in chunks of days to bound temporaries.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from edge.errors import SimulationError
from edge.sim import weather as wx
from edge.sim.appliances import (
    always_on_power,
    compressor_segments,
    cycle_segments,
    onoff_segments,
    variable_power,
)
from edge.sim.config import (
    DAY_S,
    HouseholdConfig,
    internal_step_s,
    parse_resolution,
    parse_start,
)
from edge.sim.grid import ChunkContext, household_params, paint_segments, stream_id
from edge.sim.loads import cooling_power, ev_segments, heating_power, pv_power
from edge.sim.specs import (
    ALL_APPLIANCES,
    SPECS_BY_NAME,
    ApplianceSpec,
)
from edge.sim.trace import ApplianceTrace, DailyProfiles, HouseholdTrace

__all__ = ["ApplianceTrace", "DailyProfiles", "HouseholdConfig", "HouseholdTrace", "SimulationError",
           "appliance_names", "fleet_member", "parse_resolution", "parse_start", "simulate_fleet",
           "simulate_household"]

_MAX_CHUNK_SAMPLES = 2_000_000
_STREAM_NOISE = 0x4E53


def appliance_names(config: HouseholdConfig) -> list[str]:
    """The appliances a trace of this household contains, in ALL_APPLIANCES order."""
    extra = {
        "heating": config.heating != "none", "cooling": config.cooling_power_w > 0,
        "ev": config.ev_charger_w > 0, "pv": config.pv_kwp > 0,
    }
    return [n for n in ALL_APPLIANCES if n in config.appliances or extra.get(n, False)]


def _fluctuate(ctx: ChunkContext, spec: ApplianceSpec, p: np.ndarray, q: np.ndarray,
               on: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth relative power fluctuation while on (drum motor, screen content), power factor kept."""
    if spec.fluctuation <= 0 or not on.any():
        return p, q, on
    knot_s = max(float(spec.fluctuation_s), 1.0)
    pos = ctx.ts[on] / knot_s  # only where the appliance is on: cost follows its duty cycle
    k = np.floor(pos).astype(np.int64)
    stream = stream_id(spec.name) + 5
    u0, u1 = wx.hash_uniform(ctx.seed, k, stream), wx.hash_uniform(ctx.seed, k + 1, stream)
    noise = u0 + (u1 - u0) * (pos - k)  # keyed by absolute knot index: chunk-independent
    factor = 1.0 + spec.fluctuation * (2.0 * noise - 1.0)
    p, q = p.copy(), q.copy()
    p[on] *= factor
    q[on] *= factor
    return p, q, on


def _simulate_chunk(ctx: ChunkContext) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = {}
    for name in appliance_names(ctx.cfg):
        spec = SPECS_BY_NAME.get(name)
        if spec is None:
            if name in ("heating", "cooling", "pv"):
                out[name] = {"heating": heating_power, "cooling": cooling_power, "pv": pv_power}[name](ctx)
            else:
                out[name] = paint_segments(ctx, ev_segments(ctx))
            continue
        rated = ctx.cfg.appliances[name]
        if spec.kind == "onoff":
            out[name] = _fluctuate(ctx, spec, *paint_segments(ctx, onoff_segments(ctx, spec, rated)))
        elif spec.kind == "cycle":
            out[name] = _fluctuate(ctx, spec, *paint_segments(ctx, cycle_segments(ctx, spec, rated)))
        elif spec.kind == "compressor":
            out[name] = paint_segments(ctx, compressor_segments(ctx, spec, rated))
        elif spec.kind == "variable":
            out[name] = variable_power(ctx, spec, rated)
        else:
            out[name] = always_on_power(ctx, spec, rated)
    return out


def _block_mean(x: np.ndarray, k: int) -> np.ndarray:
    return x if k == 1 else x.reshape(-1, k).mean(axis=1)


def simulate_household(config: HouseholdConfig, days: int, resolution_s: int | str = 60,
                       seed: int = 0, start: str | int | np.datetime64 = "2024-01-01") -> HouseholdTrace:
    """Simulate ``days`` whole UTC days of one household at ``resolution_s`` (1 s .. 30 min).

    Deterministic in (config, seed, start day): any day is identical however the run is cut.
    """
    res = parse_resolution(resolution_s)
    start_s = parse_start(start)
    if int(days) != days or days < 1:
        raise SimulationError(f"days must be a positive whole number, got {days!r}")
    days = int(days)
    step = internal_step_s(res)
    k = res // step
    per_day_int, per_day_out = DAY_S // step, DAY_S // res
    names = appliance_names(config)
    n_out = days * per_day_out
    app = {n: (np.zeros(n_out, np.float32), np.zeros(n_out, np.float32), np.zeros(n_out, bool)) for n in names}
    temp = np.zeros(n_out, np.float32)
    imp = np.zeros(n_out, np.float64)
    exp_ = np.zeros(n_out, np.float64)
    p_true = np.zeros(n_out, np.float64)
    q_true = np.zeros(n_out, np.float64)
    carry = [config.initial_import_wh, config.initial_export_wh]
    hh = household_params(config, seed)
    chunk_days = max(1, _MAX_CHUNK_SAMPLES // per_day_int)
    for c0 in range(0, days, chunk_days):
        nd = min(chunk_days, days - c0)
        ctx = ChunkContext(config, seed, start_s + c0 * DAY_S, step, nd * per_day_int, hh)
        parts = _simulate_chunk(ctx)
        sl = slice(c0 * per_day_out, (c0 + nd) * per_day_out)
        net = np.zeros(ctx.n)
        net_q = np.zeros(ctx.n)
        for name, (p, q, on) in parts.items():
            net += p
            net_q += q
            app[name][0][sl] = _block_mean(p, k)
            app[name][1][sl] = _block_mean(q, k)
            app[name][2][sl] = on if k == 1 else on.reshape(-1, k).any(axis=1)
        p_true[sl], q_true[sl] = _block_mean(net, k), _block_mean(net_q, k)
        temp[sl] = _block_mean(ctx.temp_c, k)
        e_imp = np.cumsum(np.clip(net, 0, None)) * (step / 3600) + carry[0]
        e_exp = np.cumsum(np.clip(-net, 0, None)) * (step / 3600) + carry[1]
        imp[sl], exp_[sl] = e_imp[k - 1 :: k], e_exp[k - 1 :: k]
        carry = [e_imp[-1], e_exp[-1]]
    ts = start_s + res * np.arange(n_out, dtype=np.int64)
    power, reactive = _meter(config, seed, ts, p_true, q_true, res)
    local_days = (ts + config.clock_offsets_s(ts)) // DAY_S
    uniq, inv = np.unique(local_days, return_inverse=True)
    is_hol = np.array([wx.is_holiday_day(int(d)) for d in uniq])[inv]
    return HouseholdTrace(
        household_id=config.household_id, ts_s=ts, power_w=power, reactive_var=reactive,
        import_wh=imp, export_wh=exp_,
        appliances={n: ApplianceTrace(*v) for n, v in app.items()},
        temperature_c=temp, is_holiday=is_hol, resolution_s=res, utc_offset_h=config.utc_offset_h,
        tz=config.tz,
    )


def _meter(config: HouseholdConfig, seed: int, ts: np.ndarray, p: np.ndarray, q: np.ndarray,
           res: int) -> tuple[np.ndarray, np.ndarray]:
    """What the meter reports: interval mean + noise, quantised (noise drawn per UTC day)."""
    per_day = DAY_S // res
    noise = np.concatenate([wx.day_rng(seed, int(d), _STREAM_NOISE).standard_normal((2, per_day))
                            for d in ts[::per_day] // DAY_S], axis=1)
    sd = config.noise_w + config.noise_frac * np.abs(p)
    quantum = config.quantum_w
    power = np.round((p + sd * noise[0]) / quantum) * quantum
    reactive = np.round((q + sd * noise[1]) / quantum) * quantum
    return power.astype(np.float32), reactive.astype(np.float32)


def fleet_member(i: int, seed: int, climate: wx.Climate | None = None,
                 tz: str | None = None) -> tuple[HouseholdConfig, int]:
    """Config and trace seed of household ``i`` of the fleet ``seed`` (clock zone ``tz``)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(i), 0xF1EE7])
    config = HouseholdConfig.random(rng, household_id=f"h{i:05d}", weather_seed=int(seed), climate=climate)
    if tz is not None:
        config = replace(config, tz=tz)
    trace_seed = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(i)]).generate_state(1)[0])
    return config, trace_seed


def _simulate_member(args: tuple) -> HouseholdTrace:
    i, seed, days, resolution_s, start, climate, tz = args
    config, trace_seed = fleet_member(i, seed, climate, tz)
    return simulate_household(config, days, resolution_s, trace_seed, start)


def simulate_fleet(n_households: int, days: int, resolution_s: int | str = 60, seed: int = 0,
                   start: str | int | np.datetime64 = "2024-01-01", workers: int | None = 1,
                   climate: wx.Climate | None = None, tz: str | None = None) -> Iterator[HouseholdTrace]:
    """Traces of ``n_households`` diverse households (sharing the weather), in household order.

    ``workers`` > 1 (or None: all CPUs) simulates households in a process pool.
    """
    if n_households < 1:
        raise SimulationError(f"n_households must be >= 1, got {n_households}")
    parse_resolution(resolution_s)
    parse_start(start)
    jobs = [(i, seed, days, resolution_s, start, climate, tz) for i in range(n_households)]
    if workers == 1 or n_households == 1:
        for job in jobs:
            yield _simulate_member(job)
        return

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(processes=workers) as pool:
        yield from pool.imap(_simulate_member, jobs)
