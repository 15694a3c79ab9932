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

import math
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace

import numpy as np

from edge.errors import SimulationError
from edge.sim import weather as wx
from edge.sim.specs import (
    ACTIVITY,
    ALL_APPLIANCES,
    APPLIANCE_SPECS,
    ARCHETYPES,
    COOLING_PF,
    EV_PF,
    HEATING_PF,
    HOUR_AFFINITY,
    PV_PF,
    SPECS_BY_NAME,
    ApplianceSpec,
)

DAY_S = wx.DAY_S
_MAX_CHUNK_SAMPLES = 2_000_000
_STREAM_HOUSEHOLD = 0x4855
_STREAM_VACATION = 0x5641
_STREAM_NOISE = 0x4E53
_STREAM_EV = 0x4556
_HEAT_CAPACITY_J_PER_K = 15e6  # effective thermal mass of a house (typ. 10-30 MJ/K)
# Thermostat periods are not multiples of common sampling intervals, so cycling does not alias
# into a fixed pattern in 30-min means.
_HEAT_PERIOD_S, _HP_PERIOD_S, _COOL_PERIOD_S = 1117.0, 1777.0, 911.0


@dataclass
class HouseholdConfig:
    """One household: occupants, owned appliances with their rated powers, heating, PV, EV."""

    household_id: str = "h00000"
    archetype: str = "worker"  # worker | home | family (see specs.ACTIVITY)
    occupants: int = 2
    wake_h: float = 7.0  # shifts the activity curves
    activity_scale: float = 1.0  # multiplies uses per day
    appliances: dict[str, float] = field(default_factory=lambda: {
        s.name: float(np.mean(s.power_w)) for s in APPLIANCE_SPECS if s.ownership >= 0.5
    })  # owned appliance name -> rated power (W)
    uses_per_day: dict[str, float] = field(default_factory=dict)  # overrides spec midpoints
    heating: str = "none"  # none | resistive | heat_pump
    heating_power_w: float = 3000.0  # resistive capacity, or heat pump maximum electrical power
    heat_loss_w_per_k: float = 120.0
    comfort_c: float = 20.5
    setback_c: float = 16.5
    cooling_power_w: float = 0.0  # 0: no air conditioning
    cooling_setpoint_c: float = 24.0
    pv_kwp: float = 0.0
    ev_charger_w: float = 0.0  # 0: no EV
    ev_kwh_per_day: float = 8.0
    ev_timer: bool = False  # charges on a night timer instead of on arrival
    vacation_days: int = 14  # per year, nobody at home
    climate: wx.Climate = field(default_factory=wx.Climate)
    utc_offset_h: float = 0.0  # local (standard) time = UTC + offset, when tz is None
    tz: str | None = None  # IANA zone (e.g. "Europe/London"): behaviour follows the clock incl. DST
    weather_seed: int = 0  # households of one fleet share the weather
    noise_w: float = 2.0
    noise_frac: float = 0.005
    quantum_w: float = 1.0
    initial_import_wh: float = 0.0
    initial_export_wh: float = 0.0

    def __post_init__(self) -> None:
        if self.archetype not in ACTIVITY:
            raise SimulationError(f"unknown archetype {self.archetype!r}; known: {ARCHETYPES}")
        if self.heating not in ("none", *HEATING_PF):
            raise SimulationError(f"unknown heating {self.heating!r}")
        if self.tz is not None:
            try:
                zoneinfo.ZoneInfo(self.tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
                raise SimulationError(f"unknown time zone {self.tz!r}") from e
        unknown = set(self.appliances) - set(SPECS_BY_NAME)
        if unknown:
            raise SimulationError(f"unknown appliances {sorted(unknown)}; known: {sorted(SPECS_BY_NAME)}")

    @classmethod
    def random(cls, rng: np.random.Generator, household_id: str = "h00000",
               weather_seed: int = 0, climate: wx.Climate | None = None) -> HouseholdConfig:
        """A diverse random household (sizes, habits, heating, PV, EV) drawn from ``rng``."""
        archetype = str(rng.choice(ARCHETYPES, p=[0.45, 0.25, 0.30]))
        occupants = int(rng.integers(3, 6)) if archetype == "family" else int(rng.integers(1, 4))
        appliances = {}
        for s in APPLIANCE_SPECS:
            if rng.random() < s.ownership:
                appliances[s.name] = float(rng.uniform(*s.power_w))
        size = math.sqrt(occupants / 2)
        uses = {s.name: float(rng.uniform(*s.uses_per_day)) * size for s in APPLIANCE_SPECS}
        heating = str(rng.choice(["none", "resistive", "heat_pump"], p=[0.72, 0.13, 0.15]))
        ua = float(rng.uniform(70, 200)) * size
        return cls(
            household_id=household_id, archetype=archetype, occupants=occupants,
            wake_h=float(np.clip(rng.normal(7.5 if archetype == "home" else 6.8, 0.6), 5, 10)),
            activity_scale=float(rng.lognormal(0, 0.25)), appliances=appliances, uses_per_day=uses,
            heating=heating,
            heating_power_w=float(rng.uniform(3000, 7000) if heating == "resistive" else ua * 10),
            heat_loss_w_per_k=ua, comfort_c=float(rng.uniform(19, 22)),
            setback_c=float(rng.uniform(15, 18)),
            cooling_power_w=float(rng.uniform(900, 2500)) if rng.random() < 0.1 else 0.0,
            pv_kwp=float(rng.uniform(2, 8)) if rng.random() < 0.25 else 0.0,
            ev_charger_w=float(rng.choice([3700, 7400, 11000])) if rng.random() < 0.15 else 0.0,
            ev_kwh_per_day=float(rng.uniform(3, 10)), ev_timer=bool(rng.random() < 0.3),
            vacation_days=int(rng.integers(0, 22)), climate=climate or wx.Climate(),
            weather_seed=weather_seed, noise_w=float(rng.uniform(1, 4)),
            quantum_w=float(rng.choice([1.0, 1.0, 10.0])),
            initial_import_wh=float(rng.uniform(1e6, 3e7)), initial_export_wh=0.0,
        )

    @property
    def solar_offset_h(self) -> float:
        """Offset of local standard time, used for sun and weather (which ignore DST)."""
        return wx.standard_offset_h(self.tz) if self.tz else self.utc_offset_h

    def clock_offsets_s(self, ts_s: np.ndarray) -> np.ndarray:
        """Seconds from UTC to the household's wall clock at each timestamp."""
        return wx.clock_offsets_s(ts_s, self.utc_offset_h, self.tz)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["climate"] = {f.name: getattr(self.climate, f.name) for f in fields(self.climate)}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> HouseholdConfig:
        kw = dict(data)
        kw["climate"] = wx.Climate(**kw.get("climate", {}))
        return cls(**kw)


@dataclass
class ApplianceTrace:
    power_w: np.ndarray  # float32 mean active power per sample
    reactive_var: np.ndarray  # float32
    on: np.ndarray  # bool: on at any time during the sample


@dataclass
class DailyProfiles:
    """Daily 30-min mean powers of one household (the L=48 unit of seed 000)."""

    household_id: str
    dates: np.ndarray  # datetime64[D], local dates
    load_w: np.ndarray  # float32 [n_days, 48]
    temperature_c: np.ndarray  # float32 [n_days, 48]
    weekday: np.ndarray  # int8 [n_days], Monday=0
    is_holiday: np.ndarray  # bool [n_days]


@dataclass
class HouseholdTrace:
    household_id: str
    ts_s: np.ndarray  # int64 UTC epoch s, start of each sample interval
    power_w: np.ndarray  # float32 measured net active power (import positive)
    reactive_var: np.ndarray  # float32 measured reactive power
    import_wh: np.ndarray  # float64 counter at the END of each sample interval
    export_wh: np.ndarray  # float64
    appliances: dict[str, ApplianceTrace]
    temperature_c: np.ndarray  # float32 outdoor temperature
    is_holiday: np.ndarray  # bool per sample (local date is a public holiday)
    resolution_s: int
    utc_offset_h: float = 0.0
    tz: str | None = None

    def __len__(self) -> int:
        return len(self.ts_s)

    @property
    def weekday(self) -> np.ndarray:
        """Local weekday per sample, Monday=0."""
        local_day = (self.ts_s + wx.clock_offsets_s(self.ts_s, self.utc_offset_h, self.tz)) // DAY_S
        return ((local_day + 3) % 7).astype(np.int8)

    def true_power_w(self) -> np.ndarray:
        """Noise-free net active power: the sum of the appliance ground truth."""
        total = np.zeros(len(self), np.float64)
        for a in self.appliances.values():
            total += a.power_w
        return total

    def resample(self, resolution_s: int) -> HouseholdTrace:
        """Block means at a coarser resolution (a multiple of the current one)."""
        if resolution_s % self.resolution_s or resolution_s < self.resolution_s:
            raise SimulationError(
                f"can only resample {self.resolution_s} s to a multiple of it, not {resolution_s} s")
        k = resolution_s // self.resolution_s
        n = len(self) // k
        if n == 0:
            raise SimulationError(f"trace of {len(self)} samples is shorter than one {resolution_s} s bin")

        def mean(x: np.ndarray) -> np.ndarray:
            return x[: n * k].reshape(n, k).mean(axis=1, dtype=np.float64).astype(np.float32)

        apps = {name: ApplianceTrace(mean(a.power_w), mean(a.reactive_var),
                                     a.on[: n * k].reshape(n, k).any(axis=1))
                for name, a in self.appliances.items()}
        return HouseholdTrace(
            self.household_id, self.ts_s[: n * k : k].copy(), mean(self.power_w),
            mean(self.reactive_var), self.import_wh[k - 1 : n * k : k].copy(),
            self.export_wh[k - 1 : n * k : k].copy(), apps, mean(self.temperature_c),
            self.is_holiday[: n * k : k].copy(), resolution_s, self.utc_offset_h, self.tz)

    def to_profiles(self) -> DailyProfiles:
        """Daily 30-min mean power [n_days, 48] of the complete local days in the trace."""
        if self.resolution_s == 1800:
            half = self
        else:  # only the columns a profile needs, not every appliance
            light = HouseholdTrace(self.household_id, self.ts_s, self.power_w, self.reactive_var,
                                   self.import_wh, self.export_wh, {}, self.temperature_c,
                                   self.is_holiday, self.resolution_s, self.utc_offset_h, self.tz)
            half = light.resample(1800)
        local = half.ts_s + wx.clock_offsets_s(half.ts_s, self.utc_offset_h, self.tz)
        slot = local // 1800
        d0, d1 = int(-(-slot.min() // 48)), int((slot.max() + 1) // 48)  # complete local days
        n_days = max(d1 - d0, 0)
        idx = slot - d0 * 48
        ok = (idx >= 0) & (idx < n_days * 48)
        return DailyProfiles(
            household_id=self.household_id,
            dates=np.arange(d0, d0 + n_days).astype("datetime64[D]"),
            load_w=_slot_means(idx[ok], half.power_w[ok], n_days),
            temperature_c=_slot_means(idx[ok], half.temperature_c[ok], n_days),
            weekday=((np.arange(d0, d0 + n_days) + 3) % 7).astype(np.int8),
            is_holiday=np.array([wx.is_holiday_day(d) for d in range(d0, d0 + n_days)], bool),
        )


def _slot_means(idx: np.ndarray, values: np.ndarray, n_days: int) -> np.ndarray:
    """[n_days, 48] means of the samples in each local half-hour.

    Only the clock changes make a slot empty (the hour skipped in spring, interpolated) or
    doubled (the hour repeated in autumn, averaged).
    """
    total = np.bincount(idx, weights=values, minlength=n_days * 48)
    count = np.bincount(idx, minlength=n_days * 48)
    out = (total / np.maximum(count, 1)).reshape(n_days, 48)
    empty = (count == 0).reshape(n_days, 48)
    for d in np.flatnonzero(empty.any(axis=1)):
        have = ~empty[d]
        out[d, empty[d]] = np.interp(np.flatnonzero(empty[d]), np.flatnonzero(have), out[d, have])
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Time grid and inputs


def parse_resolution(value: str | int | float) -> int:
    """'1s', '10s', '1min', '15min', '30min', '1h' or seconds -> seconds (must divide a day)."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower()
        units = (("min", 60), ("ms", None), ("s", 1), ("h", 3600))
        for suffix, mult in units:
            if text.endswith(suffix):
                if mult is None:
                    raise SimulationError(f"resolution {value!r}: sub-second resolution is not supported")
                try:
                    seconds = float(text[: -len(suffix)]) * mult
                except ValueError as e:
                    raise SimulationError(f"cannot parse resolution {value!r}") from e
                break
        else:
            try:
                seconds = float(text)
            except ValueError as e:
                raise SimulationError(f"cannot parse resolution {value!r} (use e.g. 1s, 1min, 30min)") from e
    if seconds < 1 or seconds != int(seconds) or DAY_S % int(seconds):
        raise SimulationError(f"resolution {value!r} must be a whole number of seconds dividing 86400")
    return int(seconds)


def parse_start(start: str | int | float | np.datetime64) -> int:
    """A date/time (string, datetime64 or epoch seconds) -> UTC epoch seconds at a UTC midnight."""
    try:
        start_s = int(start) if isinstance(start, (int, float)) else int(
            np.datetime64(start, "s").astype(np.int64))
    except ValueError as e:
        raise SimulationError(f"cannot parse start {start!r} (use e.g. 2024-01-01)") from e
    if start_s % DAY_S:
        raise SimulationError(f"start {start!r} must be a UTC midnight")
    return start_s


def internal_step_s(resolution_s: int) -> int:
    return resolution_s if resolution_s <= 60 else math.gcd(resolution_s, 60)


@dataclass
class _Ctx:
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
        self.activity = _activity_rows(self.cfg, self.seed, np.arange(self.day0, self.day0 + n_days))
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


def _activity_rows(cfg: HouseholdConfig, seed: int, days: np.ndarray) -> np.ndarray:
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


def _household_params(cfg: HouseholdConfig, seed: int) -> dict:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _STREAM_HOUSEHOLD])
    return {
        "fridge_duty": float(rng.uniform(0.28, 0.42)),
        "freezer_duty": float(rng.uniform(0.30, 0.45)),
        "fridge_defrost": bool(rng.random() < 0.5),
        "heat_phase": float(rng.random()),
        "cool_phase": float(rng.random()),
        "cool_always": bool(rng.random() < 0.2),
    }


def _stream_id(name: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) & 0xFFFF


def _reactive(power_w: np.ndarray | float, pf: float) -> np.ndarray | float:
    if abs(pf) >= 1.0:
        return power_w * 0.0
    return power_w * math.tan(math.acos(abs(pf))) * math.copysign(1.0, pf)


# ---------------------------------------------------------------------------------------------
# Segments -> grid


@dataclass
class _Segments:
    start_s: np.ndarray
    end_s: np.ndarray
    power_w: np.ndarray
    reactive_var: np.ndarray

    @classmethod
    def empty(cls) -> _Segments:
        z = np.zeros(0)
        return cls(z, z, z, z)

    @classmethod
    def concat(cls, parts: list[_Segments]) -> _Segments:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("start_s", "end_s", "power_w", "reactive_var")))


def _paint(ctx: _Ctx, values: list[np.ndarray], start_s: np.ndarray, end_s: np.ndarray) -> list[np.ndarray]:
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


def _paint_segments(ctx: _Ctx, seg: _Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, Q, on) at the grid. Q is painted separately only if the power factor varies."""
    if len(seg.power_w) == 0:
        z = np.zeros(ctx.n)
        return z, z.copy(), np.zeros(ctx.n, bool)
    ratio = seg.reactive_var / seg.power_w
    if np.all(seg.power_w > 0) and np.allclose(ratio, ratio[0], rtol=1e-12, atol=1e-12):
        (p,) = _paint(ctx, [seg.power_w], seg.start_s, seg.end_s)
        return p, p * ratio[0], p > 1e-9
    p, q, cover = _paint(ctx, [seg.power_w, seg.reactive_var, np.ones_like(seg.power_w)],
                         seg.start_s, seg.end_s)
    return p, q, cover > 1e-9


def _drop_overlaps(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indices of events kept when an appliance can only run once at a time (sorted by start)."""
    order = np.argsort(starts, kind="stable")
    keep, last_end = [], -np.inf
    for i in order:
        if starts[i] >= last_end:
            keep.append(i)
            last_end = ends[i]
    return np.asarray(keep, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Event-driven appliances (Type 1, 2, 3)


def _hour_weights(ctx: _Ctx, spec: ApplianceSpec) -> np.ndarray:
    """[event days, 24] relative start probability per local hour."""
    if spec.hours == "dark":
        hours_utc = ctx.day_start_utc(ctx.event_day_arr)[:, None] + 3600 * (np.arange(24) + 0.5)[None, :]
        s = wx.solar_elevation_sin(hours_utc, ctx.cfg.climate.latitude_deg, ctx.cfg.solar_offset_h)
        return ctx.activity * np.clip(0.6 - s / 0.25, 0.05, 1.0)
    return ctx.activity * HOUR_AFFINITY[spec.hours][None, :]


def _reference_weight(ctx: _Ctx, spec: ApplianceSpec) -> float:
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


def _sample_starts(ctx: _Ctx, spec: ApplianceSpec, stream: int) -> np.ndarray:
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


def _onoff_segments(ctx: _Ctx, spec: ApplianceSpec, rated_w: float) -> _Segments:
    stream = _stream_id(spec.name)
    starts = _sample_starts(ctx, spec, stream)
    # Durations are derived from each start time, so they do not depend on the chunking.
    u = _hash_uniform(starts, stream)
    dur = spec.duration_s[0] + u * (spec.duration_s[1] - spec.duration_s[0])
    ends = starts + dur
    power = np.full(len(starts), rated_w)
    if spec.multi_instance:  # each lamp/room its own power
        power = rated_w * (0.5 + _hash_uniform(starts, stream + 7))
    else:
        keep = _drop_overlaps(starts, ends)
        starts, ends, power = starts[keep], ends[keep], power[keep]
    return _Segments(starts, ends, power, _reactive(power, spec.pf))


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


def _cycle_segments(ctx: _Ctx, spec: ApplianceSpec, rated_w: float) -> _Segments:
    """Multi-state runs: consecutive phases; thermostat phases split into on-periods."""
    stream = _stream_id(spec.name)
    starts = _sample_starts(ctx, spec, stream)
    if len(starts) == 0:
        return _Segments.empty()
    durs = np.stack([ph.duration_s[0] + _hash_uniform(starts, stream + 31 * k + 1)
                     * (ph.duration_s[1] - ph.duration_s[0]) for k, ph in enumerate(spec.phases)], axis=1)
    offsets = np.concatenate([np.zeros((len(starts), 1)), np.cumsum(durs, axis=1)], axis=1)
    keep = _drop_overlaps(starts, starts + offsets[:, -1])
    starts, durs, offsets = starts[keep], durs[keep], offsets[keep]
    parts = []
    for k, ph in enumerate(spec.phases):
        t0, dur = starts + offsets[:, k], durs[:, k]
        p = rated_w * ph.power_frac
        q = float(_reactive(p, ph.pf))
        if ph.duty >= 1.0:
            a, b = t0, t0 + dur
        else:  # on for duty * period at the start of every period of the phase
            n_per = np.ceil(dur / ph.period_s).astype(np.int64)
            ev = np.repeat(np.arange(len(t0)), n_per)
            c = np.arange(n_per.sum()) - np.repeat(np.cumsum(n_per) - n_per, n_per)
            a = t0[ev] + c * ph.period_s
            b = np.minimum(a + ph.duty * ph.period_s, (t0 + dur)[ev])
        parts.append(_Segments(a, b, np.full(len(a), p), np.full(len(a), q)))
    return _Segments.concat(parts)


def _knot_noise(ctx: _Ctx, stream: int, knot_s: int) -> np.ndarray:
    """Smooth noise in [0, 1) at the grid: keyed random knots every ``knot_s``, interpolated."""
    d0 = int(ctx.t0_s // DAY_S)
    d1 = int((ctx.t0_s + ctx.n * ctx.step_s) // DAY_S) + 1
    per_day = DAY_S // knot_s
    days = np.arange(d0, d1 + 1)
    knots = wx.hash_uniform(ctx.seed, days[:, None], stream, np.arange(per_day)[None, :]).reshape(-1)
    knot_ts = d0 * DAY_S + knot_s * np.arange(len(knots), dtype=np.float64)
    return np.interp(ctx.ts, knot_ts, knots)


def _variable(ctx: _Ctx, spec: ApplianceSpec, rated_w: float) -> tuple[np.ndarray, ...]:
    """Type 3: sessions (on/off) whose power varies continuously within a session."""
    seg = _onoff_segments(ctx, spec, 1.0)
    _, _, cover = _paint(ctx, [seg.power_w, seg.reactive_var, np.ones_like(seg.power_w)],
                         seg.start_s, seg.end_s)
    level = 0.35 + 0.65 * _knot_noise(ctx, _stream_id(spec.name) + 3, 120)
    p = rated_w * np.clip(cover, 0, 1) * level
    return p, _reactive(p, spec.pf), cover > 1e-9


def _always_on(ctx: _Ctx, spec: ApplianceSpec, rated_w: float) -> tuple[np.ndarray, ...]:
    wobble = 0.97 + 0.06 * _knot_noise(ctx, _stream_id(spec.name) + 3, 900)
    p = rated_w * wobble
    return p, _reactive(p, spec.pf), np.ones(ctx.n, bool)


def _activity_at(ctx: _Ctx, t_s: np.ndarray) -> np.ndarray:
    local = t_s + ctx.cfg.clock_offsets_s(t_s)
    row = np.floor(local / DAY_S).astype(np.int64) - ctx.day0
    hour = ((local % DAY_S) // 3600).astype(np.int64)
    ok = (row >= 0) & (row < len(ctx.activity))
    out = np.full(len(t_s), 0.3)
    out[ok] = ctx.activity[row[ok], hour[ok]]
    return out


def _compressor_segments(ctx: _Ctx, spec: ApplianceSpec, rated_w: float) -> _Segments:
    """Thermostatic compressor cycles; warmer kitchens and door openings raise the duty cycle.

    Cycles are generated per UTC day (clipped at midnight) so a day is chunk-independent.
    """
    stream = _stream_id(spec.name)
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
    q = float(_reactive(rated_w, spec.pf))
    parts = [_Segments(t, np.minimum(t + on, end_day), np.full(len(t), rated_w), np.full(len(t), q))]
    if ctx.step_s <= 5:  # inrush at compressor start, visible at 1-5 s resolution
        parts.append(_Segments(t, t + 1.5, np.full(len(t), 3.0 * rated_w),
                               np.full(len(t), float(_reactive(3.0 * rated_w, 0.6)))))
    if spec.name == "fridge" and ctx.hh["fridge_defrost"]:  # daily defrost heater
        t_def = days * DAY_S + DAY_S * wx.hash_uniform(ctx.seed, days, stream + 3)
        parts.append(_Segments(t_def, np.minimum(t_def + 1500, (days + 1) * DAY_S),
                               np.full(len(days), 220.0), np.zeros(len(days))))
    return _Segments.concat(parts)


# ---------------------------------------------------------------------------------------------
# Weather-driven and special loads


def _pwm(ctx: _Ctx, duty: np.ndarray, period_s: float, phase: float) -> np.ndarray:
    """Thermostat on/off: on for the first ``duty`` fraction of every period."""
    return ((ctx.ts / period_s + phase) % 1.0) < duty


def _comfort_timing(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _heating(ctx: _Ctx) -> tuple[np.ndarray, ...]:
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
    return p, _reactive(p, HEATING_PF[cfg.heating]), p > 0


def _cooling(ctx: _Ctx) -> tuple[np.ndarray, ...]:
    cfg = ctx.cfg
    act = ctx.act_at_grid()
    sun = np.clip(ctx.sun, 0, None)
    load_w = cfg.heat_loss_w_per_k * (ctx.temp_c - cfg.cooling_setpoint_c) + 400.0 * sun
    wanted = (act > 0.15) | ctx.hh["cool_always"]
    duty = np.where(wanted, np.clip(load_w / 3.0 / cfg.cooling_power_w, 0, 1), 0.0)
    p = cfg.cooling_power_w * _pwm(ctx, duty, _COOL_PERIOD_S, ctx.hh["cool_phase"]).astype(np.float64)
    return p, _reactive(p, COOLING_PF), p > 0


def _ev_segments(ctx: _Ctx) -> _Segments:
    """Charging sessions: constant power, then a three-step taper (constant-voltage phase)."""
    cfg = ctx.cfg
    p_charge = float(np.clip(cfg.ev_kwh_per_day / 12.0, 0.2, 0.9))
    days = ctx.event_day_arr
    u = wx.hash_uniform(ctx.seed, days[:, None], _STREAM_EV, np.arange(4)[None, :])
    home = ctx.activity.sum(axis=1) > 0
    charge = home & (u[:, 0] <= p_charge)
    if not charge.any():
        return _Segments.empty()
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
        parts.append(_Segments(t.copy(), t + dur, np.full(len(t), pw), np.full(len(t), float(_reactive(pw, EV_PF)))))
        t = t + dur
    return _Segments.concat(parts)


def _pv(ctx: _Ctx) -> tuple[np.ndarray, ...]:
    """PV export (negative power): clear-sky irradiance (Meinel air-mass model) x cloud factor."""
    cfg = ctx.cfg
    s = ctx.sun
    up = s > 0.01
    irr = np.zeros(ctx.n)
    irr[up] = s[up] * 0.7 ** (s[up] ** -0.678) / 0.7
    cloud = wx.cloud_factor(cfg.weather_seed, ctx.ts, cfg.climate)
    p = -cfg.pv_kwp * 1000.0 * 0.8 * irr * cloud
    return p, _reactive(p, PV_PF), p < -0.5


# ---------------------------------------------------------------------------------------------
# Household simulation


def appliance_names(config: HouseholdConfig) -> list[str]:
    """The appliances a trace of this household contains, in ALL_APPLIANCES order."""
    extra = {
        "heating": config.heating != "none", "cooling": config.cooling_power_w > 0,
        "ev": config.ev_charger_w > 0, "pv": config.pv_kwp > 0,
    }
    return [n for n in ALL_APPLIANCES if n in config.appliances or extra.get(n, False)]


def _fluctuate(ctx: _Ctx, spec: ApplianceSpec, p: np.ndarray, q: np.ndarray,
               on: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth relative power fluctuation while on (drum motor, screen content), power factor kept."""
    if spec.fluctuation <= 0 or not on.any():
        return p, q, on
    knot_s = max(float(spec.fluctuation_s), 1.0)
    pos = ctx.ts[on] / knot_s  # only where the appliance is on: cost follows its duty cycle
    k = np.floor(pos).astype(np.int64)
    stream = _stream_id(spec.name) + 5
    u0, u1 = wx.hash_uniform(ctx.seed, k, stream), wx.hash_uniform(ctx.seed, k + 1, stream)
    noise = u0 + (u1 - u0) * (pos - k)  # keyed by absolute knot index: chunk-independent
    factor = 1.0 + spec.fluctuation * (2.0 * noise - 1.0)
    p, q = p.copy(), q.copy()
    p[on] *= factor
    q[on] *= factor
    return p, q, on


def _simulate_chunk(ctx: _Ctx) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = {}
    for name in appliance_names(ctx.cfg):
        spec = SPECS_BY_NAME.get(name)
        if spec is None:
            if name in ("heating", "cooling", "pv"):
                out[name] = {"heating": _heating, "cooling": _cooling, "pv": _pv}[name](ctx)
            else:
                out[name] = _paint_segments(ctx, _ev_segments(ctx))
            continue
        rated = ctx.cfg.appliances[name]
        if spec.kind == "onoff":
            out[name] = _fluctuate(ctx, spec, *_paint_segments(ctx, _onoff_segments(ctx, spec, rated)))
        elif spec.kind == "cycle":
            out[name] = _fluctuate(ctx, spec, *_paint_segments(ctx, _cycle_segments(ctx, spec, rated)))
        elif spec.kind == "compressor":
            out[name] = _paint_segments(ctx, _compressor_segments(ctx, spec, rated))
        elif spec.kind == "variable":
            out[name] = _variable(ctx, spec, rated)
        else:
            out[name] = _always_on(ctx, spec, rated)
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
    hh = _household_params(config, seed)
    chunk_days = max(1, _MAX_CHUNK_SAMPLES // per_day_int)
    for c0 in range(0, days, chunk_days):
        nd = min(chunk_days, days - c0)
        ctx = _Ctx(config, seed, start_s + c0 * DAY_S, step, nd * per_day_int, hh)
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
    import multiprocessing as mp

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(processes=workers) as pool:
        yield from pool.imap(_simulate_member, jobs)
