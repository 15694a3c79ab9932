import json

import pytest

from firmware_bridge.reading import MbusChannel, PhaseValues, PowerFailure, Reading, ReadingFlag


def _full_reading() -> Reading:
    return Reading(
        "m1", 1.7e9, 1.7e9 + 0.5, 1200.0, reactive_var=-30.0, import_wh=5e6, export_wh=1e5,
        voltage_v=230.1, current_a=5.0, source="dsmr", flags=ReadingFlag.DST | ReadingFlag.PARTIAL,
        extra={"tariff": 2.0, "gas_m3": 12.5},
        phases=(PhaseValues(1000.0, 230.1, 5.0), PhaseValues(200.0, 231.0, 1.0, 12.0)),
        import_tariff_wh=(2e6, 3e6, None), export_tariff_wh=(1e5,),
        reactive_import_varh=120721.0, reactive_export_varh=697336.0, tariff=2,
        power_failures=4, long_power_failures=2,
        power_failure_log=(PowerFailure(1.69e9, 240.0),),
        mbus=(MbusChannel(2, "gas", 241.773, "m3", 1.69e9, 3, "G0002"),),
        warnings=("0-0:17.0.0: unit 'kVA' not expected",),
    )


def test_to_dict_is_json_and_round_trips_every_typed_group():
    r = _full_reading()
    data = json.loads(json.dumps(r.to_dict()))
    assert data["phases"][1] == {"power_w": 200.0, "voltage_v": 231.0, "current_a": 1.0,
                                 "reactive_var": 12.0}
    assert data["mbus"][0]["device_type"] == "gas" and data["flags"] == 66
    assert Reading.from_dict(data) == r


def test_from_dict_accepts_a_dict_without_the_typed_groups():
    old = {"meter_id": "m", "ts_s": 1.0, "received_s": 1.0, "power_w": 5.0, "flags": 1}
    r = Reading.from_dict(old)
    assert r.phases == () and r.mbus == () and r.tariff is None and r.flags == ReadingFlag.CLOCK_FALLBACK


def test_reading_needs_a_meter_id_and_finite_times():
    with pytest.raises(ValueError, match="meter_id"):
        Reading("", 1.0, 1.0, None)
    with pytest.raises(ValueError, match="ts_s"):
        Reading("m", float("nan"), 1.0, None)
