"""The case loader: vendored cases, $UNIMETER_METER_CASES and the shared collection beside the repo."""

from __future__ import annotations

import shutil

from tests.firmware_bridge import meter_cases
from tests.firmware_bridge.meter_cases import ENV_VAR, VENDORED_DIR, case_kind, find_cases


def test_vendored_cases_have_a_kind_each():
    kinds = {p.name: case_kind(p) for p in VENDORED_DIR.iterdir() if p.is_dir()}
    assert kinds and all(kinds.values()), kinds
    assert kinds["modbus-sdm630-energy-glitch"] == "modbus"
    assert kinds["zigbee-summation-invalid-uint48"] == "zigbee"


def test_more_cases_come_from_the_environment(tmp_path, monkeypatch):
    collection = tmp_path / "more"
    shutil.copytree(VENDORED_DIR / "modbus-sdm630-energy-glitch", collection / "modbus-other-meter")
    single = tmp_path / "one-zigbee-case"
    shutil.copytree(VENDORED_DIR / "zigbee-develco-emi-report", single)
    (tmp_path / "not-a-case").mkdir()
    monkeypatch.setenv(ENV_VAR, f"{collection}:{single}:{tmp_path / 'not-a-case'}")
    monkeypatch.setattr(meter_cases, "SHARED_DIR", tmp_path / "absent")
    names = {c.name: c for c in find_cases()}
    assert names["modbus-other-meter"].kind == "modbus"
    assert names["one-zigbee-case"].kind == "zigbee"
    assert names["modbus-other-meter"].expected["published_energy_kwh"][2] is None
    assert names["modbus-sdm630-energy-glitch"].path.parent == VENDORED_DIR  # vendored first
    assert [c.name for c in find_cases("modbus")] == ["modbus-sdm630-energy-glitch", "modbus-other-meter"]
