"""A reading's row: every scalar in its column, the typed groups as JSON, and back unchanged."""

from __future__ import annotations

import sqlite3

from edge.agent.store_schema import READING_SELECT, SCHEMA, reading_from_row, reading_row
from firmware_bridge.reading import PhaseValues, PowerFailure, Reading, ReadingFlag


def _round_trip(r: Reading, seq: int = 7) -> Reading:
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    db.execute("INSERT INTO readings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", reading_row(r, seq))
    row = db.execute(f"SELECT seq, {READING_SELECT} FROM readings").fetchone()
    assert row[0] == seq
    return reading_from_row(r.meter_id, row[1:])


def test_a_plain_reading_keeps_no_detail_and_comes_back_equal():
    r = Reading("m1", 1.8e9, 1.8e9 + 0.2, 512.5, import_wh=1234.5, voltage_v=231.0, source="dsmr",
                flags=ReadingFlag(0), extra={"tariff_code": "2"})
    assert reading_row(r, 1)[-1] is None  # no typed groups: the detail column stays NULL
    assert _round_trip(r) == r


def test_typed_groups_come_back_from_the_detail_column():
    r = Reading("p1", 1.8e9, 1.8e9, 300.0, phases=(PhaseValues(100.0, 230.1, 0.5), PhaseValues(200.0, 229.8, 0.9)),
                import_tariff_wh=(1.0e6, 2.0e6), tariff=2, power_failures=3,
                power_failure_log=(PowerFailure(1.79e9, 120.0),))
    back = _round_trip(r)
    assert back.phases == r.phases and back.import_tariff_wh == r.import_tariff_wh
    assert (back.tariff, back.power_failures, back.power_failure_log) == (2, 3, r.power_failure_log)
