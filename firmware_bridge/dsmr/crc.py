"""CRC16/ARC (poly 0x8005 reflected = 0xA001, init 0, no final xor), as DSMR 4/5 use it.

The CRC covers the telegram from the leading ``/`` up to and including the ``!``.
"""

from __future__ import annotations


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_arc(data: bytes | bytearray | memoryview) -> int:
    """CRC16/ARC of ``data`` (check value: crc16_arc(b"123456789") == 0xBB3D)."""
    crc = 0
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc
