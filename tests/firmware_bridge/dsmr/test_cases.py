"""Every DSMR real-meter case: feed ``telegram.bin`` as its README says, assert ``expected.json``.

The cases below are vendored in tests/firmware_bridge/cases (CI has nothing else); more cases of
the same kinds found through ``$UNIMETER_METER_CASES`` or ``../shared/cases/meters`` run too
(see tests/firmware_bridge/meter_cases.py).

A case is one telegram (``received_s`` a number, the Reading's fields at the top level of
``expected.json``) or a series (``received_s`` a list, one per telegram, and ``readings`` a list
of the same per telegram). Either may name what the agent publishes for the meter,
``published_<payload key>``: a list, one value per reading message (the reading guard runs first).
"""

import math

import pytest

from firmware_bridge.dsmr.source import DsmrConfig, DsmrSource
from firmware_bridge.reading import Reading, ReadingFlag
from tests.firmware_bridge.meter_cases import (
    PUBLISHED_PREFIX,
    MeterCase,
    assert_published,
    case_params,
    check_vendored,
    published_payloads,
    split_telegrams,
)

KNOWN_DSMR_CASES = (
    "dsmr-cosem-hex-clock-empty-mbus",  # COSEM hex clock, four empty M-Bus channels, tariff "T1"
    "dsmr-dead-mbus-ch1-gas-on-ch2",  # 1970 placeholder on channel 1, gas on channel 2
    "dsmr-fluvius-invalid-gas-capture-time",  # gas capture time in month 25
    "dsmr-fluvius-peak-history",  # e-MUCS peak history (regression)
    "dsmr-smarty-limiter-kva",  # limiter in kVA, reactive energy
    "dsmr-t210-gas-zero-capture",  # a series: one 0 m3 gas capture repeated in every telegram
    "dsmr3-gas-next-line-ch2-nocrc",  # DSMR 3: gas value on the next line, no CRC (regression)
    "dsmr22-gas-status-2c",  # DSMR 2.2: status byte '2C' in the gas line
    "dsmr-warmtelink-heat-gj-only",  # only an M-Bus heat meter in GJ, unpadded CRC
    "dsmr-clock-unset-gas-without-reading",  # meter clock 2000-01-01, gas channel without reading
    "dsmr-kaifa-stale-gas-channel-1",  # two gas meters, channel 1 stale since 2017
    "dsmr-fluvius-gas-ch1-water-ch2",  # e-MUCS gas 24.2.3 and water 24.2.1 told apart by type
)
# Keys of expected.json that describe the case rather than a Reading field.
_META = {"source", "why", "rule", "dsmr_version", "received_s", "must_produce_reading",
         "flags_include", "flags_exclude", "readings"}
_TOLERANCE = {"rel": 1e-9, "abs": 1e-6}


def test_every_known_case_is_vendored_unchanged():
    check_vendored("dsmr", KNOWN_DSMR_CASES)


def _feed(case: MeterCase) -> tuple[list[Reading], DsmrSource]:
    """As each case README says: DsmrSource(DsmrConfig(port='-', version=...)).feed(data, received_s),
    for a series each telegram with its own receive time."""
    expected = case.expected
    source = DsmrSource(DsmrConfig(port="-", version=str(expected["dsmr_version"])))
    data, received = case.bytes("telegram.bin"), expected["received_s"]
    if not isinstance(received, list):
        return source.feed(data, float(received)), source
    chunks = split_telegrams(data)
    assert len(chunks) == len(received), f"{len(chunks)} telegrams, {len(received)} receive times"
    return [r for chunk, t in zip(chunks, received, strict=True) for r in source.feed(chunk, float(t))], source


def _assert_value(name: str, actual, expected) -> None:
    if expected is None:
        assert actual is None, f"{name}: expected no value, got {actual!r}"
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        assert actual is not None and math.isfinite(float(actual)), f"{name}: got {actual!r}"
        assert float(actual) == pytest.approx(expected, **_TOLERANCE), name
    else:
        assert (list(actual) if isinstance(expected, list) else actual) == expected, name


def assert_reading_matches(reading: Reading, expected: dict) -> None:
    """Each Reading field named in ``expected`` equals it; ``extra`` key by key (null = absent)."""
    for key, want in expected.items():
        if key in _META or key.endswith("_alternative") or key.startswith(PUBLISHED_PREFIX):
            continue
        if key == "extra":
            for extra_key, extra_want in want.items():
                _assert_value(f"extra[{extra_key!r}]", reading.extra.get(extra_key), extra_want)
            continue
        if key == "mbus":  # the reported channels, in order, each field named
            assert len(reading.mbus) == len(want), f"mbus: {reading.mbus}"
            for channel, channel_want in zip(reading.mbus, want, strict=True):
                for name, value in channel_want.items():
                    _assert_value(f"mbus[{channel.channel}].{name}", getattr(channel, name), value)
            continue
        assert hasattr(reading, key), f"expected.json names {key!r}, which a Reading does not have"
        _assert_value(key, getattr(reading, key), want)
    for flag in expected.get("flags_include", ()):
        assert ReadingFlag[flag] in reading.flags, f"flag {flag} missing in {reading.flags!r}"
    for flag in expected.get("flags_exclude", ()):
        assert ReadingFlag[flag] not in reading.flags, f"flag {flag} set in {reading.flags!r}"


@pytest.mark.parametrize("case", case_params("dsmr"))
def test_case(case: MeterCase, tmp_path):
    readings, source = _feed(case)
    if not case.expected.get("must_produce_reading", True):
        assert readings == [] and source.stats.frames_corrupt == 1
        return
    wanted = case.expected.get("readings", [case.expected])
    assert len(readings) == len(wanted), f"telegram dropped: {source.stats.last_error}"
    for reading, want in zip(readings, wanted, strict=True):
        assert_reading_matches(reading, want)
        # every object the reader had to drop is flagged on the reading
        assert (ReadingFlag.PARTIAL in reading.flags) == bool(reading.warnings)
    assert source.stats.objects_dropped == sum(len(r.warnings) for r in readings)  # and counted
    if any(key.startswith(PUBLISHED_PREFIX) for key in case.expected):
        assert_published(case.expected, published_payloads(readings, tmp_path / "store.db"))


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
