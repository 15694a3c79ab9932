"""Serial transport: open a port with asyncio streams (pyserial-asyncio-fast), line settings as data."""

from __future__ import annotations

import asyncio
import logging
import os
import termios
from dataclasses import dataclass

from firmware_bridge.errors import ConfigError, MissingDependencyError, TransientConnectionError

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SerialSettings:
    baudrate: int
    bytesize: int
    parity: str  # "N", "E", "O"
    stopbits: int = 1

    def __post_init__(self) -> None:
        if self.bytesize not in (5, 6, 7, 8) or self.parity not in ("N", "E", "O"):
            raise ConfigError(f"bad serial settings {self}")

    def describe(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


# P1 line settings per DSMR version (Fluvius e-MUCS follows DSMR 5).
DSMR_SERIAL_SETTINGS: dict[str, SerialSettings] = {
    "2.2": SerialSettings(9600, 7, "E", 1),
    "3": SerialSettings(9600, 7, "E", 1),  # DSMR 3.0: as 2.2, no CRC
    "4": SerialSettings(115200, 7, "E", 1),
    "5": SerialSettings(115200, 8, "N", 1),
    "fluvius": SerialSettings(115200, 8, "N", 1),
    "smarty": SerialSettings(115200, 8, "N", 1),  # LU, encrypted (Luxmetering P1 spec 1.1.3)
    "sagemcom-t210": SerialSettings(115200, 8, "N", 1),  # AT Sagemcom T210-D-R, encrypted
}


def is_pty(port: str) -> bool:
    """A pseudo-terminal (a simulated meter) rather than a UART."""
    return os.path.realpath(port).startswith("/dev/pts/")


def pty_equivalent(settings: SerialSettings) -> SerialSettings:
    """Line settings a Linux pty accepts for a meter wired as ``settings``.

    Linux ptys only do 8 data bits without parity (tcsetattr fails with EINVAL otherwise). P1 data
    is 7-bit ASCII, so a 7E1 line and 8N1 deliver the same bytes once a UART has checked and
    stripped the parity bit; the simulated meters and their tests use this equivalent.
    """
    return SerialSettings(settings.baudrate, 8, "N", settings.stopbits)


async def open_serial(
    port: str, settings: SerialSettings, *, limit: int = 65536
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open ``port``; an absent or busy device raises TransientConnectionError (retry later)."""
    try:
        import serial
        import serial_asyncio_fast
    except ImportError as e:
        raise MissingDependencyError(
            "serial meters need pyserial and pyserial-asyncio-fast: pip install 'unimeter[edge]'"
        ) from e
    try:
        return await serial_asyncio_fast.open_serial_connection(
            url=port, baudrate=settings.baudrate, bytesize=settings.bytesize,
            parity=settings.parity, stopbits=settings.stopbits, limit=limit,
        )
    except termios.error as e:  # e.g. a Linux pty rejects parity (PARENB) with EINVAL
        if is_pty(port) and settings != pty_equivalent(settings):
            LOGGER.info("%s is a pty: opening it %s instead of %s", port,
                        pty_equivalent(settings).describe(), settings.describe())
            return await open_serial(port, pty_equivalent(settings), limit=limit)
        raise ConfigError(
            f"{port} does not support {settings.describe()}: {e}. A simulated meter (pty) needs "
            "its pty_serial_settings (same bytes, no parity bit)") from e
    except (OSError, serial.SerialException) as e:
        raise TransientConnectionError(f"cannot open {port} ({settings.describe()}): {e}") from e
