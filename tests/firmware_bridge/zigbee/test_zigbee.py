"""ZigbeeSource on a real zigpy ControllerApplication whose radio is in-process (VirtualRadio).

ZCL frames go both ways through zigpy's own stack: Read Attributes / Configure Reporting requests
leave through ``send_packet`` and are answered by the virtual meter; its Report Attributes frames
enter through ``packet_received`` and reach us as ``attribute_report`` events.
"""

import asyncio
import contextlib
import importlib.util

import pytest

from firmware_bridge.errors import ConfigError, MissingDependencyError
from firmware_bridge.reading import ReadingFlag
from firmware_bridge.zigbee.clusters import (
    ELECTRICAL_MEASUREMENT_CLUSTER_ID,
    METERING_CLUSTER_ID,
    MeteringState,
)
from firmware_bridge.zigbee.radio import RADIO_LIBRARIES, load_application_class
from firmware_bridge.zigbee.source import ZigbeeConfig, ZigbeeSource
from firmware_bridge.zigbee.virtual_meter import VirtualZigbeeMeter
from tests.firmware_bridge._streams import take_readings as _take


def _power(ts_s: float) -> dict:
    return {"power_w": 1234.0, "voltage_v": 231.2, "current_a": 5.5, "import_wh": 5000.0,
            "export_wh": 12.0, "reactive_var": -50.0}




async def test_reports_become_scaled_readings_with_mapped_meter_id():
    async with VirtualZigbeeMeter(_power, report_interval_s=0.05) as meter:
        source = ZigbeeSource(ZigbeeConfig(radio="virtual", virtual_devices=[meter],
                                           meters={meter.ieee.upper(): "plug-1"}))
        readings = await _take(source, 3)
    r = readings[-1]
    assert r.meter_id == "plug-1" and r.source == "zigbee" and r.extra["ieee"] == meter.ieee
    assert r.power_w == pytest.approx(1234.0)
    assert r.import_wh == pytest.approx(5000.0) and r.export_wh == pytest.approx(12.0)
    assert r.voltage_v == pytest.approx(231.2) and r.current_a == pytest.approx(5.5)
    assert r.reactive_var == pytest.approx(-50.0)
    assert ReadingFlag.CLOCK_FALLBACK in r.flags
    # one Reading per report round, not one per attribute
    assert len(readings) == 3 and meter.reports_sent >= 3
    # reporting was configured over the air on both clusters
    assert (METERING_CLUSTER_ID, 0x0400) in meter.reporting_configured
    assert (ELECTRICAL_MEASUREMENT_CLUSTER_ID, 0x050B) in meter.reporting_configured
    assert meter.reporting_configured[(METERING_CLUSTER_ID, 0x0400)] == (1, 60)
    assert meter.bound_clusters == {METERING_CLUSTER_ID, ELECTRICAL_MEASUREMENT_CLUSTER_ID}
    assert source.configured[meter.ieee]["bind_0x0702"] == 0  # ZDO Status.SUCCESS
    assert source.app is None  # shut down when the stream closed


async def test_metering_only_device_uses_its_multiplier_and_divisor():
    meter = VirtualZigbeeMeter(_power, report_interval_s=0.05, electrical_measurement=False)
    # demand raw in W with divisor 1000 (kW): announce a different scale and check it is applied
    meter.scaling.update(multiplier=2, divisor=1000)
    source = ZigbeeSource(ZigbeeConfig(radio="virtual", virtual_devices=[meter]))
    async with meter:
        readings = await _take(source, 4)
    r = readings[-1]
    assert r.meter_id == meter.ieee  # unmapped devices are named by IEEE
    assert r.power_w == pytest.approx(2 * 1234.0)  # raw 1234 * 2 / 1000 kW
    assert r.import_wh == pytest.approx(2 * 5000.0)
    assert r.voltage_v is None and r.current_a is None


async def test_device_refusing_reporting_configuration_still_delivers():
    meter = VirtualZigbeeMeter(_power, report_interval_s=0.05, supports_reporting_config=False)
    source = ZigbeeSource(ZigbeeConfig(radio="virtual", virtual_devices=[meter]))
    readings = []
    async with meter, contextlib.aclosing(source.readings()) as stream, asyncio.timeout(15):
        async for reading in stream:  # reports may come before the set-up round trips finished
            readings.append(reading)
            if len(readings) >= 2 and meter.ieee in source.configured:
                break
    assert readings[-1].power_w == pytest.approx(1234.0)
    assert meter.reporting_configured == {}
    statuses = {k: v for k, v in source.configured[meter.ieee].items() if not k.startswith("bind")}
    assert statuses and all(s != 0 for s in statuses.values())  # none reported SUCCESS


async def test_only_listed_devices_are_read():
    listed = VirtualZigbeeMeter(_power, report_interval_s=0.05)
    other = VirtualZigbeeMeter(lambda ts: {"power_w": 7.0}, ieee="00:0d:6f:00:0a:bc:de:02",
                               nwk=0x1234, report_interval_s=0.05)
    source = ZigbeeSource(ZigbeeConfig(radio="virtual", virtual_devices=[listed, other],
                                       meters={listed.ieee: "main"}, only_listed=True))
    readings = await _take(source, 5)
    listed.detach()
    other.detach()
    assert {r.meter_id for r in readings} == {"main"}
    assert other.reports_sent >= 1  # the other device did talk, it was ignored


def test_metering_state_scaling_rules():
    state = MeteringState()
    state.update("instantaneous_demand", 250)
    state.update("multiplier", 1)
    state.update("divisor", 100)
    assert state.values()["power_w"] == pytest.approx(2500.0)  # 2.5 kW
    state.update("divisor", 0)  # unset divisor counts as 1
    assert state.values()["power_w"] == pytest.approx(250_000.0)
    state.update("unit_of_measure", 0x01)  # m3: a gas meter, not electricity
    assert state.values()["power_w"] is None


def test_a_single_phase_device_has_no_phases_and_its_active_power_is_the_total():
    state = MeteringState()
    for name, value in (("active_power", 1234), ("rms_voltage", 2301), ("ac_voltage_divisor", 10)):
        state.update(name, value)
    values = state.values()
    assert values["phases"] == () and values["power_w"] == 1234.0 and values["voltage_v"] == 230.1


def test_a_three_phase_device_reports_each_phase_and_their_sum():
    state = MeteringState()
    for name, value in (("active_power", 100), ("active_power_ph_b", 200), ("active_power_ph_c", -50),
                        ("rms_current", 2011), ("rms_current_ph_c", 74), ("ac_current_divisor", 10)):
        state.update(name, value)
    state.invalidate("rms_current_ph_b")  # sent as 0xFFFF: no value
    values = state.values()
    assert values["power_w"] == 250.0  # the sum over the phases, not phase A alone
    assert [p.power_w for p in values["phases"]] == [100.0, 200.0, -50.0]
    assert [p.current_a for p in values["phases"]] == [201.1, None, 7.4]
    state.invalidate("active_power_ph_b")
    assert state.values()["power_w"] is None  # nothing derived from a half-read group
    assert state.values()["phases"][0].power_w == 100.0


async def test_a_replayed_three_phase_device_over_zigpy_gives_all_phases():
    from firmware_bridge.zigbee.virtual_meter import ReplayZigbeeDevice
    from tests.firmware_bridge.zigbee.test_cases import replay

    em = {"0x0505": [33, 2362], "0x0508": [33, 49], "0x0905": [33, 2365], "0x0908": [33, 0xFFFF],
          "0x0A05": [33, 2361], "0x0A08": [33, 74], "0x050B": [41, 1130], "0x090B": [41, 0],
          "0x0A0B": [41, 1650]}
    device = ReplayZigbeeDevice.from_case({
        "clusters": [0x0B04], "read": {"0x0B04": {"0x0601": [33, 10], "0x0603": [33, 10]}},
        "reports": [{"0x0B04": [[a, t, v] for a, (t, v) in em.items()]}]})
    source = ZigbeeSource(ZigbeeConfig(radio="virtual", virtual_devices=[device],
                                       meters={device.ieee: "han"}))
    (reading,) = await replay(device, source)
    assert [p.voltage_v for p in reading.phases] == [236.2, 236.5, 236.1]
    assert [p.current_a for p in reading.phases] == [4.9, None, 7.4]  # 0xFFFF: the ZCL invalid uint16
    assert reading.power_w == 2780.0 and ReadingFlag.INVALID_VALUE in reading.flags
    assert reading.extra["invalid_attributes"] == "rms_current_ph_b"
    assert source.configured[device.ieee]["active_power_ph_c"] == 0  # reporting configured per phase


@pytest.mark.parametrize("radio", ["znp", "ezsp", "deconz"])
def test_radio_library_is_loaded_lazily_with_a_clear_error(radio):
    module_name, package = RADIO_LIBRARIES[radio]
    if importlib.util.find_spec(module_name.split(".")[0]) is None:
        with pytest.raises(MissingDependencyError, match=f"pip install {package}"):
            load_application_class(radio)
    else:
        assert load_application_class(radio).__name__ == "ControllerApplication"


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError):
        ZigbeeConfig(radio="xbee")
    with pytest.raises(ConfigError):
        ZigbeeConfig(radio="znp", virtual_devices=[object()])


async def test_radio_connection_loss_restarts_the_application():
    from firmware_bridge.source import BackoffConfig

    meter = VirtualZigbeeMeter(_power, report_interval_s=0.05)
    source = ZigbeeSource(ZigbeeConfig(radio="virtual", virtual_devices=[meter]),
                          backoff=BackoffConfig(initial_s=0.05, jitter=0.0))
    apps = []
    out = []
    async with contextlib.aclosing(source.readings()) as stream, asyncio.timeout(10):
        async for reading in stream:
            out.append(reading)
            if source.app not in apps:
                apps.append(source.app)
            if len(out) == 2:
                source.app.connection_lost(ConnectionError("USB stick unplugged"))
            if len(out) == 5:
                break
    assert len(apps) == 2  # a fresh ControllerApplication after the loss
    assert source.stats.disconnects == 1 and source.stats.reconnects == 1
    assert "USB stick unplugged" in source.stats.last_error
    assert out[-1].power_w == pytest.approx(1234.0)


async def test_virtual_zigbee_kind_reads_through_zigpy_and_detaches_on_close():
    from firmware_bridge.sources import build_source

    source = build_source("virtual-zigbee", meter_id="plug", power_source=_power, interval_s=0.05)
    readings = await _take(source, 2)
    await source.close()
    assert [r.meter_id for r in readings] == ["plug", "plug"]
    assert all(ReadingFlag.SIMULATED in r.flags for r in readings)
    assert {r.source for r in readings} == {"virtual-zigbee"}
    assert source.app is None and source.virtual_meter.app is None


async def test_power_is_estimated_from_counters_when_demand_is_never_reported():
    power_w = 360_000.0  # 100 Wh/s: ~20 Wh per report, so whole-Wh counters quantise by ~5 %

    meter = VirtualZigbeeMeter(lambda ts: {"power_w": power_w}, report_interval_s=0.2,
                               electrical_measurement=False,
                               silent_attributes=("instantaneous_demand",))
    source = ZigbeeSource(ZigbeeConfig(radio="virtual", virtual_devices=[meter]))
    async with meter:
        readings = await _take(source, 6)
    assert readings[0].power_w is None  # one counter value: nothing to difference yet
    estimated = [r for r in readings[1:] if r.power_w is not None]
    assert estimated and all(ReadingFlag.ESTIMATED in r.flags for r in estimated)
    mean_w = sum(r.power_w for r in estimated) / len(estimated)
    assert mean_w == pytest.approx(power_w, rel=0.25)
