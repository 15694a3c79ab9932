"""A virtual DSMR meter: writes telegrams into a pty that ``DsmrSource`` opens like a P1 cable."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from firmware_bridge.dsmr.cipher import CipherKeys, encrypt_telegram
from firmware_bridge.dsmr.writer import DSMR_VERSIONS, encode_telegram
from firmware_bridge.pty_link import PtyDevice
from firmware_bridge.serial_port import DSMR_SERIAL_SETTINGS, SerialSettings, pty_equivalent
from firmware_bridge.virtual_meter import PowerSource, VirtualMeterState


class VirtualDsmrMeter:
    """``async with VirtualDsmrMeter(power_source, version="5") as meter: meter.port``.

    interval_s: telegram period (1 s for DSMR 5, 10 s for DSMR 4). clock_offset_s: meter clock
    error (to exercise the clock policy). gas_m3_per_h: gas flow (None: no gas meter).
    ``unplug()``/``replug()`` close and recreate the pty behind the same path; ``pause()`` /
    ``resume()`` keep the port open but silent; ``inject(data)`` writes raw bytes (garbage).
    cipher_keys: encrypt every telegram as a general-glo-ciphering frame (Smarty, Sagemcom T210).
    """

    def __init__(
        self,
        power_source: PowerSource,
        *,
        version: str = "5",
        interval_s: float = 1.0,
        clock_offset_s: float = 0.0,
        gas_m3_per_h: float | None = 0.1,
        phases: int = 1,
        time_fn: Callable[[], float] = time.time,
        cipher_keys: CipherKeys | None = None,
    ) -> None:
        if version not in DSMR_VERSIONS:
            raise ValueError(f"unknown DSMR version {version!r}")
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.state = VirtualMeterState(power_source)
        self.version, self.interval_s, self.clock_offset_s = version, interval_s, clock_offset_s
        self.gas_m3_per_h, self.phases, self.time_fn = gas_m3_per_h, phases, time_fn
        self.cipher_keys = cipher_keys
        self.system_title = b"UNIM\x00\x00\x00\x01"
        self.invocation_counter = 0
        self.device = PtyDevice("ttyP1")
        self.telegrams_sent = 0
        self.paused = False
        self._gas_m3 = 1000.0
        self._task: asyncio.Task | None = None
        self.last_sent_s: float | None = None

    @property
    def port(self) -> str:
        return self.device.path

    @property
    def serial_settings(self) -> SerialSettings:
        """What a reader must use on this pty (the version's settings without parity)."""
        return pty_equivalent(DSMR_SERIAL_SETTINGS[self.version])

    def telegram(self, ts_s: float) -> bytes:
        regs = self.state.sample(ts_s)
        gas = None
        if self.gas_m3_per_h is not None:
            gas = self._gas_m3 + self.gas_m3_per_h * (ts_s % 86400) / 3600.0
        data = encode_telegram(regs.as_mapping(), ts_s=ts_s + self.clock_offset_s,
                               version=self.version, gas_m3=gas, phases=self.phases)
        if self.cipher_keys is None:
            return data
        self.invocation_counter += 1
        return encrypt_telegram(data, self.cipher_keys, system_title=self.system_title,
                                invocation_counter=self.invocation_counter)

    async def _run(self) -> None:
        while True:
            if self.device.plugged and not self.paused:
                now_s = self.time_fn()
                data = self.telegram(now_s)
                if self.device.write(data) == len(data):
                    self.telegrams_sent += 1
                    self.last_sent_s = now_s
            await asyncio.sleep(self.interval_s)

    def inject(self, data: bytes) -> int:
        return self.device.write(data)

    def unplug(self) -> None:
        self.device.unplug()

    def replug(self) -> None:
        self.device.plug()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    async def start(self) -> None:
        self.device.plug()
        self._task = asyncio.create_task(self._run(), name="virtual-dsmr-meter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.device.remove()

    async def __aenter__(self) -> VirtualDsmrMeter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
