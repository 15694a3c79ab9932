"""Fuzz: >= 10,000 random and mutated telegrams through framer + parser (no port, fast)."""

import random

from firmware_bridge.dsmr.crc import crc16_arc
from firmware_bridge.dsmr.source import DsmrConfig, DsmrSource
from firmware_bridge.dsmr.writer import encode_telegram

N_FRAMES = 12_000


def _is_still_valid(frame: bytes) -> bool:
    """A mutation that happens to leave a well-formed telegram with a matching CRC (~1/65536)."""
    end = frame.rfind(b"!")
    if end < 0 or frame.count(b"/") != 1 or not frame.startswith(b"/"):
        return False
    field = frame[end + 1 : end + 5]
    try:
        return int(field, 16) == crc16_arc(frame[: end + 1]) and frame.endswith(b"\r\n")
    except ValueError:
        return False


def _mutate(frame: bytes, rng: random.Random) -> bytes:
    has_crc = not frame.endswith(b"!\r\n")
    kind = rng.randrange(5 if has_crc else 4)
    b = bytearray(frame)
    if kind == 0:  # one byte changed (a CRC16 catches every burst <= 16 bits)
        i = rng.randrange(len(b) - 2)
        b[i] = (b[i] + rng.randrange(1, 256)) % 256
    elif kind == 1:  # truncated (the cable was pulled mid-telegram)
        b = b[: rng.randrange(1, len(b) - 3)]
    elif kind == 2:  # a byte dropped (UART overrun)
        del b[rng.randrange(1, len(b) - 2)]
    elif kind == 3:  # a burst of noise
        i = rng.randrange(1, len(b) - 8)
        b[i : i + 8] = bytes(rng.randrange(256) for _ in range(8))
    else:  # CRC field damaged
        end = b.rindex(b"!")
        b[end + 1 : end + 5] = b"%04X" % ((int(b[end + 1 : end + 5], 16) + rng.randrange(1, 65535)) % 65536)
    return bytes(b)


def test_fuzz_every_valid_frame_delivered_every_corrupt_frame_counted():
    rng = random.Random(20261122)
    source = DsmrSource(DsmrConfig(port="/dev/null", version="5"), meter_id="fuzz")
    stream = bytearray()
    expected_import_wh: list[float] = []
    n_corrupt = 0
    for i in range(N_FRAMES):
        import_wh = float(i * 1000 + rng.randrange(1000))
        frame = encode_telegram({"power_w": rng.uniform(-5000, 9000), "import_wh": import_wh},
                                ts_s=1.7e9 + i, version="5", phases=rng.choice((1, 3)),
                                gas_m3=rng.choice((None, 12.5)))
        if rng.random() < 0.5:
            bad = _mutate(frame, rng)
            while _is_still_valid(bad):
                bad = _mutate(frame, rng)
            stream += bad
            n_corrupt += 1
        else:
            stream += frame
            expected_import_wh.append(import_wh)
        if rng.random() < 0.2:  # line noise between telegrams, possibly with '/' and '!'
            stream += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    delivered = []
    pos = 0
    while pos < len(stream):  # random chunk sizes, as a UART delivers them
        step = rng.randrange(1, 2048)
        delivered.extend(source.feed(bytes(stream[pos : pos + step]), received_s=1.7e9))
        pos += step
    assert [r.import_wh for r in delivered] == expected_import_wh
    assert source.stats.frames_corrupt >= n_corrupt
    assert source.stats.frames_corrupt == (source.stats.framing_errors + source.stats.checksum_errors
                                           + source.stats.parse_errors)
    assert source.framer.buffered_bytes < 16384


def test_fuzz_random_bytes_and_unchecked_22_frames_never_crash():
    """DSMR 2.2 has no CRC: mutated frames may parse, but only ever as ParseError, never a crash."""
    rng = random.Random(7)
    source = DsmrSource(DsmrConfig(port="/dev/null", version="2.2"), meter_id="fuzz22")
    base = encode_telegram({"power_w": 500.0, "import_wh": 1e6}, ts_s=1.7e9, version="2.2", gas_m3=3.0)
    alphabet = b"/!()*.:-0123456789kWhVAm\r\n"
    for _ in range(2000):
        chunk = _mutate(base, rng) if rng.random() < 0.5 else bytes(
            rng.choice(alphabet) for _ in range(rng.randrange(1, 300)))
        for r in source.feed(chunk, received_s=1.7e9):
            assert r.meter_id == "fuzz22"
    assert source.stats.frames_corrupt > 0
