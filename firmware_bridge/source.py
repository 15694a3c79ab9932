"""The one async interface every meter protocol implements.

A ``MeterSource`` has ``connect()``, ``read() -> Reading`` and ``close()``; ``readings()`` wraps them
in the loop a gateway wants (Home Assistant style): connect, read until the link fails, then sleep
with exponential backoff and reconnect, forever, until the consumer stops iterating or the task is
cancelled (the port is closed either way). Corrupt frames never surface as exceptions: ``read()``
skips them and counts them in ``stats``. Outages are reported as ``SourceEvent``s, both in the
``events`` queue and through an optional ``on_event`` callback.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar

from firmware_bridge.errors import (
    ChecksumError,
    DecryptionError,
    FrameError,
    FramingError,
    ParseError,
    TransientConnectionError,
)
from firmware_bridge.reading import Reading, ReadingFlag

LOGGER = logging.getLogger(__name__)

EVENT_CONNECTED = "connected"  # first successful connect
EVENT_DISCONNECTED = "disconnected"  # link lost (error in SourceEvent.error)
EVENT_RECONNECTED = "reconnected"  # link back after an outage of SourceEvent.outage_s
EVENT_CLOSED = "closed"  # source closed by its owner


@dataclass
class BackoffConfig:
    """Reconnect delays: initial_s, then times factor up to max_s, with +-jitter (a fraction)."""

    initial_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0
    jitter: float = 0.1

    def next_delay_s(self, attempt: int) -> float:
        """Delay before reconnect attempt ``attempt`` (0-based)."""
        base_s = min(self.initial_s * self.factor**attempt, self.max_s)
        return max(0.0, base_s * (1.0 + random.uniform(-self.jitter, self.jitter)))


@dataclass
class SourceStats:
    """Counters a source keeps; ``as_dict()`` is what the agent publishes as meter quality."""

    frames_ok: int = 0
    frames_corrupt: int = 0  # framing + checksum + parse + decryption errors
    framing_errors: int = 0
    checksum_errors: int = 0
    parse_errors: int = 0
    decryption_errors: int = 0  # encrypted P1: wrong key or damaged frame
    invalid_values: int = 0  # values the protocol marks as "no value" (ZCL invalid number)
    garbage_bytes: int = 0  # bytes skipped while resynchronising
    frames_partial: int = 0  # frames delivered with some objects dropped (Reading PARTIAL flag)
    objects_dropped: int = 0  # objects (lines) dropped from otherwise good frames
    last_warning: str = ""  # why the last object was dropped
    read_timeouts: int = 0  # silent link detected
    connect_failures: int = 0
    disconnects: int = 0
    reconnects: int = 0
    outage_s_total: float = 0.0
    last_error: str = ""
    last_reading_received_s: float | None = None

    def count_frame_error(self, error: FrameError) -> None:
        self.frames_corrupt += 1
        if isinstance(error, ChecksumError):
            self.checksum_errors += 1
        elif isinstance(error, FramingError):
            self.framing_errors += 1
        elif isinstance(error, ParseError):
            self.parse_errors += 1
        elif isinstance(error, DecryptionError):
            self.decryption_errors += 1
        self.last_error = f"{type(error).__name__}: {error}"

    def count_dropped_objects(self, warnings: tuple[str, ...] | list[str]) -> None:
        """A frame was delivered without the objects named in ``warnings``."""
        if warnings:
            self.frames_partial += 1
            self.objects_dropped += len(warnings)
            self.last_warning = warnings[-1]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SourceEvent:
    """A link state change of one source."""

    kind: str  # EVENT_CONNECTED / EVENT_DISCONNECTED / EVENT_RECONNECTED / EVENT_CLOSED
    meter_id: str
    ts_s: float  # UTC wall clock of the change
    outage_s: float | None = None  # on "reconnected": how long the link was down
    error: str = ""  # on "disconnected": why


@dataclass
class SourceConfig:
    """Options every source kind shares."""

    meter_id: str = "meter"
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    events_maxsize: int = 256


class MeterSource(abc.ABC):
    """Abstract meter source. Subclasses implement ``_connect``, ``_read`` and ``_close``.

    ``_read`` returns the next valid ``Reading``; it raises ``OSError`` or
    ``TransientConnectionError`` when the link is lost, and handles frame errors itself (counting
    them in ``self.stats``).
    """

    kind: ClassVar[str] = "abstract"

    def __init__(
        self,
        meter_id: str,
        *,
        backoff: BackoffConfig | None = None,
        on_event: Callable[[SourceEvent], object] | None = None,
        events_maxsize: int = 256,
    ) -> None:
        if not meter_id:
            raise ValueError("meter_id must be a non-empty string")
        self.meter_id = meter_id
        self.backoff = backoff or BackoffConfig()
        self.on_event = on_event
        self.stats = SourceStats()
        self.events: asyncio.Queue[SourceEvent] = asyncio.Queue(maxsize=events_maxsize)
        self.connected = False
        self._ever_connected = False
        self._down_since_s: float | None = None
        self._last_ts_s: dict[str, float] = {}

    # -- to implement --------------------------------------------------------------------------
    @abc.abstractmethod
    async def _connect(self) -> None: ...

    @abc.abstractmethod
    async def _read(self) -> Reading: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    # -- public API ----------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the link. Raises OSError / TransientConnectionError when the meter is unreachable."""
        try:
            await self._connect()
        except BaseException:
            with contextlib.suppress(Exception):
                await self._close()
            raise
        self.connected = True
        now_s = time.time()
        if not self._ever_connected:
            self._ever_connected = True
            self._emit(SourceEvent(EVENT_CONNECTED, self.meter_id, now_s))
        elif self._down_since_s is not None:
            outage_s = now_s - self._down_since_s
            self.stats.reconnects += 1
            self.stats.outage_s_total += outage_s
            self._emit(SourceEvent(EVENT_RECONNECTED, self.meter_id, now_s, outage_s=outage_s))
        self._down_since_s = None

    async def read(self) -> Reading:
        """The next valid reading (corrupt frames are skipped and counted)."""
        if not self.connected:
            raise TransientConnectionError(f"{self.kind} source {self.meter_id!r} is not connected")
        reading = self._flag_order(await self._read())
        self.stats.frames_ok += 1
        self.stats.last_reading_received_s = reading.received_s
        return reading

    def _flag_order(self, reading: Reading) -> Reading:
        """DUPLICATE / OUT_OF_ORDER against the previous timestamp of the same meter."""
        last_ts_s = self._last_ts_s.get(reading.meter_id)
        self._last_ts_s[reading.meter_id] = max(reading.ts_s, last_ts_s or reading.ts_s)
        if last_ts_s is None or reading.ts_s > last_ts_s:
            return reading
        flag = ReadingFlag.DUPLICATE if reading.ts_s == last_ts_s else ReadingFlag.OUT_OF_ORDER
        return replace(reading, flags=reading.flags | flag)

    async def close(self) -> None:
        """Close the link (idempotent)."""
        was_connected = self.connected
        self.connected = False
        await self._close()
        if was_connected:
            self._emit(SourceEvent(EVENT_CLOSED, self.meter_id, time.time()))

    async def readings(self) -> AsyncIterator[Reading]:
        """Readings forever: reconnects with exponential backoff, closes the link when stopped."""
        attempt = 0
        try:
            while True:
                if not self.connected:
                    try:
                        await self.connect()
                    except (OSError, TransientConnectionError) as e:
                        self.stats.connect_failures += 1
                        self._mark_down(e)
                        delay_s = self.backoff.next_delay_s(attempt)
                        attempt += 1
                        LOGGER.info("%s: connect failed (%s), retry in %.1f s", self.meter_id, e, delay_s)
                        await asyncio.sleep(delay_s)
                        continue
                try:
                    reading = await self.read()
                except (OSError, TransientConnectionError) as e:
                    LOGGER.warning("%s: link lost: %s", self.meter_id, e)
                    await self._drop_link(e)
                    # sleep here too: a port that opens but fails at once must not spin
                    await asyncio.sleep(self.backoff.next_delay_s(attempt))
                    attempt += 1
                    continue
                attempt = 0  # the backoff restarts once the link delivers again
                yield reading
        finally:
            await self.close()

    async def _drop_link(self, error: BaseException) -> None:
        self.connected = False
        self.stats.disconnects += 1
        with contextlib.suppress(Exception):
            await self._close()
        self._mark_down(error)

    def _mark_down(self, error: BaseException) -> None:
        self.stats.last_error = f"{type(error).__name__}: {error}"
        if self._down_since_s is None:
            self._down_since_s = time.time()
            self._emit(SourceEvent(EVENT_DISCONNECTED, self.meter_id, self._down_since_s,
                                   error=self.stats.last_error))

    def _emit(self, event: SourceEvent) -> None:
        if self.events.full():  # keep the newest: drop the oldest event
            self.events.get_nowait()
        self.events.put_nowait(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a consumer's bug must not stop the meter stream
                LOGGER.exception("on_event callback failed")

    async def __aenter__(self) -> MeterSource:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
