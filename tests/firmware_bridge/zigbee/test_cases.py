"""ZigBee cases from tests/firmware_bridge/cases (and $UNIMETER_METER_CASES), replayed on zigpy:
a ``ReplayZigbeeDevice`` on the virtual radio answers the scaling reads from ``read`` and sends
each recorded frame of ``reports.json`` as real Report Attributes frames; the real
``ZigbeeSource`` turns them into readings, and the agent's path (reading guard, store, reading
messages) into payloads. Readings and payloads must match ``expected.json``."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from firmware_bridge.reading import ReadingFlag
from firmware_bridge.zigbee.source import ZigbeeConfig, ZigbeeSource
from firmware_bridge.zigbee.virtual_meter import ReplayZigbeeDevice
from tests.firmware_bridge.meter_cases import (
    assert_published,
    case_params,
    check_vendored,
    published_payloads,
)

KNOWN_CASES = (
    "zigbee-summation-invalid-uint48",  # 0xFFFFFFFFFFFF summation: no value
    "zigbee-develco-emi-report",  # real report frame (regression)
    "zigbee-emizb132-three-phase-current-divisor",  # phases B/C; a wrong divisor withheld by the guard
    "zigbee-thirdreality-summation-divisor-3600000",  # a divisor beyond 1000 applied as stated
)


def test_known_cases_are_vendored_unchanged():
    check_vendored("zigbee", KNOWN_CASES)


async def replay(device: ReplayZigbeeDevice, source: ZigbeeSource, timeout_s: float = 10.0) -> list:
    """Send every recorded frame once the device is set up; the readings the source made of them."""
    out: list = []

    async def consume() -> None:
        async with contextlib.aclosing(source.readings()) as stream:
            async for reading in stream:
                out.append(reading)

    task = asyncio.create_task(consume())
    try:
        async with asyncio.timeout(timeout_s):
            while device.ieee not in source.configured:  # scaling read, reporting configured
                await asyncio.sleep(0.01)
            while True:
                before = len(out)
                if not device.send_next():
                    break
                for _ in range(20):  # a frame makes at most one reading; give it time to arrive
                    await asyncio.sleep(0.01)
                    if len(out) > before:
                        break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return out


def _assert_fields(reading, expected: dict) -> None:
    """Each field named in ``expected`` (``phases``: a list of per-phase dicts, L1 first)."""
    for name, want in expected.items():
        if name == "note":
            continue
        if name == "phases":
            assert len(reading.phases) == len(want), f"phases: {reading.phases}"
            for phase, phase_want in zip(reading.phases, want, strict=True):
                _assert_fields(phase, phase_want)
            continue
        got = getattr(reading, name)
        if want is None:
            assert got is None, f"{name}: expected no value, got {got!r} ({expected.get('note', '')})"
        else:
            assert got == pytest.approx(want, rel=1e-9), name


@pytest.mark.parametrize("case", case_params("zigbee"))
async def test_zigbee_case_readings_and_payloads(case, tmp_path):
    device = ReplayZigbeeDevice.from_case(case.json("reports.json"))
    source = ZigbeeSource(ZigbeeConfig(radio="virtual", virtual_devices=[device],
                                       meters={device.ieee: "case"}))
    readings = await replay(device, source)
    expected = case.expected["readings"]
    assert len(readings) == len(expected), [r.to_dict() for r in readings]
    for reading, want in zip(readings, expected, strict=True):
        _assert_fields(reading, want)
        if want.get("import_wh", 0.0) is None:
            assert ReadingFlag.INVALID_VALUE in reading.flags
    n_invalid = sum(1 for want in expected if want.get("import_wh", 0.0) is None)
    assert source.stats.invalid_values >= n_invalid  # counted, not silent
    payloads = published_payloads(readings, tmp_path / "store.db")
    assert len(payloads) == len(expected)
    for payload, want in zip(payloads, expected, strict=True):
        if want.get("import_wh", 0.0) is None:  # no energy value for that report
            assert payload.get("energy_kwh") is None and payload["import_wh"] is None
        elif "import_wh" in want:
            assert payload["energy_kwh"] == pytest.approx(want["import_wh"] / 1000.0, abs=1e-4)
        if "power_w" in want:
            assert payload["power_w"] == pytest.approx(want["power_w"], abs=1e-3)
    energy = [p["energy_kwh"] for p in payloads if p.get("energy_kwh") is not None]
    assert energy == sorted(energy)
    assert_published(case.expected, payloads)
    if "published_energy_kwh_max" in case.expected:
        assert max(energy) <= case.expected["published_energy_kwh_max"] + 1e-9
