"""A virtual Eastron meter: a pymodbus RTU server on one end of a pty bridge; and a replay of
recorded polls (``ReplayModbusMeter``) on the same server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Mapping

from firmware_bridge.modbus.registers import REGISTER_MAPS, encode_float32
from firmware_bridge.pty_link import PtyBridge
from firmware_bridge.virtual_meter import PowerSource, VirtualMeterState


class _VirtualUnit:
    """One Eastron meter on the simulated bus: register map, meter state, reads served."""

    def __init__(self, unit_id: int, model: str, power_source: PowerSource, phases: int | None):
        if model not in REGISTER_MAPS:
            raise ValueError(f"unknown model {model!r}")
        self.unit_id, self.model, self.register_map = unit_id, model, REGISTER_MAPS[model]
        self.phases = phases or (3 if model == "sdm630" else 1)
        self.state = VirtualMeterState(power_source)
        self.reads_served = 0

    def register_values(self, ts_s: float) -> dict[str, float]:
        regs = self.state.sample(ts_s)
        apparent_va = (regs.power_w**2 + regs.reactive_var**2) ** 0.5
        values = {"voltage_v": regs.voltage_v, "current_a": regs.current_a, "power_w": regs.power_w,
                  "reactive_var": regs.reactive_var, "import_wh": regs.import_wh,
                  "export_wh": regs.export_wh, "frequency_hz": 50.0,
                  "apparent_power_va": apparent_va,
                  "power_factor": regs.power_w / apparent_va if apparent_va else 1.0}
        for i in range(1, 4):
            on = i <= self.phases
            values[f"voltage_l{i}_v"] = regs.voltage_v if on else 0.0
            values[f"current_l{i}_a"] = regs.current_a / self.phases if on else 0.0
            values[f"power_l{i}_w"] = regs.power_w / self.phases if on else 0.0
        return values

    def fill(self, start_address: int, registers: list[int], ts_s: float) -> None:
        values = self.register_values(ts_s)
        for spec in self.register_map.registers:
            i = spec.address - start_address
            registers[i], registers[i + 1] = encode_float32(values.get(spec.target, 0.0) / spec.scale)
        self.reads_served += 1


class VirtualModbusMeter:
    """``async with VirtualModbusMeter(power_source, model="sdm630") as meter: meter.port``.

    The pymodbus server opens one pty of a ``PtyBridge``; ``port`` is the other one, which a
    ``ModbusSource`` opens like an RS485 adapter. Registers are refreshed from ``power_source`` on
    every read (a pymodbus SimDevice action), so each poll sees the value at its own time.
    ``other_units`` ({unit_id: (model, power_source)}) puts more meters on the same bus.
    ``respond = False`` makes the meters answer with exception responses (device failure);
    ``power_off()``/``power_on()`` stop and restart the server: no answers at all (timeouts).
    A request the server has already received is answered before it stops (up to
    ``drain_timeout_s``): pymodbus answers on a task of its own, and a server closed under that
    task logs "Cancel send, because not connected!" as an error.
    """

    drain_timeout_s = 2.0

    def __init__(self, power_source: PowerSource, *, model: str = "sdm120", unit_id: int = 1,
                 phases: int | None = None, time_fn: Callable[[], float] = time.time,
                 other_units: Mapping[int, tuple[str, PowerSource]] | None = None) -> None:
        self.units = {unit_id: _VirtualUnit(unit_id, model, power_source, phases)}
        for other_id, (other_model, other_source) in (other_units or {}).items():
            self.units[other_id] = _VirtualUnit(other_id, other_model, other_source, None)
        self.model, self.unit_id, self.time_fn = model, unit_id, time_fn
        self.register_map = self.units[unit_id].register_map
        self.bridge = PtyBridge()
        self.respond = True
        self._server = None
        self._in_flight = 0  # requests to one of our units received and not answered yet

    @property
    def port(self) -> str:
        return self.bridge.path_b

    @property
    def reads_served(self) -> int:
        return sum(u.reads_served for u in self.units.values())

    def register_values(self, ts_s: float) -> dict[str, float]:
        return self.units[self.unit_id].register_values(ts_s)

    async def _on_access(self, unit: _VirtualUnit, function_code, start_address, address, count,
                         registers, set_values):
        from pymodbus.constants import ExcCodes

        if not self.respond:
            return ExcCodes.DEVICE_FAILURE
        unit.fill(start_address, registers, self.time_fn())
        return None

    def _trace_pdu(self, sending: bool, pdu):
        """pymodbus' PDU hook (called with every request received and answer sent): counts the
        requests in flight. A request for a unit not on the bus gets no answer, so is not counted."""
        if sending:
            self._in_flight = max(0, self._in_flight - 1)
        elif pdu.dev_id in self.units:
            self._in_flight += 1
        return pdu

    async def start(self) -> None:
        self.bridge.start()
        await self.power_on()

    async def power_on(self) -> None:
        from pymodbus.server import ModbusSerialServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        if self._server is not None:
            return
        devices = [SimDevice(unit.unit_id, simdata=[SimData(0, count=unit.register_map.size, values=0,
                                                            datatype=DataType.REGISTERS)],
                             action=functools.partial(self._on_access, unit))
                   for unit in self.units.values()]
        # ignore_missing_devices: on a real RS485 bus an address nobody has gets no answer
        # (pymodbus 3.16's SimCore still answers unknown ids with a DEVICE_FAILURE exception)
        self._server = ModbusSerialServer(devices, port=self.bridge.path_a,
                                          baudrate=self.register_map.default_baudrate, timeout=1,
                                          ignore_missing_devices=True, trace_pdu=self._trace_pdu)
        self._in_flight = 0
        await self._server.serve_forever(background=True)

    async def power_off(self) -> None:
        """Stop the server once the requests it has received are answered (at most
        ``drain_timeout_s``); nothing awaits between the last check and the shutdown, so no
        request can arrive in between."""
        if self._server is None:
            return
        deadline_s = time.monotonic() + self.drain_timeout_s
        while self._in_flight and time.monotonic() < deadline_s:
            await asyncio.sleep(0.005)
        with contextlib.suppress(Exception):
            await self._server.shutdown()
        self._server = None

    async def stop(self) -> None:
        await self.power_off()
        self.bridge.stop()

    async def __aenter__(self) -> VirtualModbusMeter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class ReplayModbusMeter(VirtualModbusMeter):
    """A recorded meter: read request n is answered with recorded poll n, as the meter sent it.

    ``polls``: one dict per poll, register address -> (high word, low word) of a float32 pair;
    registers a poll does not name read 0. After the last poll the meter answers with exception
    responses (device failure), so a reader sees exactly the recorded polls.
    """

    def __init__(self, polls, *, model: str = "sdm120", unit_id: int = 1) -> None:
        super().__init__(lambda ts_s: {"power_w": 0.0}, model=model, unit_id=unit_id)
        self.polls = [{int(a): (int(w[0]), int(w[1])) for a, w in poll.items()} for poll in polls]
        self.polls_served = 0

    @classmethod
    def from_case(cls, case: Mapping) -> ReplayModbusMeter:
        """From a case's ``polls.json``: ``{"model", "unit_id", "polls": [{"0x0048": [hi, lo]}]}``."""
        polls = [{int(a, 16): words for a, words in poll.items()} for poll in case["polls"]]
        return cls(polls, model=case.get("model", "sdm120"), unit_id=int(case.get("unit_id", 1)))

    async def _on_access(self, unit: _VirtualUnit, function_code, start_address, address, count,
                         registers, set_values):
        from pymodbus.constants import ExcCodes

        if not self.respond or self.polls_served >= len(self.polls):
            return ExcCodes.DEVICE_FAILURE
        poll = self.polls[self.polls_served]
        self.polls_served += 1
        for i in range(len(registers)):
            registers[i] = 0
        for address_, (high, low) in poll.items():
            i = address_ - start_address
            if i >= 0 and i + 1 < len(registers):
                registers[i], registers[i + 1] = high, low
        unit.reads_served += 1
        return None
