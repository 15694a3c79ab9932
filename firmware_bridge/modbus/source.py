"""Modbus RTU meters (Eastron SDM120/SDM630) polled with pymodbus' async serial client."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass

from firmware_bridge.errors import (
    ConfigError,
    MissingDependencyError,
    ParseError,
    TransientConnectionError,
)
from firmware_bridge.modbus.registers import (
    READING_FIELDS,
    REGISTER_MAPS,
    RegisterMap,
    decode_float32,
)
from firmware_bridge.reading import Reading, ReadingFlag
from firmware_bridge.source import BackoffConfig, MeterSource


@dataclass
class ModbusConfig:
    """Options of ``build_source("modbus", ...)``.

    port: RS485 adapter (``/dev/ttyUSB0``). model: "sdm120" or "sdm630" (see registers.py).
    unit_id: Modbus device address (1..247). baudrate: None = the model's factory default
    (SDM120 2400, SDM630 9600); parity/stopbits as set on the meter (Eastron default 8N1).
    poll_interval_s: time between polls. timeout_s: per-request response timeout. retries: resends
    of a request before the link counts as down (then the source reconnects with backoff).
    """

    port: str
    model: str = "sdm120"
    unit_id: int = 1
    baudrate: int | None = None
    parity: str = "N"
    stopbits: int = 1
    poll_interval_s: float = 1.0
    timeout_s: float = 1.0
    retries: int = 2

    def __post_init__(self) -> None:
        if self.model not in REGISTER_MAPS:
            raise ConfigError(f"unknown Modbus meter model {self.model!r}; known {sorted(REGISTER_MAPS)}")
        if not 1 <= self.unit_id <= 247:
            raise ConfigError(f"unit_id must be 1..247, got {self.unit_id}")
        if self.poll_interval_s <= 0 or self.timeout_s <= 0 or self.retries < 0:
            raise ConfigError("poll_interval_s and timeout_s must be > 0, retries >= 0")

    @property
    def register_map(self) -> RegisterMap:
        return REGISTER_MAPS[self.model]


def registers_to_values(register_map: RegisterMap, start: int, registers: list[int]) -> dict[str, float]:
    """Decode the floats of ``register_map`` found in ``registers`` (read from ``start``)."""
    values: dict[str, float] = {}
    for spec in register_map.registers:
        i = spec.address - start
        if i >= 0 and i + 1 < len(registers):
            value = decode_float32(registers[i], registers[i + 1])
            if not math.isfinite(value):
                raise ParseError(f"non-finite value at register {spec.address:#06x} ({spec.target})")
            values[spec.target] = value * spec.scale
    return values


class ModbusSource(MeterSource):
    kind = "modbus"

    def __init__(self, config: ModbusConfig, *, meter_id: str = "modbus",
                 backoff: BackoffConfig | None = None, on_event=None,
                 extra_flags: ReadingFlag = ReadingFlag.NONE, source_name: str = "modbus") -> None:
        super().__init__(meter_id, backoff=backoff, on_event=on_event)
        self.config = config
        self.extra_flags, self.source_name = extra_flags, source_name
        self._client = None
        self._next_poll_s = 0.0

    async def _connect(self) -> None:
        try:
            from pymodbus.client import AsyncModbusSerialClient
            from pymodbus.framer import FramerType
        except ImportError as e:
            raise MissingDependencyError("Modbus meters need pymodbus: pip install 'unimeter[edge]'") from e
        cfg = self.config
        self._client = AsyncModbusSerialClient(
            cfg.port, framer=FramerType.RTU, baudrate=cfg.baudrate or cfg.register_map.default_baudrate,
            bytesize=8, parity=cfg.parity, stopbits=cfg.stopbits, timeout=cfg.timeout_s,
            retries=cfg.retries, reconnect_delay=0,  # reconnects are MeterSource's job
        )
        if not await self._client.connect():
            raise TransientConnectionError(f"cannot open Modbus port {cfg.port}")
        self._next_poll_s = 0.0

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def _read(self) -> Reading:
        while True:
            delay_s = self._next_poll_s - time.monotonic()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            # fixed-rate polling that does not try to catch up after a slow poll
            self._next_poll_s = max(self._next_poll_s, time.monotonic()) + self.config.poll_interval_s
            try:
                return await self.poll()
            except ParseError as e:  # an exception response or a bad value: skip this poll
                self.stats.count_frame_error(e)

    async def poll(self) -> Reading:
        """One poll of every register block -> Reading. Raises TransientConnectionError or ParseError."""
        from pymodbus.exceptions import ModbusException

        if self._client is None:
            raise TransientConnectionError("Modbus client not connected")
        values: dict[str, float] = {}
        for start, count in self.config.register_map.blocks():
            try:
                response = await self._client.read_input_registers(
                    start, count=count, device_id=self.config.unit_id)
            except ModbusException as e:
                self.stats.read_timeouts += 1
                raise TransientConnectionError(f"no response from unit {self.config.unit_id}: {e}") from e
            if response.isError():
                raise ParseError(f"exception response {response} for registers {start:#06x}+{count}")
            values.update(registers_to_values(self.config.register_map, start, response.registers))
        return self._to_reading(values, time.time())

    def _to_reading(self, values: dict[str, float], received_s: float) -> Reading:
        fields = {k: values.get(k) for k in READING_FIELDS}
        extra = {k: v for k, v in values.items() if k not in READING_FIELDS}
        extra["model"] = self.config.model
        # Eastron meters have no clock: the timestamp is the receive time, flagged as such.
        return Reading(meter_id=self.meter_id, ts_s=received_s, received_s=received_s,
                       source=self.source_name, extra=extra,
                       flags=ReadingFlag.CLOCK_FALLBACK | self.extra_flags, **fields)
