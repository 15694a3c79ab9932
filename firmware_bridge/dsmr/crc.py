"""CRC16/ARC (poly 0x8005 reflected = 0xA001, init 0, no final xor), as DSMR 4/5 use it.

The CRC covers the telegram from the leading ``/`` up to and including the ``!``. Pure Python,
16 bits per step: for a 16-bit reflected CRC the whole register is replaced by the XOR of the
register with the next little-endian data word, so ``crc = T16[crc ^ word]`` where T16 is the
CRC of two zero-state byte steps. This halves the interpreter loop versus the byte table.
"""

from __future__ import annotations

import array
import functools
import sys


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


@functools.cache
def _table16() -> array.array:
    """Built on first use (~65k entries, some tens of ms) rather than at import."""
    t8 = _TABLE
    out = array.array("H", bytes(2 * 65536))
    for x in range(65536):
        c1 = (x >> 8) ^ t8[x & 0xFF]
        out[x] = (c1 >> 8) ^ t8[c1 & 0xFF]
    return out


def crc16_arc_bytewise(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def crc16_arc(data: bytes | bytearray | memoryview) -> int:
    """CRC16/ARC of ``data`` (check value: crc16_arc(b"123456789") == 0xBB3D)."""
    data = bytes(data)
    even = len(data) & ~1
    words = array.array("H", data[:even])
    if sys.byteorder == "big":
        words.byteswap()
    crc = 0
    table = _table16()
    for word in words:
        crc = table[crc ^ word]
    return crc16_arc_bytewise(data[even:], crc)
