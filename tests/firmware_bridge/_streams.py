"""Test helper shared by the protocol tests: collect readings from a real source's stream."""

from __future__ import annotations

import asyncio
import contextlib
import inspect


async def take_readings(source, n: int, timeout_s: float = 15.0, on_each=None) -> list:
    """The first ``n`` readings of ``source.readings()``; ``on_each(count)`` (sync or async) runs
    after each one. The stream is closed on exit, so the port is released at once."""
    out = []
    async with contextlib.aclosing(source.readings()) as stream, asyncio.timeout(timeout_s):
        async for reading in stream:
            out.append(reading)
            if on_each is not None:
                result = on_each(len(out))
                if inspect.isawaitable(result):
                    await result
            if len(out) >= n:
                break
    return out


def fast_backoff():
    """Reconnect backoff short enough for unplug/replug tests (no jitter: deterministic)."""
    from firmware_bridge.source import BackoffConfig

    return BackoffConfig(initial_s=0.05, max_s=0.2, jitter=0.0)
