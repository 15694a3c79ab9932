"""Household simulator, live simulated meter source and fault/attack injection (numpy only)."""

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
