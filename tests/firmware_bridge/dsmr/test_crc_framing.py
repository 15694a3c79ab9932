import random

import pytest

from firmware_bridge.dsmr.crc import crc16_arc
from firmware_bridge.dsmr.framing import FramerConfig, TelegramFramer
from firmware_bridge.errors import ChecksumError, FramingError

from .telegrams import TELEGRAM_FLUVIUS, TELEGRAM_V4, TELEGRAM_V5, TELEGRAM_V22


def _bitwise_crc16_arc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_crc16_arc_check_value_and_table_matches_bitwise():
    assert crc16_arc(b"123456789") == 0xBB3D  # the catalogued CRC-16/ARC check value
    rng = random.Random(1)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        assert crc16_arc(data) == _bitwise_crc16_arc(data)


@pytest.mark.parametrize("telegram", [TELEGRAM_V5, TELEGRAM_V4, TELEGRAM_FLUVIUS])
def test_crc_field_covers_slash_to_bang(telegram):
    end = telegram.rindex(b"!")
    assert int(telegram[end + 1 : end + 5], 16) == crc16_arc(telegram[: end + 1])


def test_garbage_then_telegram_in_byte_chunks_resyncs():
    framer = TelegramFramer(FramerConfig(crc="required"))
    stream = b"\x00\xffnoise!1234\r\n" + TELEGRAM_V5 + b"xx" + TELEGRAM_V4
    out = []
    for i in range(0, len(stream), 7):
        out.extend(framer.feed(stream[i : i + 7]))
    assert out == [TELEGRAM_V5, TELEGRAM_V4]
    assert framer.garbage_bytes == len(b"\x00\xffnoise!1234\r\n") + 2


def test_truncated_telegram_is_a_framing_error_and_next_one_survives():
    framer = TelegramFramer(FramerConfig(crc="required"))
    out = list(framer.feed(TELEGRAM_V5[:300] + TELEGRAM_FLUVIUS))
    assert isinstance(out[0], FramingError)
    assert out[1] == TELEGRAM_FLUVIUS


def test_flipped_byte_is_a_checksum_error():
    bad = bytearray(TELEGRAM_V5)
    bad[100] ^= 0x01
    out = list(TelegramFramer(FramerConfig(crc="required")).feed(bytes(bad)))
    assert len(out) == 1 and isinstance(out[0], ChecksumError)


def test_crc_required_rejects_missing_crc_but_22_mode_accepts():
    assert isinstance(next(TelegramFramer(FramerConfig(crc="required")).feed(TELEGRAM_V22)),
                      ChecksumError)
    assert next(TelegramFramer(FramerConfig(crc="none")).feed(TELEGRAM_V22)) == TELEGRAM_V22


def test_buffer_is_bounded_without_bang():
    framer = TelegramFramer(FramerConfig(crc="required", max_telegram_bytes=1024))
    errors = []
    for _ in range(100):
        errors.extend(framer.feed(b"/" + b"A" * 500))
        assert framer.buffered_bytes <= 1024 + 501
    assert errors and all(isinstance(e, FramingError) for e in errors)
    tail = list(framer.feed(TELEGRAM_V5))  # the partial "/AAA" before it is reported first
    assert tail[-1] == TELEGRAM_V5 and all(isinstance(e, FramingError) for e in tail[:-1])


def test_broken_trailer_does_not_swallow_next_header():
    framer = TelegramFramer(FramerConfig(crc="required"))
    out = list(framer.feed(b"/abc!" + TELEGRAM_V5))
    assert out[-1] == TELEGRAM_V5
    assert all(isinstance(e, FramingError) for e in out[:-1])


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        FramerConfig(crc="sometimes")
