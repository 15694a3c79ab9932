"""The ZCL invalid numbers (ZCL spec 07-5123 r8, 2.6.2) as the bridge reads them."""

from __future__ import annotations

import math

import pytest

from firmware_bridge.zigbee.datatypes import INVALID_VALUES, is_invalid, is_invalid_zigpy_value


@pytest.mark.parametrize("bits,unsigned_id,signed_id", [(8 * n, 0x1F + n, 0x27 + n) for n in range(1, 9)])
def test_integer_invalid_numbers_follow_the_spec_rule(bits, unsigned_id, signed_id):
    assert INVALID_VALUES[unsigned_id] == (f"uint{bits}", 2**bits - 1)  # all ones
    assert INVALID_VALUES[signed_id] == (f"int{bits}", -(2 ** (bits - 1)))  # 0x80..: sign bit only
    assert is_invalid(unsigned_id, 2**bits - 1) and not is_invalid(unsigned_id, 2**bits - 2)
    assert is_invalid(signed_id, -(2 ** (bits - 1))) and not is_invalid(signed_id, -(2 ** (bits - 1)) + 1)


def test_floats_enums_and_types_without_an_invalid_number():
    assert is_invalid(0x39, math.nan) and not is_invalid(0x39, 1.5)
    assert is_invalid(0x30, 0xFF) and is_invalid(0x31, 0xFFFF)
    assert not is_invalid(0x18, 0xFF)  # bitmap8: every pattern is a value
    assert not is_invalid(0x08, 0xFF)  # data8
    assert not is_invalid(0x42, "text")


def test_values_as_zigpy_decodes_them():
    import zigpy.types as t

    assert is_invalid_zigpy_value(t.uint48_t(0xFFFFFFFFFFFF))
    assert not is_invalid_zigpy_value(t.uint48_t(1234567))
    assert is_invalid_zigpy_value(t.int24s(-0x800000))
    assert not is_invalid_zigpy_value(t.int24s(-0x7FFFFF))
    assert is_invalid_zigpy_value(t.uint64_t(0xFFFFFFFFFFFFFFFF))
    assert is_invalid_zigpy_value(t.Single(math.nan))
    assert not is_invalid_zigpy_value(t.bitmap8(0xFF))


def test_zigpys_own_table_differs_for_64_bit_types():
    """Why the table is ours: zigpy 2.4 lists the 56-bit patterns for uint64 and int64."""
    from zigpy.zcl import foundation

    assert foundation.DataType.uint48.non_value == INVALID_VALUES[0x25][1]
    zigpy_uint64 = foundation.DataType.uint64.non_value
    if zigpy_uint64 != INVALID_VALUES[0x27][1]:
        assert zigpy_uint64 == 2**56 - 1
