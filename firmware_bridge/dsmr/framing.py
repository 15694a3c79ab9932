"""Cut a P1 byte stream into telegrams: ``/`` header ... ``!`` [CRC: 1..4 hex digits] CRLF.

The framer keeps a bounded buffer, skips garbage before a ``/`` (counted), treats a ``/`` before the
closing ``!`` as the start of a new telegram (the previous one was truncated: FramingError), and
verifies the CRC16/ARC. ``feed()`` yields each complete telegram as bytes, or the FrameError that
rejected it, so the caller can count every loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from firmware_bridge.dsmr.crc import crc16_arc
from firmware_bridge.errors import ChecksumError, FrameError, FramingError

_HEX = frozenset(b"0123456789abcdefABCDEF")
_MAX_TRAILER = 8  # "!" + 4 hex + CR LF (+ slack for stray spaces)


@dataclass
class FramerConfig:
    """``crc``: "required" (DSMR 4/5), "none" (DSMR 2.2: no CRC field) or "auto" (check if present)."""

    crc: str = "auto"
    max_telegram_bytes: int = 16384  # a DSMR 5 telegram with 4 M-Bus channels is ~2 kB

    def __post_init__(self) -> None:
        if self.crc not in ("required", "none", "auto"):
            raise ValueError(f"FramerConfig.crc must be required|none|auto, got {self.crc!r}")
        if self.max_telegram_bytes < 64:
            raise ValueError("FramerConfig.max_telegram_bytes must be >= 64")


class TelegramFramer:
    def __init__(self, config: FramerConfig | None = None) -> None:
        self.config = config or FramerConfig()
        self._buf = bytearray()
        self.garbage_bytes = 0

    def reset(self) -> None:
        """Forget a partial telegram (after a reconnect)."""
        self._buf.clear()

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[bytes | FrameError]:
        self._buf += data
        while True:
            item = self._next()
            if item is None:
                return
            yield item

    def _skip_to_start(self) -> bool:
        buf = self._buf
        start = buf.find(b"/")
        if start < 0:
            self.garbage_bytes += len(buf)
            buf.clear()
            return False
        if start:
            self.garbage_bytes += start
            del buf[:start]
        return True

    def _next(self) -> bytes | FrameError | None:
        if not self._skip_to_start():
            return None
        buf = self._buf
        end = buf.find(b"!", 1)
        restart = buf.find(b"/", 1, end if end >= 0 else len(buf))
        if restart > 0:  # a new header before the end: the telegram was cut
            del buf[:restart]
            return FramingError(f"telegram truncated after {restart} bytes (new '/' before '!')")
        if end < 0:
            if len(buf) > self.config.max_telegram_bytes:
                size = len(buf)
                buf.clear()
                return FramingError(f"no '!' within {size} bytes (limit {self.config.max_telegram_bytes})")
            return None
        # The trailer is short ("!" CRC CRLF): only look that far, so that a broken trailer never
        # swallows the header of the next telegram.
        trailer_end = end + 1 + _MAX_TRAILER
        eol = buf.find(b"\n", end, trailer_end)
        slash = buf.find(b"/", end, eol if eol >= 0 else trailer_end)
        if slash > 0:
            del buf[:slash]
            return FramingError("new '/' inside the trailer after '!'")
        if eol < 0:
            if len(buf) >= trailer_end:
                del buf[: end + 1]
                return FramingError("no line end after '!'")
            return None
        telegram = bytes(buf[: eol + 1])
        del buf[: eol + 1]
        return self._check(telegram, end)

    def _check(self, telegram: bytes, end: int) -> bytes | FrameError:
        if end + 1 > self.config.max_telegram_bytes:
            return FramingError(f"telegram of {end + 1} bytes exceeds the limit")
        field = telegram[end + 1 :].strip(b"\r\n ")
        if not field:
            if self.config.crc == "required":
                return ChecksumError("CRC missing")
            return telegram
        # Some meters drop leading zeros ("!B9F" for 0x0B9F): 1..4 hex digits are one CRC value.
        if len(field) > 4 or not _HEX.issuperset(field):
            return FramingError(f"bad CRC field {field[:8]!r}")
        if self.config.crc == "none":
            return telegram
        expected = int(field, 16)
        actual = crc16_arc(telegram[: end + 1])
        if actual != expected:
            return ChecksumError(f"CRC {actual:04X} != {expected:04X}")
        return telegram
