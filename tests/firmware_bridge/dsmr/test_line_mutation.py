"""Property: one mutated line never costs the other lines' values, and nothing crashes.

Hypothesis takes a valid corpus telegram, replaces ONE body line (random text, or the line with
characters changed, dropped or inserted, or another line's OBIS code), and, as the meter would,
writes a matching CRC. Then:

* the parser returns a Telegram or raises ParseError, nothing else; ParseError only when the
  mutated line was the telegram's only core register or contradicts the other one;
* every object read from the other lines is read with the same value, or, when the mutated line
  claims the same OBIS code with a different value, dropped as conflicting (never wrong);
* the Reading is built without error and holds only finite numbers.

Lines never get "/" or "!": those delimit the frame (a "/" starts a new telegram, by design).
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.dsmr.crc import crc16_arc
from firmware_bridge.dsmr.mapping import telegram_to_reading
from firmware_bridge.dsmr.parser import CORE_VALUES, Telegram, parse_telegram
from firmware_bridge.errors import ParseError

from .corpus import load_corpus

_BASES = load_corpus()
_ALPHABET = st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="/!")


def _split(data: bytes) -> tuple[list[str], str]:
    """(lines from the header to the last body line, the '!' trailer without its CRC)."""
    text = data.decode("latin-1").replace("\r", "")
    end = text.rindex("!")
    return text[:end].split("\n"), text[end:end + 1]


def _join(lines: list[str], has_crc: bool) -> bytes:
    body = "\r\n".join(line for line in lines).encode("latin-1")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    body += b"!"
    return body + (b"%04X\r\n" % crc16_arc(body) if has_crc else b"\r\n")


@st.composite
def mutated_telegrams(draw):
    base = draw(st.sampled_from(_BASES))
    lines, _ = _split(base.data)
    if base.data.count(b"\n/"):
        lines = lines[[i for i, ln in enumerate(lines) if ln.startswith("/")][-1]:]
    body_idx = [i for i, ln in enumerate(lines) if i > 0 and ln.strip()]
    i = draw(st.sampled_from(body_idx))
    line = lines[i]
    how = draw(st.sampled_from(["random", "replace", "delete", "insert", "obis", "empty"]))
    if how == "random":
        new = draw(st.text(_ALPHABET, max_size=80))
    elif how == "empty":
        new = ""
    elif how == "obis":  # the line takes another line's OBIS code, keeping its own value
        other = draw(st.sampled_from(body_idx))
        code, _, _ = lines[other].partition("(")
        new = code + line[line.find("("):] if "(" in line else code
    else:
        pos = draw(st.integers(0, max(len(line) - 1, 0)))
        text = draw(st.text(_ALPHABET, min_size=1, max_size=6))
        if how == "replace":
            new = line[:pos] + text + line[pos + len(text):]
        elif how == "delete":
            new = line[:pos] + line[pos + len(text):]
        else:
            new = line[:pos] + text + line[pos:]
    has_crc = not base.data.rstrip().endswith(b"!")
    original = _join(lines, has_crc)
    removed = _join(lines[:i] + lines[i + 1:], has_crc)
    mutated = _join(lines[:i] + [new] + lines[i + 1:], has_crc)
    return base.name, line, new, original, removed, mutated


def _objects(tg: Telegram) -> dict:
    """Everything the parser read, keyed so that each key comes from one OBIS line."""
    out = {f"value:{k}": v for k, v in tg.values.items()}
    if tg.timestamp is not None:
        out["clock"] = tg.timestamp
    if tg.max_demand_time is not None:
        out["max_demand_time"] = tg.max_demand_time
    if tg.failure_log:
        out["failure_log"] = tuple(tg.failure_log)
    for ch, rec in tg.mbus.items():  # only the parts some line actually set
        if rec.device_type_code is not None:
            out[f"mbus{ch}:type"] = rec.device_type_code
        if rec.equipment_id:
            out[f"mbus{ch}:id"] = rec.equipment_id
        if rec.value is not None or rec.capture is not None:
            out[f"mbus{ch}:reading"] = (rec.value, rec.unit, rec.capture)
    return out


def _conflicting(tg: Telegram) -> bool:
    return any("conflicting" in w for w in tg.warnings)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_telegrams())
def test_one_mutated_line_never_costs_the_other_lines(case):
    name, old_line, new_line, original, removed, mutated = case
    try:
        without = parse_telegram(removed)
    except ParseError:
        without = None  # the removed line was the only core register
    try:
        tg = parse_telegram(mutated)
    except ParseError as e:
        only_core = without is None or not any(k in without.values for k in CORE_VALUES) and not any(
            r.value is not None and r.unit for r in without.mbus.values())
        # allowed: the mutated line was the only core register, or it contradicts the other one
        assert only_core or "conflicting" in str(e), (
            f"{name}: {old_line!r} -> {new_line!r} dropped the telegram: {e}")
        return
    if without is None:
        return
    got = _objects(tg)
    for key, value in _objects(without).items():
        if key.endswith(":reading") and old_line.startswith("(") and got.get(key) != value:
            continue  # the mutated line was this DSMR 2.2 reading's own value line
        assert got.get(key) == value or _conflicting(tg), (
            f"{name}: {old_line!r} -> {new_line!r} changed {key}: {value!r} -> {got.get(key)!r}")
    reading = telegram_to_reading(tg, meter_id="m", received_s=1.7e9)
    for field in ("power_w", "import_wh", "export_wh", "voltage_v", "current_a", "reactive_var"):
        value = getattr(reading, field)
        assert value is None or math.isfinite(value)
