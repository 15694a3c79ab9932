"""Register maps as data: Eastron SDM120 (1-phase) and SDM630 (3-phase) input registers.

Each value is an IEEE 754 float32 in two input registers (function 04), high word first. Addresses
are the 0-based protocol addresses (the datasheet's 30001 = 0x0000). ``target`` names a Reading
field, a phase value (``power_l2_w``: ``Reading.phases``) or an ``extra`` key (units in the name);
``scale`` converts to SI (kWh -> Wh).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

READING_FIELDS = ("power_w", "reactive_var", "import_wh", "export_wh", "voltage_v", "current_a")
# PhaseValues field -> register target of phase n (``Reading.phases``, not ``extra``)
PHASE_FIELDS = {"power_w": "power_l{n}_w", "voltage_v": "voltage_l{n}_v", "current_a": "current_l{n}_a"}
PHASE_TARGETS = frozenset(t.format(n=n) for t in PHASE_FIELDS.values() for n in (1, 2, 3))


@dataclass(frozen=True)
class RegisterSpec:
    address: int
    target: str
    scale: float = 1.0


@dataclass(frozen=True)
class RegisterMap:
    model: str
    registers: tuple[RegisterSpec, ...]
    default_baudrate: int
    max_registers_per_read: int = 80  # Eastron: at most 40 float parameters per request

    def blocks(self) -> list[tuple[int, int]]:
        """(start, count) reads covering every register, each within max_registers_per_read."""
        spans = sorted((r.address, r.address + 2) for r in self.registers)
        blocks: list[list[int]] = []
        for start, end in spans:
            if blocks and end - blocks[-1][0] <= self.max_registers_per_read:
                blocks[-1][1] = max(blocks[-1][1], end)
            else:
                blocks.append([start, end])
        return [(s, e - s) for s, e in blocks]

    @property
    def size(self) -> int:
        return max(r.address for r in self.registers) + 2


SDM120 = RegisterMap("sdm120", (
    RegisterSpec(0x0000, "voltage_v"),
    RegisterSpec(0x0006, "current_a"),
    RegisterSpec(0x000C, "power_w"),
    RegisterSpec(0x0012, "apparent_power_va"),
    RegisterSpec(0x0018, "reactive_var"),
    RegisterSpec(0x001E, "power_factor"),
    RegisterSpec(0x0046, "frequency_hz"),
    RegisterSpec(0x0048, "import_wh", 1000.0),
    RegisterSpec(0x004A, "export_wh", 1000.0),
    RegisterSpec(0x004C, "import_reactive_varh", 1000.0),
    RegisterSpec(0x004E, "export_reactive_varh", 1000.0),
), default_baudrate=2400)

SDM630 = RegisterMap("sdm630", (
    RegisterSpec(0x0000, "voltage_v"),  # L1; all phases also in extra
    RegisterSpec(0x0000, "voltage_l1_v"),
    RegisterSpec(0x0002, "voltage_l2_v"),
    RegisterSpec(0x0004, "voltage_l3_v"),
    RegisterSpec(0x0006, "current_a"),
    RegisterSpec(0x0006, "current_l1_a"),
    RegisterSpec(0x0008, "current_l2_a"),
    RegisterSpec(0x000A, "current_l3_a"),
    RegisterSpec(0x000C, "power_l1_w"),
    RegisterSpec(0x000E, "power_l2_w"),
    RegisterSpec(0x0010, "power_l3_w"),
    RegisterSpec(0x0034, "power_w"),  # total system power
    RegisterSpec(0x0038, "apparent_power_va"),
    RegisterSpec(0x003C, "reactive_var"),
    RegisterSpec(0x003E, "power_factor"),
    RegisterSpec(0x0046, "frequency_hz"),
    RegisterSpec(0x0048, "import_wh", 1000.0),
    RegisterSpec(0x004A, "export_wh", 1000.0),
    RegisterSpec(0x004C, "import_reactive_varh", 1000.0),
    RegisterSpec(0x004E, "export_reactive_varh", 1000.0),
), default_baudrate=9600)

REGISTER_MAPS: dict[str, RegisterMap] = {m.model: m for m in (SDM120, SDM630)}


def decode_float32(high: int, low: int) -> float:
    return struct.unpack(">f", struct.pack(">HH", high, low))[0]


def encode_float32(value: float) -> tuple[int, int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return high, low
