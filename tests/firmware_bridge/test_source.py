"""MeterSource's reconnect loop, backoff, stats and events.

``ScriptedSource`` is a minimal subclass driven by a script of outcomes; it stands in for a link
only to test the base-class logic (the protocol sources are tested on real ports elsewhere).
"""

import asyncio
import contextlib

import pytest

from firmware_bridge.errors import TransientConnectionError
from firmware_bridge.reading import Reading
from firmware_bridge.source import (
    EVENT_CLOSED,
    EVENT_CONNECTED,
    EVENT_DISCONNECTED,
    EVENT_RECONNECTED,
    BackoffConfig,
    MeterSource,
)


class ScriptedSource(MeterSource):
    kind = "scripted"

    def __init__(self, connect_results, read_results, **kwargs):
        super().__init__("scripted", **kwargs)
        self.connect_results = list(connect_results)
        self.read_results = list(read_results)
        self.opened = 0
        self.closed = 0

    async def _connect(self):
        result = self.connect_results.pop(0) if self.connect_results else None
        if isinstance(result, BaseException):
            raise result
        self.opened += 1

    async def _read(self):
        result = self.read_results.pop(0) if self.read_results else None
        if result is None:
            await asyncio.sleep(3600)
        if isinstance(result, BaseException):
            raise result
        return Reading(meter_id="scripted", ts_s=float(result), received_s=float(result), power_w=1.0)

    async def _close(self):
        self.closed += 1


def test_backoff_grows_exponentially_and_is_capped():
    backoff = BackoffConfig(initial_s=1.0, max_s=10.0, factor=2.0, jitter=0.0)
    assert [backoff.next_delay_s(i) for i in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    jittery = BackoffConfig(initial_s=1.0, jitter=0.1)
    assert all(0.9 <= jittery.next_delay_s(0) <= 1.1 for _ in range(100))


async def test_reconnects_after_failures_and_reports_outage():
    events = []
    source = ScriptedSource(
        connect_results=[None, OSError("gone"), TransientConnectionError("busy"), None],
        read_results=[1, OSError("EIO"), 2, 3],
        backoff=BackoffConfig(initial_s=0.01, max_s=0.02, jitter=0.0), on_event=events.append)
    got = []
    async with contextlib.aclosing(source.readings()) as stream:
        async for reading in stream:
            got.append(reading.ts_s)
            if len(got) == 3:
                break
    assert got == [1.0, 2.0, 3.0]
    assert [e.kind for e in events] == [EVENT_CONNECTED, EVENT_DISCONNECTED, EVENT_RECONNECTED,
                                        EVENT_CLOSED]
    assert events[2].outage_s >= 0.04  # three backoff sleeps: 0.01 + 0.02 + 0.02
    assert "EIO" in events[1].error
    s = source.stats
    assert (s.frames_ok, s.disconnects, s.connect_failures, s.reconnects) == (3, 1, 2, 1)
    assert source.closed >= 3 and not source.connected


async def test_cancelling_the_consumer_closes_the_link():
    source = ScriptedSource(connect_results=[None], read_results=[1, None])
    got = []

    async def consume():
        async for reading in source.readings():
            got.append(reading)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(got) == 1 and not source.connected and source.closed == 1


async def test_events_queue_is_bounded_and_a_failing_callback_is_contained():
    def broken(_event):
        raise RuntimeError("consumer bug")

    source = ScriptedSource([], [], on_event=broken, events_maxsize=2)
    for _ in range(5):
        await source.connect()
        await source.close()
    assert source.events.qsize() == 2  # the newest kept


async def test_read_before_connect_is_a_transient_error():
    source = ScriptedSource([], [1])
    with pytest.raises(TransientConnectionError):
        await source.read()


def test_meter_id_is_required():
    with pytest.raises(ValueError):
        MeterSource.__init__(ScriptedSource.__new__(ScriptedSource), "")


async def test_repeated_and_backwards_timestamps_are_flagged():
    from firmware_bridge.reading import ReadingFlag

    source = ScriptedSource([None], [10, 11, 11, 9, 12])
    await source.connect()
    flags = [(await source.read()).flags for _ in range(5)]
    assert flags == [ReadingFlag.NONE, ReadingFlag.NONE, ReadingFlag.DUPLICATE,
                     ReadingFlag.OUT_OF_ORDER, ReadingFlag.NONE]


async def test_a_link_that_fails_right_after_connecting_backs_off():
    source = ScriptedSource(connect_results=[None] * 5, read_results=[OSError("EOF")] * 4 + [7],
                            backoff=BackoffConfig(initial_s=0.02, max_s=1.0, jitter=0.0))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with contextlib.aclosing(source.readings()) as stream:
        reading = await anext(stream)
    assert reading.ts_s == 7.0 and source.stats.disconnects == 4
    assert loop.time() - t0 >= 0.02 + 0.04 + 0.08 + 0.16  # grew, did not spin
