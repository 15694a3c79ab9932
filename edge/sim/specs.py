"""Appliance specifications and behaviour profiles as data tables.

Numbers are typical European (230 V) household values from appliance data sheets and the
NILM literature (REDD/UK-DALE appliance statistics): rated active power, duration of one use,
uses per day and displacement power factor. ``pf`` is signed: positive is inductive (motors,
compressors: reactive power > 0), negative is capacitive (LED drivers and switched-mode supplies
with a front-end capacitor: reactive power < 0), 1.0 is resistive.

Appliance types follow the usual NILM taxonomy:

- Type 1, ON/OFF (``onoff``): kettle, toaster, microwave, lighting, TV, water heater.
- Type 2, multi-state finite cycles (``cycle``): washing machine, dishwasher, oven, tumble dryer.
- Type 3, continuously variable (``variable``): computer, heat pump (modulating).
- Type 4, always on (``always_on``): router, standby loads.
- Compressor cycles (``compressor``): fridge, freezer (thermostatic on/off with defrost).
- Weather-driven and special loads (``heating``, ``cooling``, ``ev``, ``pv``) are parameterised in
  :class:`edge.sim.household.HouseholdConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Phase:
    """One phase of a multi-state cycle: a fraction of the rated power for a duration.

    ``duty`` < 1 makes the phase thermostat-cycle (oven, dryer heater) with period ``period_s``.
    """

    duration_s: tuple[float, float]  # sampled uniformly per use
    power_frac: float  # of the appliance's rated power
    pf: float  # signed displacement power factor of this phase
    duty: float = 1.0
    period_s: float = 240.0


@dataclass(frozen=True)
class ApplianceSpec:
    name: str
    kind: str  # onoff | cycle | variable | always_on | compressor
    power_w: tuple[float, float]  # rated power range across households
    pf: float  # signed displacement power factor
    duration_s: tuple[float, float] = (60.0, 60.0)  # one use (onoff/variable)
    uses_per_day: tuple[float, float] = (0.0, 0.0)  # household means sampled from this range
    hours: str = "flat"  # key in HOUR_AFFINITY
    ownership: float = 1.0  # fraction of households owning one
    phases: tuple[Phase, ...] = ()  # cycle appliances
    multi_instance: bool = False  # several uses may overlap (lighting: several rooms)
    fluctuation: float = 0.0  # relative power fluctuation while on (motor load, screen content)
    fluctuation_s: float = 60.0  # its time scale


# Washing machine (40-60 degC programme): fill, heat, wash (drum tumbling), rinse, spin.
_WASHER = (
    Phase((120, 300), 0.05, 0.60),
    Phase((600, 1200), 1.0, 1.00),
    Phase((1200, 2400), 0.10, 0.55),
    Phase((600, 900), 0.07, 0.60),
    Phase((300, 600), 0.22, 0.70),
)
# Dishwasher (eco programme): prewash, heat, wash, heat rinse, drying.
_DISHWASHER = (
    Phase((300, 600), 0.03, 0.70),
    Phase((900, 1500), 1.0, 1.00),
    Phase((1200, 1800), 0.04, 0.70),
    Phase((600, 900), 1.0, 1.00),
    Phase((900, 1800), 0.01, 0.90),
)
# Oven: preheat at full power, then thermostat cycling while cooking.
_OVEN = (
    Phase((480, 900), 1.0, 1.00),
    Phase((1200, 3600), 1.0, 1.00, duty=0.4, period_s=300.0),
)
# Tumble dryer (vented): heater cycling with the drum motor, then cool-down tumbling.
_DRYER = (
    Phase((2400, 4200), 1.0, 0.98, duty=0.75, period_s=360.0),
    Phase((600, 900), 0.08, 0.65),
)

APPLIANCE_SPECS: tuple[ApplianceSpec, ...] = (
    ApplianceSpec("kettle", "onoff", (1800, 3000), 1.0, (90, 240), (2.0, 6.0), "drinks", 0.95,
                  fluctuation=0.02, fluctuation_s=30.0),
    ApplianceSpec("toaster", "onoff", (800, 1400), 1.0, (120, 300), (0.3, 1.2), "breakfast", 0.55),
    ApplianceSpec("microwave", "onoff", (900, 1500), 0.95, (60, 480), (0.5, 2.5), "meals", 0.8,
                  fluctuation=0.05, fluctuation_s=10.0),
    ApplianceSpec("lighting", "onoff", (20, 80), -0.90, (1800, 10800), (3.0, 8.0), "dark", 1.0,
                  multi_instance=True),
    ApplianceSpec("tv", "onoff", (60, 200), -0.95, (3600, 12600), (0.6, 2.0), "tv", 0.95,
                  fluctuation=0.15, fluctuation_s=20.0),
    ApplianceSpec("water_heater", "onoff", (2000, 3000), 1.0, (900, 2700), (0.8, 2.0), "wash", 0.25),
    ApplianceSpec("washing_machine", "cycle", (1800, 2400), 1.0, uses_per_day=(0.3, 1.1),
                  hours="daytime", ownership=0.85, phases=_WASHER, fluctuation=0.25, fluctuation_s=12.0),
    ApplianceSpec("dishwasher", "cycle", (1800, 2400), 1.0, uses_per_day=(0.3, 1.1),
                  hours="after_meals", ownership=0.5, phases=_DISHWASHER, fluctuation=0.05),
    ApplianceSpec("oven", "cycle", (2000, 3200), 1.0, uses_per_day=(0.2, 0.8),
                  hours="dinner", ownership=0.7, phases=_OVEN),
    ApplianceSpec("tumble_dryer", "cycle", (2000, 2800), 0.98, uses_per_day=(0.1, 0.5),
                  hours="daytime", ownership=0.4, phases=_DRYER, fluctuation=0.08, fluctuation_s=30.0),
    ApplianceSpec("computer", "variable", (60, 250), -0.92, (3600, 21600), (0.5, 1.5),
                  "office", 0.7),
    ApplianceSpec("router", "always_on", (6, 15), -0.60),
    ApplianceSpec("standby", "always_on", (8, 50), -0.50),
    ApplianceSpec("fridge", "compressor", (70, 150), 0.80, (600, 1200), ownership=0.98),
    ApplianceSpec("freezer", "compressor", (80, 160), 0.80, (900, 1500), ownership=0.4),
)
SPECS_BY_NAME = {s.name: s for s in APPLIANCE_SPECS}

# Weather-driven and special loads (names used in traces): displacement power factors.
HEATING_PF = {"resistive": 1.0, "heat_pump": 0.95}
COOLING_PF = 0.90
EV_PF = 0.99
PV_PF = 1.0

# Appliance names a trace can contain, in a fixed order (NILM targets index into this).
ALL_APPLIANCES: tuple[str, ...] = tuple(s.name for s in APPLIANCE_SPECS) + (
    "heating", "cooling", "ev", "pv",
)


def _hours(pairs: dict[int, float], base: float = 0.02) -> np.ndarray:
    out = np.full(24, base)
    for h, v in pairs.items():
        out[h] = v
    return out


# Relative preference of an appliance for each local hour (0..23), multiplied by occupancy
# activity. "dark" is handled specially: it is scaled by darkness (sun below the horizon).
HOUR_AFFINITY: dict[str, np.ndarray] = {
    "flat": np.ones(24),
    "drinks": _hours({6: 1.0, 7: 1.5, 8: 1.2, 9: 0.6, 10: 0.7, 11: 0.5, 12: 0.8, 13: 0.6, 14: 0.4,
                      15: 0.7, 16: 0.6, 17: 0.8, 18: 0.7, 19: 0.6, 20: 0.7, 21: 0.6, 22: 0.3}, 0.05),
    "breakfast": _hours({6: 0.8, 7: 1.5, 8: 1.3, 9: 0.8, 10: 0.4, 11: 0.1}),
    "meals": _hours({7: 0.4, 8: 0.4, 12: 1.2, 13: 0.8, 17: 0.8, 18: 1.4, 19: 1.0, 20: 0.5,
                     21: 0.3, 22: 0.2}),
    "dark": np.ones(24),
    "tv": _hours({7: 0.1, 8: 0.1, 12: 0.2, 13: 0.2, 16: 0.3, 17: 0.5, 18: 0.8, 19: 1.3, 20: 1.5,
                  21: 1.2, 22: 0.6}, 0.01),
    "wash": _hours({6: 1.2, 7: 1.5, 8: 0.8, 9: 0.3, 18: 0.4, 19: 0.6, 20: 0.8, 21: 0.7, 22: 0.3}),
    "daytime": _hours({8: 0.6, 9: 1.0, 10: 1.2, 11: 1.0, 12: 0.7, 13: 0.8, 14: 0.9, 15: 0.8,
                       16: 0.6, 17: 0.5, 18: 0.5, 19: 0.6, 20: 0.5, 21: 0.3}, 0.01),
    "after_meals": _hours({8: 0.3, 9: 0.3, 13: 0.4, 14: 0.3, 19: 0.8, 20: 1.3, 21: 1.3, 22: 0.8,
                           23: 0.3}, 0.01),
    "dinner": _hours({11: 0.3, 12: 0.4, 16: 0.4, 17: 1.2, 18: 1.5, 19: 0.8, 20: 0.2}, 0.005),
    "office": _hours({8: 0.6, 9: 1.0, 10: 1.0, 11: 0.9, 13: 0.8, 14: 0.9, 15: 0.8, 16: 0.6,
                      19: 0.8, 20: 1.0, 21: 0.8, 22: 0.4}, 0.03),
}

# Occupancy-driven activity (probability that someone is at home and awake) by local hour for a
# reference wake-up time of 07:00; household wake-up times shift these curves. "work" days are
# weekdays that are not public holidays; everything else uses "free".
_ACT_WORKER_WORK = [0.01, 0.01, 0.01, 0.01, 0.01, 0.03, 0.35, 0.85, 0.45, 0.10, 0.08, 0.08,
                    0.10, 0.08, 0.08, 0.10, 0.25, 0.60, 0.85, 0.90, 0.85, 0.70, 0.40, 0.10]
_ACT_FREE = [0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.05, 0.25, 0.60, 0.80, 0.75, 0.70,
             0.75, 0.65, 0.55, 0.55, 0.60, 0.75, 0.85, 0.90, 0.85, 0.75, 0.50, 0.15]
_ACT_HOME = [0.01, 0.01, 0.01, 0.01, 0.01, 0.02, 0.10, 0.55, 0.80, 0.75, 0.70, 0.70,
             0.80, 0.65, 0.60, 0.60, 0.65, 0.75, 0.85, 0.85, 0.75, 0.60, 0.35, 0.08]
_ACT_FAMILY_WORK = [0.01, 0.01, 0.01, 0.01, 0.01, 0.03, 0.45, 0.90, 0.50, 0.15, 0.12, 0.12,
                    0.15, 0.15, 0.20, 0.50, 0.70, 0.85, 0.90, 0.90, 0.80, 0.60, 0.30, 0.06]

ACTIVITY: dict[str, dict[str, np.ndarray]] = {
    "worker": {"work": np.array(_ACT_WORKER_WORK), "free": np.array(_ACT_FREE)},
    "home": {"work": np.array(_ACT_HOME), "free": np.array(_ACT_HOME) * 0.5 + np.array(_ACT_FREE) * 0.5},
    "family": {"work": np.array(_ACT_FAMILY_WORK), "free": np.array(_ACT_FREE)},
}
ARCHETYPES: tuple[str, ...] = tuple(ACTIVITY)

# Fixed-date public holidays (month, day) used by the calendar; Good Friday and Easter Monday are
# added from the Gregorian Easter date. A generic western-European set.
FIXED_HOLIDAYS: tuple[tuple[int, int], ...] = ((1, 1), (5, 1), (12, 25), (12, 26))
