"""The time grid of one simulated chunk (:class:`ChunkContext`: wall clock, temperature, who is home),
the household's stable random parameters, and constant-power segments painted onto the grid with
exact fractional coverage of the first and last bin."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge.sim import weather as wx
from edge.sim.config import DAY_S, HouseholdConfig
from edge.sim.specs import (
    ACTIVITY,
)

_STREAM_HOUSEHOLD = 0x4855
_STREAM_VACATION = 0x5641


@dataclass
class ChunkContext:
    """Per-chunk inputs shared by the appliance models."""

    cfg: HouseholdConfig
    seed: int
    t0_s: int
    step_s: int
    n: int
    hh: dict  # stable household-level random parameters
    ts: np.ndarray = field(init=False)  # float64 grid
    local: np.ndarray = field(init=False)  # wall-clock seconds (UTC + clock offset)
    local_day: np.ndarray = field(init=False)  # int64 local day ordinal per sample
    hour_idx: np.ndarray = field(init=False)  # int local hour per sample
    temp_c: np.ndarray = field(init=False)
    day0: int = field(init=False)  # first local day with activity rows
    activity: np.ndarray = field(init=False)  # [n_act_days, 24]
    event_day_arr: np.ndarray = field(init=False)  # local day ordinals of the activity rows
    _sun: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.ts = self.t0_s + self.step_s * np.arange(self.n, dtype=np.float64)
        self.local = local = self.ts + self.cfg.clock_offsets_s(self.ts)
        self.local_day = np.floor(local / DAY_S).astype(np.int64)
        self.hour_idx = ((local % DAY_S) // 3600).astype(np.int64)
        self.temp_c = wx.temperature_c(self.cfg.weather_seed, self.ts, self.cfg.climate, self.cfg.solar_offset_h)
        self.day0 = int(self.local_day[0]) - 2
        n_days = int(self.local_day[-1]) - self.day0 + 3
        self.activity = activity_rows(self.cfg, self.seed, np.arange(self.day0, self.day0 + n_days))
        self.event_day_arr = np.arange(self.day0, self.day0 + n_days)

    @property
    def event_days(self) -> range:
        return range(self.day0, self.day0 + len(self.activity))

    def act_at_grid(self) -> np.ndarray:
        return self.activity[self.local_day - self.day0, self.hour_idx]

    def day_start_utc(self, day: int | np.ndarray) -> float | np.ndarray:
        """UTC time of local midnight of local day(s) ``day`` (event times are placed from it)."""
        if not self.cfg.tz:
            return day * DAY_S - self.cfg.utc_offset_h * 3600
        d = np.asarray(day)
        return d * DAY_S - self.cfg.clock_offsets_s(d * DAY_S + 43200.0)

    @property
    def sun(self) -> np.ndarray:
        """sin(solar elevation) at the grid (computed once)."""
        if self._sun is None:
            self._sun = wx.solar_elevation_sin(self.ts, self.cfg.climate.latitude_deg, self.cfg.solar_offset_h)
        return self._sun


def is_work_day(day: int) -> bool:
    return wx.weekday_of_day(day) < 5 and not wx.is_holiday_day(day)


def _vacation_days(seed: int, year: int, n_days: int) -> frozenset[int]:
    """Day ordinals of this household's vacations in a year (one or two blocks)."""
    if n_days <= 0:
        return frozenset()
    rng = wx.day_rng(seed, year, _STREAM_VACATION)
    jan1 = int(np.datetime64(f"{year}-01-01", "D").astype(np.int64))
    blocks = [n_days] if n_days < 8 else [n_days // 2, n_days - n_days // 2]
    out: set[int] = set()
    for length in blocks:
        first = jan1 + int(rng.integers(0, 365 - length))
        out.update(range(first, first + length))
    return frozenset(out)


_VACATION_CACHE: dict[tuple[int, int, int], frozenset[int]] = {}


def activity_rows(cfg: HouseholdConfig, seed: int, days: np.ndarray) -> np.ndarray:
    """Probability of someone home and awake per local hour, [len(days), 24]."""
    hours = np.arange(24) + 0.5
    shift = cfg.wake_h - 7.0
    work = np.interp((hours - shift) % 24, hours, ACTIVITY[cfg.archetype]["work"], period=24)
    free = np.interp((hours - shift) % 24, hours, ACTIVITY[cfg.archetype]["free"], period=24)
    years = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    vacation = set()
    for year in np.unique(years):
        key = (seed, int(year), cfg.vacation_days)
        if key not in _VACATION_CACHE:
            _VACATION_CACHE[key] = _vacation_days(seed, int(year), cfg.vacation_days)
        vacation |= _VACATION_CACHE[key]
    is_work = np.array([is_work_day(int(d)) for d in days])
    away = np.isin(days, np.fromiter(vacation, np.int64, len(vacation)))
    rows = np.where(is_work[:, None], work[None, :], free[None, :])
    rows[away] = 0.0
    return rows


def household_params(cfg: HouseholdConfig, seed: int) -> dict:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _STREAM_HOUSEHOLD])
    return {
        "fridge_duty": float(rng.uniform(0.28, 0.42)),
        "freezer_duty": float(rng.uniform(0.30, 0.45)),
        "fridge_defrost": bool(rng.random() < 0.5),
        "heat_phase": float(rng.random()),
        "cool_phase": float(rng.random()),
        "cool_always": bool(rng.random() < 0.2),
    }


def stream_id(name: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) & 0xFFFF


def reactive_var(power_w: np.ndarray | float, pf: float) -> np.ndarray | float:
    if abs(pf) >= 1.0:
        return power_w * 0.0
    return power_w * math.tan(math.acos(abs(pf))) * math.copysign(1.0, pf)


@dataclass
class Segments:
    start_s: np.ndarray
    end_s: np.ndarray
    power_w: np.ndarray
    reactive_var: np.ndarray

    @classmethod
    def empty(cls) -> Segments:
        z = np.zeros(0)
        return cls(z, z, z, z)

    @classmethod
    def concat(cls, parts: list[Segments]) -> Segments:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("start_s", "end_s", "power_w", "reactive_var")))


def paint(ctx: ChunkContext, values: list[np.ndarray], start_s: np.ndarray, end_s: np.ndarray) -> list[np.ndarray]:
    """Mean of piecewise-constant signals per grid bin, exact for fractional bin coverage.

    Each segment [a, b) adds ``v`` at bin floor(a) weighted by (1 - frac(a)) and at the next bin
    by frac(a), and the opposite at b; a cumulative sum then gives the exact bin means.
    """
    a = np.clip((start_s - ctx.t0_s) / ctx.step_s, 0, ctx.n)
    b = np.clip((end_s - ctx.t0_s) / ctx.step_s, 0, ctx.n)
    keep = b > a
    a, b = a[keep], b[keep]
    ia, ib = np.floor(a).astype(np.int64), np.floor(b).astype(np.int64)
    fa, fb = a - ia, b - ib
    idx = np.concatenate([ia, ia + 1, ib, ib + 1])
    out = []
    for v in values:
        v = v[keep]
        w = np.concatenate([v * (1 - fa), v * fa, -v * (1 - fb), -v * fb])
        acc = np.cumsum(np.bincount(idx, weights=w, minlength=ctx.n + 2)[: ctx.n])
        acc[np.abs(acc) < 1e-9] = 0.0
        out.append(acc)
    return out


def paint_segments(ctx: ChunkContext, seg: Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, Q, on) at the grid. Q is painted separately only if the power factor varies."""
    if len(seg.power_w) == 0:
        z = np.zeros(ctx.n)
        return z, z.copy(), np.zeros(ctx.n, bool)
    ratio = seg.reactive_var / seg.power_w
    if np.all(seg.power_w > 0) and np.allclose(ratio, ratio[0], rtol=1e-12, atol=1e-12):
        (p,) = paint(ctx, [seg.power_w], seg.start_s, seg.end_s)
        return p, p * ratio[0], p > 1e-9
    p, q, cover = paint(ctx, [seg.power_w, seg.reactive_var, np.ones_like(seg.power_w)],
                         seg.start_s, seg.end_s)
    return p, q, cover > 1e-9


def drop_overlaps(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indices of events kept when an appliance can only run once at a time (sorted by start)."""
    order = np.argsort(starts, kind="stable")
    keep, last_end = [], -np.inf
    for i in order:
        if starts[i] >= last_end:
            keep.append(i)
            last_end = ends[i]
    return np.asarray(keep, dtype=np.int64)
