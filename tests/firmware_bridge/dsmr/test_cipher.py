"""Encrypted P1: real plaintext telegrams (LU Smarty, AT Sagemcom T210-D-R) encrypted with a test key.

The frames are built three ways: by the product's meter side (``encrypt_telegram``), by
dlms_cosem (an independent DLMS implementation, installed with dsmr_parser), and read back by
dsmr_parser's own decryption, so the frame format is checked against two other implementations.
"""

from __future__ import annotations

import logging
import random

import pytest
from dlms_cosem.protocol.xdlms import GeneralGlobalCipher
from dlms_cosem.security import SecurityControlField, encrypt
from dsmr_parser import telegram_specifications
from dsmr_parser.parsers import TelegramParser

from firmware_bridge.dsmr.cipher import (
    SMARTY_AUTHENTICATION_KEY,
    CipherFramer,
    CipherKeys,
    decrypt_frame,
    encrypt_telegram,
    split_frame,
)
from firmware_bridge.dsmr.source import DsmrConfig, DsmrSource
from firmware_bridge.dsmr.virtual_meter import VirtualDsmrMeter
from firmware_bridge.errors import ConfigError, DecryptionError
from tests.firmware_bridge._streams import fast_backoff, take_readings

from .corpus import CORPUS_DIR

EK = "000102030405060708090A0B0C0D0E0F"  # test keys, not any meter's
AK_SAGEMCOM = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
SYSTEM_TITLE = b"SAG\x00\x12\x34\x56\x78"
SMARTY = (CORPUS_DIR / "dsmrreader-luxembourg-smarty.p1").read_bytes()
SAGEMCOM = (CORPUS_DIR / "dsmrparser-telegram-sagemcom-t210-d-r.p1").read_bytes()
SMARTY_KEYS = CipherKeys.from_hex(EK, SMARTY_AUTHENTICATION_KEY)
SAGEMCOM_KEYS = CipherKeys.from_hex(EK, AK_SAGEMCOM)


def _plain_reading(data: bytes, version: str = "5"):
    (reading,) = DsmrSource(DsmrConfig(port="-", version=version)).feed(data, 1.7e9)
    return reading


def _frame(data: bytes, keys: CipherKeys = SMARTY_KEYS, counter: int = 1, sc: int = 0x30) -> bytes:
    return encrypt_telegram(data, keys, system_title=SYSTEM_TITLE, invocation_counter=counter,
                            security_control=sc)


@pytest.mark.parametrize(("plaintext", "version", "keys", "ak"), [
    (SMARTY, "smarty", SMARTY_KEYS, None),  # Smarty: the public authentication key by default
    (SAGEMCOM, "sagemcom-t210", SAGEMCOM_KEYS, AK_SAGEMCOM),
])
def test_an_encrypted_real_telegram_gives_the_plaintext_reading(plaintext, version, keys, ak):
    source = DsmrSource(DsmrConfig(port="-", version=version, encryption_key=EK,
                                   authentication_key=ak))
    readings = source.feed(_frame(plaintext, keys), 1.7e9)
    assert readings == [_plain_reading(plaintext)]
    assert readings[0].power_w is not None and source.stats.frames_corrupt == 0


def test_frames_built_by_dlms_cosem_are_read():
    """An independent DLMS implementation writes the frame (as dsmr_parser's own tests do)."""
    sc = SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
    counter = 0x10000001
    ciphered = encrypt(security_control=sc, system_title=SYSTEM_TITLE, invocation_counter=counter,
                       key=bytes.fromhex(EK), auth_key=bytes.fromhex(AK_SAGEMCOM),
                       plain_text=SAGEMCOM)
    body = sc.to_bytes() + counter.to_bytes(4, "big") + ciphered
    frame = (bytes([GeneralGlobalCipher.TAG, len(SYSTEM_TITLE)]) + SYSTEM_TITLE + b"\x82"
             + len(body).to_bytes(2, "big") + body)
    assert decrypt_frame(frame, SAGEMCOM_KEYS) == SAGEMCOM
    assert frame == _frame(SAGEMCOM, SAGEMCOM_KEYS, counter)  # byte for byte the same frame


def test_dsmr_parser_decrypts_the_products_frames():
    """The oracle opens our frame with its own code and reads the same values."""
    parser = TelegramParser(telegram_specifications.SAGEMCOM_T210_D_R)
    frame = _frame(SAGEMCOM, SAGEMCOM_KEYS, counter=7)
    logging.disable(logging.ERROR)
    try:
        telegram = parser.parse(frame.hex(), EK, AK_SAGEMCOM)
    finally:
        logging.disable(logging.NOTSET)
    reading = _plain_reading(SAGEMCOM)
    assert float(telegram.CURRENT_ELECTRICITY_USAGE.value) == reading.power_w  # 286 W
    assert float(telegram.ELECTRICITY_IMPORTED_TOTAL.value) == reading.import_wh
    assert float(telegram.ELECTRICITY_REACTIVE_EXPORTED_TOTAL.value) == reading.reactive_export_varh


def test_wrong_key_and_tampered_frames_are_counted_not_read(caplog):
    source = DsmrSource(DsmrConfig(port="-", version="smarty", encryption_key=EK))
    wrong = CipherKeys.from_hex("F" * 32, SMARTY_AUTHENTICATION_KEY)
    good = _frame(SMARTY, counter=3)
    tampered_tag = good[:-1] + bytes([good[-1] ^ 0x01])
    tampered_text = bytearray(good)
    tampered_text[40] ^= 0x80
    with caplog.at_level(logging.ERROR):
        readings = source.feed(_frame(SMARTY, wrong) + tampered_tag + bytes(tampered_text) + good,
                               1.7e9)
    assert len(readings) == 1  # only the good frame
    assert source.stats.decryption_errors == 3 and source.stats.frames_corrupt == 3
    assert "tag does not match" in source.stats.last_error
    assert sum("check encryption_key" in r.message for r in caplog.records) == 1  # logged once
    with pytest.raises(DecryptionError, match="tag does not match"):
        decrypt_frame(tampered_tag, SMARTY_KEYS)


def test_without_the_authentication_key_the_crc_still_guards():
    keys = CipherKeys.from_hex(EK, None)
    assert decrypt_frame(_frame(SMARTY), keys) == SMARTY  # keystream only, tag not checked
    with pytest.raises(DecryptionError, match="wrong encryption key"):
        decrypt_frame(_frame(SMARTY), CipherKeys.from_hex("1" * 32, None))
    source = DsmrSource(DsmrConfig(port="-", version="smarty", encryption_key=EK,
                                   authentication_key=""))
    frame = bytearray(_frame(SMARTY))
    frame[-30] ^= 0x01  # a flipped bit in the telegram text: the telegram's CRC catches it
    assert source.feed(bytes(frame), 1.7e9) == [] and source.stats.checksum_errors == 1


def test_encrypted_only_and_authenticated_only_frames():
    assert decrypt_frame(_frame(SMARTY, sc=0x20), SMARTY_KEYS) == SMARTY
    auth_only = _frame(SMARTY, sc=0x10)
    assert SMARTY in auth_only and decrypt_frame(auth_only, SMARTY_KEYS) == SMARTY
    with pytest.raises(DecryptionError):
        decrypt_frame(auth_only[:-1] + bytes([auth_only[-1] ^ 1]), SMARTY_KEYS)
    with pytest.raises(DecryptionError, match="suite"):
        decrypt_frame(_frame(SMARTY, sc=0x31), SMARTY_KEYS)


def test_frames_in_a_noisy_stream_cut_anywhere_are_all_delivered():
    rng = random.Random(5)
    stream, n = bytearray(), 40
    for i in range(n):
        stream += bytes(rng.randrange(256) for _ in range(rng.randrange(0, 30)))  # line noise
        stream += _frame(SMARTY, counter=i + 1)
    framer, frames, pos = CipherFramer(), [], 0
    while pos < len(stream):
        step = rng.randrange(1, 300)
        frames += [f for f in framer.feed(bytes(stream[pos:pos + step])) if isinstance(f, bytes)]
        pos += step
    opened = [decrypt_frame(f, SMARTY_KEYS) for f in frames if split_frame(f).system_title
              == SYSTEM_TITLE and _safe(f)]
    assert opened.count(SMARTY) == n
    assert framer.buffered_bytes < 16384


def _safe(frame: bytes) -> bool:
    try:
        decrypt_frame(frame, SMARTY_KEYS)
        return True
    except DecryptionError:
        return False  # noise that happened to start with 0xDB 0x08


def test_keys_are_checked_at_configuration_and_never_shown():
    with pytest.raises(ConfigError, match="encryption_key"):
        DsmrConfig(port="-", version="smarty")
    with pytest.raises(ConfigError, match="32 hex digits"):
        DsmrConfig(port="-", version="smarty", encryption_key="00112233")
    with pytest.raises(ConfigError, match="hex"):
        DsmrConfig(port="-", version="sagemcom-t210", encryption_key="zz" * 16)
    config = DsmrConfig(port="-", version="smarty", encryption_key=EK)
    assert EK not in repr(config) and EK.lower() not in repr(config.cipher_keys).lower()


async def test_encrypted_meter_over_a_pty():
    """The virtual meter encrypts each telegram; the real reader decrypts through pyserial."""
    async with VirtualDsmrMeter(lambda ts: {"power_w": 1234.0, "voltage_v": 230.0},
                                version="smarty", interval_s=0.05,
                                cipher_keys=SMARTY_KEYS) as meter:
        source = DsmrSource(DsmrConfig(port=meter.port, version="smarty", encryption_key=EK,
                                       read_timeout_s=2.0, serial=meter.serial_settings),
                            meter_id="lu", backoff=fast_backoff())
        readings = await take_readings(source, 3)
    assert [r.power_w for r in readings] == [1234.0] * 3
    assert source.stats.decryption_errors == 0
