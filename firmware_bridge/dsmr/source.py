"""DSMR P1 reader: serial port -> framer -> parser -> Reading, with a read timeout for silent ports."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from firmware_bridge.clock import ClockPolicy
from firmware_bridge.dsmr.cipher import (
    SMARTY_AUTHENTICATION_KEY,
    CipherFramer,
    CipherKeys,
    decrypt_frame,
)
from firmware_bridge.dsmr.framing import FramerConfig, TelegramFramer
from firmware_bridge.dsmr.mapping import MbusPolicy, telegram_to_reading
from firmware_bridge.dsmr.parser import DsmrParseConfig, parse_telegram
from firmware_bridge.errors import (
    ConfigError,
    DecryptionError,
    FrameError,
    TransientConnectionError,
)
from firmware_bridge.reading import Reading, ReadingFlag
from firmware_bridge.serial_port import DSMR_SERIAL_SETTINGS, SerialSettings, open_serial
from firmware_bridge.source import BackoffConfig, MeterSource

LOGGER = logging.getLogger(__name__)


@dataclass
class DsmrConfig:
    """Options of ``build_source("dsmr", ...)``.

    port: serial device (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``).
    version: "5" (115200 8N1), "4" (115200 7E1), "2.2" and "3" (9600 7E1, no CRC), "fluvius" (BE,
        as 5); encrypted P1: "smarty" (LU) and "sagemcom-t210" (AT, Sagemcom T210-D-R), 115200 8N1.
    read_timeout_s: no byte for this long -> the port is considered dead and reopened (the known
        "reader stops after days until replugged" failure). DSMR 5 sends every 1 s, 4 every 10 s.
    max_clock_skew_s: meter clock further than this from the gateway -> receive time + CLOCK_FALLBACK.
    standard_utc_offset_s / timezone: how the meter's local time maps to UTC (see dsmr.parser).
    max_telegram_bytes: framer buffer bound.
    max_mbus_age_s: an M-Bus reading captured further than this from the meter clock is not
        reported (a dead or placeholder channel; see dsmr.mapping).
    serial: override the line settings of ``version`` (e.g. a 2.2 meter wired at 115200).
    encryption_key: the meter's 128-bit key from the grid operator (32 hex digits); required by
        the encrypted versions. authentication_key: likewise; Smarty meters share a public one (the
        default for "smarty"); "" decrypts without checking the GCM tag (the telegram CRC still
        is). Neither key is shown in the config's repr or logs.
    """

    port: str
    version: str = "5"
    read_timeout_s: float = 30.0
    max_clock_skew_s: float = 300.0
    standard_utc_offset_s: int = 3600
    timezone: str = "Europe/Amsterdam"
    max_telegram_bytes: int = 16384
    max_mbus_age_s: float = 2 * 86400.0
    serial: SerialSettings | None = None
    encryption_key: str | None = field(default=None, repr=False)
    authentication_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.serial, Mapping):  # from the agent's TOML: {baudrate=..., parity=...}
            try:
                self.serial = SerialSettings(**self.serial)
            except TypeError as e:
                raise ConfigError(f"bad serial settings {dict(self.serial)}: {e}") from e
        if self.version not in DSMR_SERIAL_SETTINGS:
            raise ConfigError(f"unknown DSMR version {self.version!r}; known {sorted(DSMR_SERIAL_SETTINGS)}")
        if self.read_timeout_s <= 0:
            raise ConfigError("read_timeout_s must be > 0")
        if self.max_mbus_age_s <= 0:
            raise ConfigError("max_mbus_age_s must be > 0")
        if self.version in ENCRYPTED_VERSIONS and not self.encryption_key:
            raise ConfigError(f"DSMR version {self.version!r} is encrypted: set encryption_key "
                              "(32 hex digits, from the grid operator)")
        _ = self.cipher_keys  # validates the key format now, not at the first frame

    @property
    def cipher_keys(self) -> CipherKeys | None:
        """The keys for encrypted P1, or None for plaintext meters."""
        if not self.encryption_key:
            return None
        authentication_key = self.authentication_key
        if authentication_key is None and self.version == "smarty":
            authentication_key = SMARTY_AUTHENTICATION_KEY
        return CipherKeys.from_hex(self.encryption_key, authentication_key)

    @property
    def serial_settings(self) -> SerialSettings:
        return self.serial or DSMR_SERIAL_SETTINGS[self.version]

    @property
    def crc_mode(self) -> str:
        return "none" if self.version in ("2.2", "3") else "required"


ENCRYPTED_VERSIONS = ("smarty", "sagemcom-t210")


class DsmrSource(MeterSource):
    kind = "dsmr"

    def __init__(
        self,
        config: DsmrConfig,
        *,
        meter_id: str = "p1",
        backoff: BackoffConfig | None = None,
        on_event=None,
        extra_flags: ReadingFlag = ReadingFlag.NONE,
        source_name: str = "dsmr",
    ) -> None:
        super().__init__(meter_id, backoff=backoff, on_event=on_event)
        self.config = config
        self.framer = TelegramFramer(FramerConfig(crc=config.crc_mode,
                                                  max_telegram_bytes=config.max_telegram_bytes))
        self.keys = config.cipher_keys
        self.cipher_framer = CipherFramer(config.max_telegram_bytes) if self.keys else None
        self.parse_config = DsmrParseConfig(config.standard_utc_offset_s, config.timezone)
        self.clock = ClockPolicy(config.max_clock_skew_s)
        self.mbus_policy = MbusPolicy(config.max_mbus_age_s)
        self._warned: set[str] = set()
        self.extra_flags = extra_flags
        self.source_name = source_name
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: collections.deque[Reading] = collections.deque()

    async def _connect(self) -> None:
        self.framer.reset()
        if self.cipher_framer is not None:
            self.cipher_framer.reset()
        self._pending.clear()
        self._reader, self._writer = await open_serial(self.config.port, self.config.serial_settings)

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read(self) -> Reading:
        while not self._pending:
            data = await self._read_chunk()
            self._pending.extend(self.feed(data, time.time()))
        return self._pending.popleft()

    async def _read_chunk(self) -> bytes:
        assert self._reader is not None
        try:
            data = await asyncio.wait_for(self._reader.read(4096), self.config.read_timeout_s)
        except TimeoutError as e:
            self.stats.read_timeouts += 1
            raise TransientConnectionError(
                f"no data on {self.config.port} for {self.config.read_timeout_s:.1f} s; reopening") from e
        if not data:
            raise TransientConnectionError(f"{self.config.port} closed (EOF)")
        return data

    def feed(self, data: bytes, received_s: float) -> list[Reading]:
        """Push raw bytes through framer and parser; returns the valid readings, counts the rest.

        Encrypted P1: the bytes are general-glo-ciphering frames; each is decrypted first and its
        plaintext telegram goes through the same framer (CRC) and parser.
        """
        if self.cipher_framer is not None:
            data = self._decrypt(data)
        out: list[Reading] = []
        for item in self.framer.feed(data):
            if isinstance(item, FrameError):
                self.stats.count_frame_error(item)
                continue
            try:
                telegram = parse_telegram(item, self.parse_config)
            except FrameError as e:
                self.stats.count_frame_error(e)
                continue
            reading = telegram_to_reading(
                telegram, meter_id=self.meter_id, received_s=received_s, clock=self.clock,
                source=self.source_name, extra_flags=self.extra_flags, mbus_policy=self.mbus_policy)
            self._count_warnings(reading.warnings)
            out.append(reading)
        self.stats.garbage_bytes = self.framer.garbage_bytes + (
            self.cipher_framer.garbage_bytes if self.cipher_framer is not None else 0)
        return out

    def _decrypt(self, data: bytes) -> bytes:
        """Ciphered frames in ``data`` -> their plaintext telegrams, concatenated."""
        assert self.cipher_framer is not None and self.keys is not None
        plaintext = bytearray()
        for item in self.cipher_framer.feed(data):
            try:
                if isinstance(item, FrameError):
                    raise item
                plaintext += decrypt_frame(item, self.keys)
            except FrameError as e:
                self.stats.count_frame_error(e)
                if self.stats.decryption_errors == 1 and isinstance(e, DecryptionError):
                    LOGGER.error("%s: cannot decrypt the P1 frames (%s); check encryption_key "
                                 "and authentication_key", self.meter_id, e)
        return bytes(plaintext)

    def _count_warnings(self, warnings: tuple[str, ...]) -> None:
        """Count dropped objects; log each distinct reason once at WARNING (a meter repeats it)."""
        self.stats.count_dropped_objects(warnings)
        for warning in warnings:
            if warning not in self._warned and len(self._warned) < 256:
                self._warned.add(warning)
                LOGGER.warning("%s: object dropped, telegram kept: %s", self.meter_id, warning)
            else:
                LOGGER.debug("%s: object dropped, telegram kept: %s", self.meter_id, warning)
