"""Modbus cases from tests/firmware_bridge/cases (and $UNIMETER_METER_CASES): each recorded poll
goes through the real decode path (``registers_to_values`` per register block, the Modbus
source's ``_to_reading``), then the agent's path to MQTT (reading guard, store, reading
messages); the published ``energy_kwh`` must be what ``expected.json`` says."""

from __future__ import annotations

import pytest

from firmware_bridge.modbus.registers import REGISTER_MAPS
from firmware_bridge.modbus.source import ModbusConfig, ModbusSource, registers_to_values
from tests.firmware_bridge.meter_cases import case_params, check_vendored, published_payloads

KNOWN_CASES = ("modbus-sdm630-energy-glitch",)
POLL_INTERVAL_S = 10.0
T0 = 1_750_000_000.0


def test_known_cases_are_vendored_unchanged():
    check_vendored("modbus", KNOWN_CASES)


def decode_polls(case) -> list:
    """Readings of every poll of ``polls.json``, decoded as the Modbus source decodes them."""
    polls = case.json("polls.json")
    model = polls.get("model", "sdm120")
    source = ModbusSource(ModbusConfig(port="/dev/null", model=model, unit_id=int(polls.get("unit_id", 1))),
                          meter_id="case")
    unit = source.config.units[0]
    readings = []
    for i, poll in enumerate(polls["polls"]):
        values: dict[str, float] = {}
        for address, words in poll.items():
            values.update(registers_to_values(REGISTER_MAPS[model], int(address, 16), list(words)))
        readings.append(source._to_reading(unit, values, T0 + i * POLL_INTERVAL_S))
    return readings


@pytest.mark.parametrize("case", case_params("modbus"))
def test_modbus_case_publishes_the_expected_energy(case, tmp_path):
    readings = decode_polls(case)
    payloads = published_payloads(readings, tmp_path / "store.db")
    assert len(payloads) == len(readings)  # every poll is stored and published, none dropped
    energy = [p.get("energy_kwh") for p in payloads]
    expected = case.expected
    if "published_energy_kwh" in expected:
        assert energy == pytest.approx(expected["published_energy_kwh"], abs=5e-4), case.expected["rule"]
    published = [e for e in energy if e is not None]
    assert published == sorted(published), f"energy_kwh decreased: {energy}"
    for p, r in zip(payloads, readings, strict=True):  # the other values are published undelayed
        assert p["power_w"] == pytest.approx(r.power_w, abs=1e-3)
