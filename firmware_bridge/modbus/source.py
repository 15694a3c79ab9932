"""Modbus RTU meters (Eastron SDM120/SDM630) polled with pymodbus' async serial client."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from firmware_bridge.errors import (
    ConfigError,
    MissingDependencyError,
    ParseError,
    TransientConnectionError,
)
from firmware_bridge.modbus.registers import (
    PHASE_FIELDS,
    PHASE_TARGETS,
    READING_FIELDS,
    REGISTER_MAPS,
    RegisterMap,
    decode_float32,
)
from firmware_bridge.reading import PhaseValues, Reading, ReadingFlag
from firmware_bridge.source import BackoffConfig, MeterSource


@dataclass(frozen=True)
class ModbusUnit:
    """One meter on the RS485 bus. meter_id None: the source's meter_id."""

    unit_id: int
    model: str = "sdm120"
    meter_id: str | None = None

    def __post_init__(self) -> None:
        if self.model not in REGISTER_MAPS:
            raise ConfigError(f"unknown Modbus meter model {self.model!r}; known {sorted(REGISTER_MAPS)}")
        if not 1 <= self.unit_id <= 247:
            raise ConfigError(f"unit_id must be 1..247, got {self.unit_id}")

    @property
    def register_map(self) -> RegisterMap:
        return REGISTER_MAPS[self.model]


@dataclass
class ModbusConfig:
    """Options of ``build_source("modbus", ...)``.

    port: RS485 adapter (``/dev/ttyUSB0``). model: "sdm120" or "sdm630" (see registers.py).
    unit_id: Modbus device address (1..247). units: several meters on the same bus instead, as
    ``[{unit_id=1, model="sdm630", meter_id="house"}, {unit_id=2, meter_id="heatpump"}]``; each
    poll reads them in turn and a unit that does not answer does not take the others down.
    baudrate: None = the (first) model's factory default (SDM120 2400, SDM630 9600; all meters on a
    bus must share it); parity/stopbits as set on the meter (Eastron default 8N1).
    poll_interval_s: time between polls. timeout_s: per-request response timeout. retries: resends
    of a request before the unit counts as not answering; when no unit answers the link is down
    and the source reconnects with backoff.
    """

    port: str
    model: str = "sdm120"
    unit_id: int = 1
    units: Sequence[Mapping | ModbusUnit] = ()
    baudrate: int | None = None
    parity: str = "N"
    stopbits: int = 1
    poll_interval_s: float = 1.0
    timeout_s: float = 1.0
    retries: int = 2

    def __post_init__(self) -> None:
        if self.poll_interval_s <= 0 or self.timeout_s <= 0 or self.retries < 0:
            raise ConfigError("poll_interval_s and timeout_s must be > 0, retries >= 0")
        try:
            units = [u if isinstance(u, ModbusUnit) else ModbusUnit(**u) for u in self.units]
        except TypeError as e:
            raise ConfigError(f"bad Modbus unit in {list(self.units)}: {e}") from e
        self.units = tuple(units) or (ModbusUnit(self.unit_id, self.model),)
        ids = [u.unit_id for u in self.units]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"duplicate Modbus unit ids {ids}")

    @property
    def register_map(self) -> RegisterMap:
        return self.units[0].register_map


def registers_to_values(register_map: RegisterMap, start: int, registers: list[int]) -> dict[str, float]:
    """Decode the floats of ``register_map`` found in ``registers`` (read from ``start``).

    A register pair holding NaN or an infinity (a meter's "no value") decodes as such; the
    source's ``_to_reading`` turns it into None with ``INVALID_VALUE``, so one bad register costs
    that value, not the poll."""
    values: dict[str, float] = {}
    for spec in register_map.registers:
        i = spec.address - start
        if i >= 0 and i + 1 < len(registers):
            values[spec.target] = decode_float32(registers[i], registers[i + 1]) * spec.scale
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
        self._pending: collections.deque[Reading] = collections.deque()

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
        self._pending.clear()

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def _read(self) -> Reading:
        while not self._pending:
            delay_s = self._next_poll_s - time.monotonic()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            # fixed-rate polling that does not try to catch up after a slow poll
            self._next_poll_s = max(self._next_poll_s, time.monotonic()) + self.config.poll_interval_s
            self._pending.extend(await self._poll_bus())
        return self._pending.popleft()

    async def _poll_bus(self) -> list[Reading]:
        """Poll every unit once. Raises TransientConnectionError only if none answered."""
        readings, silent = [], []
        for unit in self.config.units:
            try:
                readings.append(await self.poll(unit))
            except ParseError as e:  # an exception response: skip this poll
                self.stats.count_frame_error(e)
            except TransientConnectionError as e:
                silent.append(e)
        if silent and len(silent) == len(self.config.units):
            raise silent[0]
        return readings

    async def poll(self, unit: ModbusUnit | None = None) -> Reading:
        """One poll of one unit (default: the first) -> Reading.

        Raises TransientConnectionError (no response) or ParseError (exception response); a NaN
        register is None in the reading (INVALID_VALUE).
        """
        from pymodbus.exceptions import ModbusException

        unit = unit or self.config.units[0]
        if self._client is None:
            raise TransientConnectionError("Modbus client not connected")
        values: dict[str, float] = {}
        for start, count in unit.register_map.blocks():
            try:
                response = await self._client.read_input_registers(
                    start, count=count, device_id=unit.unit_id)
            except ModbusException as e:
                self.stats.read_timeouts += 1
                raise TransientConnectionError(f"no response from unit {unit.unit_id}: {e}") from e
            _raise_if_cancelled()
            if response.isError():
                raise ParseError(f"unit {unit.unit_id}: exception response {response} "
                                 f"for registers {start:#06x}+{count}")
            values.update(registers_to_values(unit.register_map, start, response.registers))
        return self._to_reading(unit, values, time.time())

    def _to_reading(self, unit: ModbusUnit, values: dict[str, float], received_s: float) -> Reading:
        """One poll's decoded values -> Reading; a non-finite value is None, flagged INVALID_VALUE
        and named in ``extra["invalid_registers"]``. A three-phase meter's per-phase registers go
        to ``Reading.phases`` (L1..L3), where the reading guard checks them like every phase."""
        invalid = sorted(k for k, v in values.items() if not math.isfinite(v))
        values = {k: v for k, v in values.items() if k not in invalid}
        fields = {k: values.get(k) for k in READING_FIELDS}
        phases = _phases(unit.register_map, values)
        extra: dict[str, float | str] = {k: v for k, v in values.items()
                                         if k not in READING_FIELDS and k not in PHASE_TARGETS}
        extra["model"] = unit.model
        extra["unit_id"] = float(unit.unit_id)
        # Eastron meters have no clock: the timestamp is the receive time, flagged as such.
        flags = ReadingFlag.CLOCK_FALLBACK | self.extra_flags
        if invalid:
            self.stats.invalid_values += len(invalid)
            extra["invalid_registers"] = ",".join(invalid)
            flags |= ReadingFlag.INVALID_VALUE
        return Reading(meter_id=unit.meter_id or self.meter_id, ts_s=received_s, received_s=received_s,
                       source=self.source_name, extra=extra, flags=flags, phases=phases, **fields)


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation of the current task that pymodbus lost.

    pymodbus waits for each response with ``asyncio.wait_for``, which on Python < 3.12 returns the
    response instead of raising CancelledError when the task is cancelled in the loop iteration
    the response arrives in (CPython bpo-42130, fixed in 3.12). The cancellation is then lost
    and a stopped source would go on polling. ``Task.cancelling()`` still counts it."""
    if sys.version_info >= (3, 12):
        return
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _phases(register_map: RegisterMap, values: dict[str, float]) -> tuple[PhaseValues, ...]:
    """L1..L3 from the per-phase registers of ``register_map`` (none: a single-phase meter);
    a register that was NaN in this poll is None in its phase."""
    if not any(r.target in PHASE_TARGETS for r in register_map.registers):
        return ()
    return tuple(PhaseValues(**{field: values.get(target.format(n=n))
                                for field, target in PHASE_FIELDS.items()}) for n in (1, 2, 3))
