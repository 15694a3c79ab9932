"""Encrypted P1 (Luxembourg Smarty, Austrian Sagemcom T210-D-R): DLMS general-glo-ciphering frames.

These meters send each plaintext telegram ("/" .. "!CRC") inside one DLMS/COSEM APDU
``general-glo-ciphering`` (DLMS Green Book, 9.3.3; Luxmetering E-Meter P1 Specification 1.1.3,
3.2.5), raw bytes on the serial line:

    0xDB | 0x08 | system title (8) | length (A-XDR) | SC (1) | invocation counter (4) | ciphertext | tag (12)

``length`` counts SC .. tag. SC is the security control byte: bit 5 encrypted, bit 4 authenticated,
low nibble the security suite (0 = AES-128-GCM). The GCM IV is system title || invocation
counter (12 bytes); the associated data is SC || authentication key; the tag is truncated to 12
bytes. Smarty meters all use the public authentication key ``SMARTY_AUTHENTICATION_KEY``; the
encryption key comes from the grid operator. AES-GCM is the ``cryptography`` package's.

``CipherFramer`` cuts such frames out of a byte stream (resynchronising on garbage, bounded),
``decrypt_frame`` opens one, ``encrypt_telegram`` builds one (the meter side: tests, the virtual
meter and the benchmark).
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field

from firmware_bridge.errors import ConfigError, DecryptionError, FrameError, FramingError

GENERAL_GLO_CIPHERING = 0xDB
SYSTEM_TITLE_BYTES = 8
TAG_BYTES = 12
SC_AUTHENTICATED = 0x10
SC_ENCRYPTED = 0x20
# Luxmetering E-Meter P1 Specification 1.1.3, 3.2.5: the same for every Smarty meter.
SMARTY_AUTHENTICATION_KEY = "00112233445566778899AABBCCDDEEFF"
_HEADER_MIN = 2 + SYSTEM_TITLE_BYTES + 1


def parse_key(text: str, what: str) -> bytes:
    """A 128-bit key written as 32 hex digits (spaces and colons allowed) -> 16 bytes."""
    cleaned = text.replace(" ", "").replace(":", "")
    try:
        key = binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError) as e:
        raise ConfigError(f"{what} must be 32 hex digits") from e
    if len(key) != 16:
        raise ConfigError(f"{what} must be 16 bytes (32 hex digits), got {len(key)} bytes")
    return key


@dataclass(frozen=True)
class CipherKeys:
    """The user's keys. ``authentication_key`` None: the tag is not checked (the CTR part of GCM
    is decrypted alone) and integrity rests on the telegram's CRC; for meters whose
    authentication key is not known."""

    encryption_key: bytes = field(repr=False)
    authentication_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_hex(cls, encryption_key: str, authentication_key: str | None) -> CipherKeys:
        ak = None if authentication_key in (None, "") else parse_key(authentication_key,
                                                                       "authentication_key")
        return cls(parse_key(encryption_key, "encryption_key"), ak)


@dataclass(frozen=True)
class CipheredFrame:
    system_title: bytes
    security_control: int
    invocation_counter: int
    ciphertext: bytes  # without the tag
    tag: bytes  # empty when the frame is not authenticated


def _length(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """A-XDR length at ``pos`` -> (length, bytes used); None if incomplete. Raises on a bad form."""
    if pos >= len(buf):
        return None
    first = buf[pos]
    if first < 0x80:
        return first, 1
    n = first & 0x7F
    if n == 0 or n > 2:
        raise FramingError(f"unsupported A-XDR length form 0x{first:02X}")
    if pos + 1 + n > len(buf):
        return None
    return int.from_bytes(buf[pos + 1 : pos + 1 + n], "big"), 1 + n


def split_frame(frame: bytes) -> CipheredFrame:
    """One complete general-glo-ciphering APDU -> its parts (FramingError if it is not one)."""
    if len(frame) < _HEADER_MIN or frame[0] != GENERAL_GLO_CIPHERING:
        raise FramingError("not a general-glo-ciphering frame (tag 0xDB)")
    if frame[1] != SYSTEM_TITLE_BYTES:
        raise FramingError(f"system title of {frame[1]} bytes (expected 8)")
    title = frame[2 : 2 + SYSTEM_TITLE_BYTES]
    parsed = _length(frame, 2 + SYSTEM_TITLE_BYTES)
    if parsed is None:
        raise FramingError("frame ends inside its length field")
    length, used = parsed
    body = frame[2 + SYSTEM_TITLE_BYTES + used :]
    if len(body) != length or length < 5:
        raise FramingError(f"frame length field says {length} bytes, {len(body)} follow")
    sc = body[0]
    tag_bytes = TAG_BYTES if sc & SC_AUTHENTICATED else 0
    if length < 5 + tag_bytes:
        raise FramingError("frame too short for its tag")
    end = len(body) - tag_bytes
    return CipheredFrame(title, sc, int.from_bytes(body[1:5], "big"), body[5:end], body[end:])


def _cipher(key: bytes, mode):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    return Cipher(algorithms.AES(key), mode)


def _check_tag(keys: CipherKeys, iv: bytes, parts: CipheredFrame, aad: bytes) -> bytes:
    """GCM-decrypt ``parts.ciphertext`` with ``aad``, verifying the 12-byte tag."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import modes

    decryptor = _cipher(keys.encryption_key,
                        modes.GCM(iv, parts.tag, min_tag_length=TAG_BYTES)).decryptor()
    decryptor.authenticate_additional_data(aad)
    try:
        return decryptor.update(parts.ciphertext) + decryptor.finalize()
    except InvalidTag as e:
        raise DecryptionError("GCM tag does not match: wrong encryption or authentication key, "
                              "or a damaged frame") from e


def decrypt_frame(frame: bytes, keys: CipherKeys) -> bytes:
    """The plaintext telegram of one frame. DecryptionError: wrong key, tampered frame or tag."""
    from cryptography.hazmat.primitives.ciphers import modes

    parts = split_frame(frame)
    sc = parts.security_control
    if sc & 0x0F != 0:
        raise DecryptionError(f"security suite {sc & 0x0F} not supported (0 is)")
    iv = parts.system_title + parts.invocation_counter.to_bytes(4, "big")
    checked = bool(parts.tag) and keys.authentication_key is not None
    if not sc & SC_ENCRYPTED:  # authenticated only: the telegram travels in clear
        if checked:
            _check_tag(keys, iv, CipheredFrame(parts.system_title, sc, parts.invocation_counter,
                                               b"", parts.tag),
                       bytes([sc]) + keys.authentication_key + parts.ciphertext)
        return parts.ciphertext
    if checked:
        return _check_tag(keys, iv, parts, bytes([sc]) + keys.authentication_key)
    # GCM's keystream without the tag check: AES-CTR from inc32(J0) = IV || 00000002
    decryptor = _cipher(keys.encryption_key, modes.CTR(iv + b"\x00\x00\x00\x02")).decryptor()
    plaintext = decryptor.update(parts.ciphertext) + decryptor.finalize()
    if not plaintext.startswith(b"/"):
        raise DecryptionError("decrypted data is not a telegram: wrong encryption key?")
    return plaintext


def encrypt_telegram(plaintext: bytes, keys: CipherKeys, *, system_title: bytes,
                     invocation_counter: int, security_control: int = 0x30) -> bytes:
    """Build the frame a meter sends for ``plaintext`` (the meter side; tests, virtual meter)."""
    from cryptography.hazmat.primitives.ciphers import modes

    if len(system_title) != SYSTEM_TITLE_BYTES:
        raise ValueError("system_title must be 8 bytes")
    iv = system_title + invocation_counter.to_bytes(4, "big")
    encryptor = _cipher(keys.encryption_key, modes.GCM(iv, min_tag_length=TAG_BYTES)).encryptor()
    encrypted = bool(security_control & SC_ENCRYPTED)
    if security_control & SC_AUTHENTICATED:
        if keys.authentication_key is None:
            raise ValueError("an authenticated frame needs the authentication key")
        aad = bytes([security_control]) + keys.authentication_key
        encryptor.authenticate_additional_data(aad if encrypted else aad + plaintext)
    ciphertext = encryptor.update(plaintext if encrypted else b"") + encryptor.finalize()
    ciphertext = ciphertext if encrypted else plaintext
    tag = encryptor.tag[:TAG_BYTES] if security_control & SC_AUTHENTICATED else b""
    body = bytes([security_control]) + invocation_counter.to_bytes(4, "big") + ciphertext + tag
    if len(body) < 0x80:
        length = bytes([len(body)])
    elif len(body) < 0x100:
        length = bytes([0x81, len(body)])
    else:
        length = bytes([0x82]) + len(body).to_bytes(2, "big")
    return bytes([GENERAL_GLO_CIPHERING, SYSTEM_TITLE_BYTES]) + system_title + length + body


class CipherFramer:
    """Cut general-glo-ciphering frames out of a byte stream.

    Bytes before a 0xDB 0x08 start are garbage (counted in ``garbage_bytes``); a start whose
    length field is malformed or exceeds ``max_frame_bytes`` is skipped one byte on (resync).
    ``feed`` yields each complete frame, or the FrameError that rejected one.
    """

    def __init__(self, max_frame_bytes: int = 16384) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self.garbage_bytes = 0

    def reset(self) -> None:
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

    def _next(self) -> bytes | FrameError | None:
        buf = self._buf
        start = buf.find(bytes([GENERAL_GLO_CIPHERING, SYSTEM_TITLE_BYTES]))
        if start < 0:
            keep = 1 if buf[-1:] == bytes([GENERAL_GLO_CIPHERING]) else 0
            self.garbage_bytes += len(buf) - keep
            del buf[: len(buf) - keep]
            return None
        self.garbage_bytes += start
        del buf[:start]
        try:
            parsed = _length(buf, 2 + SYSTEM_TITLE_BYTES)
        except FramingError as e:
            del buf[:1]
            self.garbage_bytes += 1
            return e
        if parsed is None:
            return None
        length, used = parsed
        total = 2 + SYSTEM_TITLE_BYTES + used + length
        if total > self.max_frame_bytes:
            del buf[:1]
            self.garbage_bytes += 1
            return FramingError(f"ciphered frame of {total} bytes exceeds the limit")
        if len(buf) < total:
            return None
        frame = bytes(buf[:total])
        del buf[:total]
        return frame
