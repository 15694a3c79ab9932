"""ZCL data types and their "invalid number" values, as data.

Source: Zigbee Cluster Library Specification (07-5123, revision 8), section 2.6.2 "Data Types",
table 2-11, column "Invalid Number". An attribute that holds its type's invalid value has no
value: a meter interface that cannot read the meter sends Current Summation Delivered (uint48) as
0xFFFFFFFFFFFF, which scaled naively is 2.8e14 Wh. The rule per class of type:

* unsigned integers and enumerations: all bits set (``0xFF..``);
* signed integers: only the sign bit set (``0x80..``, the most negative two's complement value);
* floats (semi, single, double): NaN;
* boolean: 0xFF; UTC time, cluster id, attribute id, BACnet OID: all bits set;
* general data (data8..data64), bitmaps, strings and collections have no invalid value.

zigpy carries a similar table (``zigpy.zcl.foundation.DataType.non_value``), but as of zigpy 2.4
its uint64 and int64 entries are the 56-bit values (a test pins the spec values here instead).
"""

from __future__ import annotations

import math

# ZCL type id -> (type name, invalid value). Integers are written as the spec writes them.
INVALID_VALUES: dict[int, tuple[str, int | float]] = {
    0x10: ("bool", 0xFF),
    0x20: ("uint8", 0xFF),
    0x21: ("uint16", 0xFFFF),
    0x22: ("uint24", 0xFFFFFF),
    0x23: ("uint32", 0xFFFFFFFF),
    0x24: ("uint40", 0xFFFFFFFFFF),
    0x25: ("uint48", 0xFFFFFFFFFFFF),
    0x26: ("uint56", 0xFFFFFFFFFFFFFF),
    0x27: ("uint64", 0xFFFFFFFFFFFFFFFF),
    0x28: ("int8", -0x80),
    0x29: ("int16", -0x8000),
    0x2A: ("int24", -0x800000),
    0x2B: ("int32", -0x80000000),
    0x2C: ("int40", -0x8000000000),
    0x2D: ("int48", -0x800000000000),
    0x2E: ("int56", -0x80000000000000),
    0x2F: ("int64", -0x8000000000000000),
    0x30: ("enum8", 0xFF),
    0x31: ("enum16", 0xFFFF),
    0x38: ("semi", math.nan),
    0x39: ("single", math.nan),
    0x3A: ("double", math.nan),
    0xE2: ("UTC", 0xFFFFFFFF),
    0xE8: ("clusterId", 0xFFFF),
    0xE9: ("attribId", 0xFFFF),
    0xEA: ("bacOID", 0xFFFFFFFF),
}


def is_invalid(type_id: int, value: object) -> bool:
    """True if ``value`` (as decoded, signed types as negative ints) is the invalid number of ZCL
    type ``type_id``. Types without an invalid number, and non-numeric values, are never invalid;
    a non-finite float is invalid whatever its type."""
    if isinstance(value, float) and not math.isfinite(value):
        return True
    entry = INVALID_VALUES.get(int(type_id))
    if entry is None or not isinstance(value, int | float):
        return False
    invalid = entry[1]
    if isinstance(invalid, float):  # NaN: only a NaN matches, handled above
        return False
    return int(value) == invalid


def type_id_of(value: object) -> int | None:
    """The ZCL type id of a value decoded by zigpy (its class is the wire type), None if unknown."""
    from zigpy.zcl import foundation

    data_type = foundation.DataType.from_python_type(type(value))
    return None if data_type is foundation.DataType.unk else int(data_type.type_id)


def is_invalid_zigpy_value(value: object) -> bool:
    """``is_invalid`` for a value as zigpy hands it over (typed by its class)."""
    type_id = type_id_of(value)
    if type_id is None:
        return isinstance(value, float) and not math.isfinite(value)
    return is_invalid(type_id, value)
