"""DsmrSource on a real pyserial port: the slave side of a pty, fed by the virtual meter."""

import asyncio
import time

import pytest

from firmware_bridge.dsmr.source import DsmrConfig, DsmrSource
from firmware_bridge.dsmr.virtual_meter import VirtualDsmrMeter
from firmware_bridge.errors import ConfigError, TransientConnectionError
from firmware_bridge.reading import ReadingFlag
from firmware_bridge.serial_port import DSMR_SERIAL_SETTINGS
from firmware_bridge.source import (
    EVENT_CONNECTED,
    EVENT_DISCONNECTED,
    EVENT_RECONNECTED,
)
from tests.firmware_bridge._streams import fast_backoff
from tests.firmware_bridge._streams import take_readings as _take

FAST_BACKOFF = fast_backoff()


def _power(ts_s: float) -> dict:
    return {"power_w": 1000.0 + (ts_s % 10) * 10, "voltage_v": 231.0}




@pytest.mark.parametrize("version", ["5", "4", "2.2", "fluvius"])
async def test_reads_each_version_through_the_serial_port(version):
    async with VirtualDsmrMeter(_power, version=version, interval_s=0.05) as meter:
        config = DsmrConfig(port=meter.port, version=version, read_timeout_s=2.0,
                            serial=meter.serial_settings)
        source = DsmrSource(config, meter_id="p1", backoff=FAST_BACKOFF)
        readings = await _take(source, 3)
        assert config.serial_settings.baudrate == DSMR_SERIAL_SETTINGS[version].baudrate
    assert len(readings) == 3
    for r in readings:
        assert r.meter_id == "p1" and r.source == "dsmr"
        assert 1000.0 <= r.power_w <= 1100.0
        assert abs(r.received_s - time.time()) < 10
        assert r.extra["gas_m3"] > 0
        if version == "2.2":
            assert ReadingFlag.CLOCK_FALLBACK in r.flags
        else:
            assert ReadingFlag.CLOCK_FALLBACK not in r.flags and abs(r.ts_s - r.received_s) < 2
    assert source.stats.frames_ok == 3 and source.stats.frames_corrupt == 0
    assert not source.connected  # the stream closed the port


async def test_unplug_and_replug_recovers_by_itself_and_reports_the_outage():
    events = []
    async with VirtualDsmrMeter(_power, interval_s=0.05) as meter:
        source = DsmrSource(DsmrConfig(port=meter.port, read_timeout_s=2.0), meter_id="p1",
                            backoff=FAST_BACKOFF, on_event=events.append)
        loop = asyncio.get_running_loop()

        def unplug_at_third(count: int) -> None:
            if count == 3:
                meter.unplug()
                loop.call_later(0.4, meter.replug)

        readings = await _take(source, 8, on_each=unplug_at_third)
    kinds = [e.kind for e in events]
    assert kinds[:3] == [EVENT_CONNECTED, EVENT_DISCONNECTED, EVENT_RECONNECTED]
    reconnected = events[2]
    assert 0.3 <= reconnected.outage_s < 3.0
    assert source.stats.reconnects == 1 and source.stats.disconnects == 1
    assert source.stats.connect_failures >= 1  # the path dangled while unplugged
    gap_s = readings[3].received_s - readings[2].received_s
    assert gap_s >= 0.3  # the outage is visible in the stream, and it resumed afterwards
    assert [e.kind for e in _drain(source.events)][:3] == kinds[:3]


def _drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def test_silent_reader_is_detected_by_timeout_and_reopened():
    async with VirtualDsmrMeter(_power, interval_s=0.05) as meter:
        source = DsmrSource(DsmrConfig(port=meter.port, read_timeout_s=0.3), meter_id="p1",
                            backoff=FAST_BACKOFF)
        loop = asyncio.get_running_loop()

        def go_silent(count: int) -> None:
            if count == 2:
                meter.pause()
                loop.call_later(0.8, meter.resume)

        readings = await _take(source, 5, on_each=go_silent)
    assert len(readings) == 5
    assert source.stats.read_timeouts >= 1
    assert source.stats.reconnects >= 1
    assert "no data" in source.stats.last_error or source.stats.read_timeouts


async def test_line_noise_is_counted_and_readings_continue():
    async with VirtualDsmrMeter(_power, interval_s=0.05) as meter:
        source = DsmrSource(DsmrConfig(port=meter.port, read_timeout_s=2.0), meter_id="p1",
                            backoff=FAST_BACKOFF)

        def noise(count: int) -> None:
            if count == 1:
                meter.inject(b"\x00\xfe garbage /half a telegram")

        readings = await _take(source, 4, on_each=noise)
    assert len(readings) == 4
    assert source.stats.garbage_bytes > 0 or source.stats.frames_corrupt > 0


async def test_missing_port_retries_with_backoff_until_the_device_appears():
    async with VirtualDsmrMeter(_power, interval_s=0.05) as meter:
        meter.unplug()
        source = DsmrSource(DsmrConfig(port=meter.port, read_timeout_s=2.0), meter_id="p1",
                            backoff=FAST_BACKOFF)
        with pytest.raises(TransientConnectionError):
            await source.connect()
        asyncio.get_running_loop().call_later(0.5, meter.replug)
        readings = await _take(source, 2)
    assert len(readings) == 2
    assert source.stats.connect_failures >= 3  # 0.05 + 0.1 + 0.2 ... before the replug


async def test_clock_skewed_meter_gets_receive_time_and_flag():
    async with VirtualDsmrMeter(_power, interval_s=0.05, clock_offset_s=-3 * 3600) as meter:
        source = DsmrSource(DsmrConfig(port=meter.port, max_clock_skew_s=300), meter_id="p1")
        readings = await _take(source, 2)
    for r in readings:
        assert ReadingFlag.CLOCK_FALLBACK in r.flags and r.ts_s == r.received_s
        assert r.extra["meter_ts_s"] < r.received_s - 3 * 3600 + 10


async def test_a_pty_opened_with_parity_falls_back_to_8n1():
    """ptys reject 7E1 (EINVAL); the reader recognises a pty and opens it 8N1 (same bytes)."""
    async with VirtualDsmrMeter(_power, version="4", interval_s=0.05) as meter:
        source = DsmrSource(DsmrConfig(port=meter.port, version="4"), meter_id="p1")
        readings = await _take(source, 2)
    assert readings[-1].extra["dsmr_version"] == "4.2"


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError):
        DsmrConfig(port="/dev/ttyUSB0", version="6")
    with pytest.raises(ConfigError):
        DsmrConfig(port="/dev/ttyUSB0", read_timeout_s=0)


def test_serial_settings_from_a_config_table():
    config = DsmrConfig(port="/dev/ttyUSB0", version="2.2",
                        serial={"baudrate": 115200, "bytesize": 7, "parity": "E"})
    assert config.serial_settings.describe() == "115200 7E1"
    with pytest.raises(ConfigError):
        DsmrConfig(port="/dev/ttyUSB0", serial={"speed": 9600})
    with pytest.raises(ConfigError):
        DsmrConfig(port="/dev/ttyUSB0", serial={"baudrate": 9600, "bytesize": 9, "parity": "N"})
