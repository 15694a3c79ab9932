"""Every DSMR real-meter case: feed ``telegram.bin`` as its README says, assert ``expected.json``.

The cases below are vendored in tests/firmware_bridge/cases (CI has nothing else); more cases of
the same kinds found through ``$UNIMETER_METER_CASES`` or ``../shared/cases/meters`` run too
(see tests/firmware_bridge/meter_cases.py).
"""

import math

import pytest

from firmware_bridge.dsmr.source import DsmrConfig, DsmrSource
from firmware_bridge.reading import Reading, ReadingFlag
from tests.firmware_bridge.meter_cases import MeterCase, case_params, check_vendored

KNOWN_DSMR_CASES = (
    "dsmr-cosem-hex-clock-empty-mbus",  # COSEM hex clock, four empty M-Bus channels, tariff "T1"
    "dsmr-dead-mbus-ch1-gas-on-ch2",  # 1970 placeholder on channel 1, gas on channel 2
    "dsmr-fluvius-invalid-gas-capture-time",  # gas capture time in month 25
    "dsmr-fluvius-peak-history",  # e-MUCS peak history (regression)
    "dsmr-smarty-limiter-kva",  # limiter in kVA, reactive energy
    "dsmr3-gas-next-line-ch2-nocrc",  # DSMR 3: gas value on the next line, no CRC (regression)
)
# Keys of expected.json that describe the case rather than a Reading field.
_META = {"source", "why", "rule", "dsmr_version", "received_s", "must_produce_reading",
         "flags_include", "flags_exclude"}
_TOLERANCE = {"rel": 1e-9, "abs": 1e-6}


def test_every_known_case_is_vendored_unchanged():
    check_vendored("dsmr", KNOWN_DSMR_CASES)


def _feed(case: MeterCase) -> tuple[list[Reading], DsmrSource]:
    """As each case README says: DsmrSource(DsmrConfig(port='-', version=...)).feed(data, received_s)."""
    expected = case.expected
    source = DsmrSource(DsmrConfig(port="-", version=str(expected["dsmr_version"])))
    return source.feed(case.bytes("telegram.bin"), float(expected["received_s"])), source


def _assert_value(name: str, actual, expected) -> None:
    if expected is None:
        assert actual is None, f"{name}: expected no value, got {actual!r}"
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        assert actual is not None and math.isfinite(float(actual)), f"{name}: got {actual!r}"
        assert float(actual) == pytest.approx(expected, **_TOLERANCE), name
    else:
        assert actual == expected, name


def assert_reading_matches(reading: Reading, expected: dict) -> None:
    """Each Reading field named in ``expected`` equals it; ``extra`` key by key (null = absent)."""
    for key, want in expected.items():
        if key in _META or key.endswith("_alternative"):
            continue
        if key == "extra":
            for extra_key, extra_want in want.items():
                _assert_value(f"extra[{extra_key!r}]", reading.extra.get(extra_key), extra_want)
            continue
        assert hasattr(reading, key), f"expected.json names {key!r}, which a Reading does not have"
        _assert_value(key, getattr(reading, key), want)
    for flag in expected.get("flags_include", ()):
        assert ReadingFlag[flag] in reading.flags, f"flag {flag} missing in {reading.flags!r}"
    for flag in expected.get("flags_exclude", ()):
        assert ReadingFlag[flag] not in reading.flags, f"flag {flag} set in {reading.flags!r}"


@pytest.mark.parametrize("case", case_params("dsmr"))
def test_case(case: MeterCase):
    readings, source = _feed(case)
    if not case.expected.get("must_produce_reading", True):
        assert readings == [] and source.stats.frames_corrupt == 1
        return
    assert len(readings) == 1, f"telegram dropped: {source.stats.last_error}"
    assert_reading_matches(readings[0], case.expected)
    # every object the reader had to drop is counted, and flagged on the reading
    assert source.stats.objects_dropped == len(readings[0].warnings)
    assert (ReadingFlag.PARTIAL in readings[0].flags) == bool(readings[0].warnings)


def test_the_cases_show_each_kind_of_fault_handled():
    """Beyond expected.json: what each known case stands for, on the typed Reading fields."""
    by_name = {c.name: c for c in [p.values[0] for p in case_params("dsmr")]}
    (cosem,), _ = _feed(by_name["dsmr-cosem-hex-clock-empty-mbus"])
    assert cosem.mbus == () and cosem.tariff == 1 and ReadingFlag.DST in cosem.flags
    (dead,), _ = _feed(by_name["dsmr-dead-mbus-ch1-gas-on-ch2"])
    assert [(c.channel, c.device_type) for c in dead.mbus] == [(2, "gas")]
    (fluvius,), source = _feed(by_name["dsmr-fluvius-invalid-gas-capture-time"])
    assert fluvius.mbus == () and ReadingFlag.PARTIAL in fluvius.flags
    assert "632525252525W" in fluvius.warnings[0] and source.stats.frames_partial == 1
    (smarty,), _ = _feed(by_name["dsmr-smarty-limiter-kva"])
    assert (smarty.reactive_import_varh, smarty.reactive_export_varh) == (120721.0, 697336.0)
