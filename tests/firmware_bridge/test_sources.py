"""build_source for every kind; the simulated kinds run end to end on the real code paths."""


import pytest

from firmware_bridge import ConfigError, ReadingFlag, build_source
from firmware_bridge.dsmr.source import DsmrSource
from firmware_bridge.modbus.source import ModbusSource
from firmware_bridge.sources import canonical_kind
from firmware_bridge.zigbee.source import ZigbeeSource
from tests.firmware_bridge._streams import take_readings as _take


def _power(ts_s: float) -> dict:
    return {"power_w": 640.0, "voltage_v": 230.0}




def test_real_kinds_map_options_to_their_config():
    dsmr = build_source("dsmr", port="/dev/ttyUSB0", version="4", meter_id="house",
                        backoff={"initial_s": 2.0, "max_s": 30.0})
    assert isinstance(dsmr, DsmrSource) and dsmr.config.version == "4"
    assert dsmr.meter_id == "house" and dsmr.backoff.initial_s == 2.0
    assert dsmr.config.serial_settings.describe() == "115200 7E1"
    modbus = build_source("modbus", port="/dev/ttyUSB1", model="sdm630", unit_id=3)
    assert isinstance(modbus, ModbusSource) and modbus.config.register_map.model == "sdm630"
    zigbee = build_source("zigbee", radio="ezsp", device_path="/dev/ttyACM0",
                          meters={"00:0D:6F:00:0A:BC:DE:01": "plug"})
    assert isinstance(zigbee, ZigbeeSource)
    assert zigbee.meter_id_for("00:0d:6f:00:0a:bc:de:01") == "plug"


@pytest.mark.parametrize("kind,options,match", [
    ("mbus", {}, "unknown source kind"),
    ("dsmr", {"port": "/dev/x", "baud": 9600}, "unknown options"),
    ("dsmr", {}, "port"),
    ("modbus", {"port": "/dev/x", "model": "sdm72"}, "sdm72"),
    ("virtual-dsmr", {}, "power_source"),
    ("virtual-dsmr", {"power_source": _power, "version": "9"}, "version"),
    ("dsmr", {"port": "/dev/x", "backoff": {"initial": 1}}, "backoff"),
])
def test_bad_options_give_clear_config_errors(kind, options, match):
    with pytest.raises(ConfigError, match=match):
        build_source(kind, **options)


@pytest.mark.parametrize("kind,options", [
    ("virtual-dsmr", {"interval_s": 0.05}),
    ("virtual_dsmr", {"interval_s": 0.05, "version": "2.2"}),
    ("virtual-modbus", {"poll_interval_s": 0.05, "model": "sdm630"}),
    ("virtual-zigbee", {"interval_s": 0.05}),
    ("virtual-modbus", {"interval_s": 0.05}),
    ("sim-dsmr", {"interval_s": 0.05}),  # the earlier name is an alias
])
async def test_virtual_kinds_deliver_flagged_readings(kind, options):
    source = build_source(kind, power_source=_power, meter_id="sim-house", **options)
    readings = await _take(source, 3)
    assert len(readings) == 3
    for r in readings:
        assert r.meter_id == "sim-house" and r.source == canonical_kind(kind)
        assert ReadingFlag.SIMULATED in r.flags
        assert r.power_w == pytest.approx(640.0, abs=10.0)  # DSMR 2.2 has 10 W resolution
    # the virtual meter was stopped with the stream: a second run starts it again
    again = await _take(source, 1)
    assert again[0].power_w == pytest.approx(640.0, abs=10.0)
