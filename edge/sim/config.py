"""A simulated household: what it owns and who lives there (:class:`HouseholdConfig`), and the
simulator's time inputs (resolution, start day, internal grid step)."""

from __future__ import annotations

import math
import zoneinfo
from dataclasses import dataclass, field, fields

import numpy as np

from edge.errors import SimulationError
from edge.sim import weather as wx
from edge.sim.specs import (
    ACTIVITY,
    APPLIANCE_SPECS,
    ARCHETYPES,
    HEATING_PF,
    SPECS_BY_NAME,
)

DAY_S = wx.DAY_S


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
