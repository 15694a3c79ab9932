"""Household simulator, live power source for virtual meters, and fault/attack injection (numpy only).

Modules: ``config`` (a household), ``trace`` (what a simulation returns), ``grid`` (one chunk's time
grid and segment painting), ``appliances`` (event-driven appliances), ``loads`` (heating, cooling,
EV, PV), ``household`` (the simulation and the fleet), ``weather``, ``specs`` (appliance tables),
``stream`` (live power source), ``inject`` (faults and attacks), ``plot``, ``cli``.
"""

from edge.sim.household import (
    ApplianceTrace,
    DailyProfiles,
    HouseholdConfig,
    HouseholdTrace,
    SimulationError,
    appliance_names,
    fleet_member,
    parse_resolution,
    simulate_fleet,
    simulate_household,
)
from edge.sim.specs import ALL_APPLIANCES, APPLIANCE_SPECS
from edge.sim.weather import Climate

__all__ = [
    "ALL_APPLIANCES",
    "APPLIANCE_SPECS",
    "ApplianceTrace",
    "Climate",
    "DailyProfiles",
    "HouseholdConfig",
    "HouseholdTrace",
    "SimulationError",
    "appliance_names",
    "fleet_member",
    "parse_resolution",
    "simulate_fleet",
    "simulate_household",
]
