"""The SQLite store: sequence numbers, outbox acknowledgement, the bounded-disk policy, health."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from edge.agent.messages import Topics
from edge.agent.store import Message, ReadingStore, StoreError
from firmware_bridge.reading import Reading

TOPICS = Topics("unimeter", "gw1")


def readings(meter: str, n: int, t0: float = 1.79e9) -> list[Reading]:
    return [Reading(meter, t0 + i, t0 + i, 100.0 + i, import_wh=1000.0 + i, extra={"tariff": "1"})
            for i in range(n)]


def test_sequence_numbers_are_contiguous_per_meter_and_survive_reopen(tmp_path):
    path = tmp_path / "s.sqlite"
    store = ReadingStore(path, synchronous="normal")
    a = store.commit_readings(readings("a", 3) + readings("b", 2), TOPICS.reading_messages)
    assert [s.seq for s in a.readings] == [1, 2, 3, 1, 2]
    assert store.outbox_rows == 5
    # the commit returns its outbox messages with their row ids: the ones the pump will send
    assert [m.id for m in a.messages] == [r[0] for r in store.db.execute("SELECT id FROM outbox ORDER BY id")]
    assert not hasattr(store, "fresh")
    store.close()
    store = ReadingStore(path)
    b = store.commit_readings(readings("a", 2, 1.8e9), TOPICS.reading_messages)
    assert [s.seq for s in b.readings] == [4, 5]
    got = store.readings_since("a", 0)
    assert [s.seq for s in got] == [1, 2, 3, 4, 5]
    assert got[0].reading == readings("a", 1)[0]  # every field round-trips, extra included
    assert store.integrity_check() == "ok"


def test_outbox_rows_are_deleted_only_when_acknowledged(tmp_path):
    store = ReadingStore(tmp_path / "s.sqlite")
    store.commit_readings(readings("a", 4), TOPICS.reading_messages)
    store.enqueue([Message("t/x", b"{}", 1, True)])
    pending = store.pending(0, 100)
    assert len(pending) == 5 and pending[0].topic == "unimeter/gw1/a/reading"
    assert b'"seq":1' in pending[0].payload
    store.acknowledge([pending[0].id, pending[2].id])
    left = store.pending(0, 100)
    assert [m.id for m in left] == [pending[1].id, pending[3].id, pending[4].id]
    assert store.outbox_rows == 3
    assert store.pending(pending[3].id, 100)[0].id == pending[4].id


def test_bounded_disk_policy_drops_oldest_messages_keeps_readings(tmp_path, caplog):
    store = ReadingStore(tmp_path / "s.sqlite", outbox_max_rows=100)
    with caplog.at_level("WARNING"):
        store.commit_readings(readings("a", 150), TOPICS.reading_messages)
    assert store.outbox_rows == 90  # dropped down to 90 % of the cap
    assert store.dropped_total == 60
    assert store.get_state("outbox_dropped") == "60"
    first = store.pending(0, 1)[0]
    assert b'"seq":61' in first.payload  # the oldest went first
    assert len(store.readings_since("a", 0)) == 150  # history is kept
    assert any("dropped the 60 oldest" in r.message for r in caplog.records)
    store.close()
    assert ReadingStore(tmp_path / "s.sqlite").dropped_total == 60


def test_bounded_disk_policy_by_size(tmp_path):
    store = ReadingStore(tmp_path / "s.sqlite", outbox_max_rows=10**6, outbox_max_mb=0.01)
    store.commit_readings(readings("a", 200), TOPICS.reading_messages)
    assert store.outbox_bytes <= 0.01e6
    assert store.dropped_total > 0


def test_store_in_wal_mode_and_refuses_newer_schema(tmp_path):
    path = tmp_path / "s.sqlite"
    ReadingStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute("UPDATE state SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        ReadingStore(path)


def _case_readings() -> list[Reading]:
    """Every reading of the DSMR real-meter cases (phases, tariffs, reactive energy, M-Bus
    channels, power-failure logs, warnings), fed as each case README says."""
    from firmware_bridge.dsmr.source import DsmrConfig, DsmrSource
    from tests.firmware_bridge.meter_cases import find_cases, split_telegrams

    out = []
    for case in find_cases("dsmr"):
        source = DsmrSource(DsmrConfig(port="-", version=str(case.expected["dsmr_version"])))
        data, received = case.bytes("telegram.bin"), case.expected["received_s"]
        times = received if isinstance(received, list) else [received]
        chunks = split_telegrams(data) if isinstance(received, list) else [data]
        for chunk, t in zip(chunks, times, strict=True):
            out += [dataclasses.replace(r, meter_id=case.name) for r in source.feed(chunk, float(t))]
    return out


def test_every_field_of_a_real_meters_reading_is_stored_and_read_back(tmp_path):
    rs = _case_readings()
    assert any(r.phases for r in rs) and any(r.mbus for r in rs) and any(r.import_tariff_wh for r in rs)
    assert any(r.reactive_import_varh is not None for r in rs) and any(r.power_failure_log for r in rs)
    path = tmp_path / "s.sqlite"
    store = ReadingStore(path)
    store.commit_readings(rs)
    store.close()
    store = ReadingStore(path)  # from the file, not from memory
    back = [s.reading for m in sorted({r.meter_id for r in rs})
            for s in store.readings_since(m, float("-inf"))]
    store.close()
    key = lambda r: (r.meter_id, r.ts_s, r.received_s)  # noqa: E731
    assert sorted(back, key=key) == sorted(rs, key=key)


def test_a_schema_2_store_is_migrated_and_keeps_its_readings(tmp_path):
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)  # a store as schema 2 wrote it (readings without ``detail``)
    db.executescript("""
        CREATE TABLE meters (meter_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL DEFAULT 0,
                             last_ts_s REAL, last_received_s REAL);
        CREATE TABLE readings (meter_id TEXT NOT NULL, seq INTEGER NOT NULL, ts_s REAL NOT NULL,
            received_s REAL NOT NULL, power_w REAL, reactive_var REAL, import_wh REAL, export_wh REAL,
            voltage_v REAL, current_a REAL, source TEXT NOT NULL DEFAULT '',
            flags INTEGER NOT NULL DEFAULT 0, extra TEXT, PRIMARY KEY (meter_id, seq)) WITHOUT ROWID;
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
            payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
            created_s REAL NOT NULL, held_rc INTEGER);
        CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO state VALUES ('schema_version', '2'), ('epoch', 'abcdef012345'), ('created_s', '1.0');
        INSERT INTO meters VALUES ('a', 1, 1.79e9, 1.79e9);
        INSERT INTO readings VALUES ('a', 1, 1.79e9, 1.79e9, 100.0, NULL, 1000.0, NULL, NULL, NULL,
                                     'dsmr', 0, '{"tariff":"1"}');
    """)
    db.close()
    rich = next(r for r in _case_readings() if r.phases and r.mbus)
    store = ReadingStore(path)
    assert store.epoch == "abcdef012345" and store.last_seq("a") == 1
    store.commit_readings([dataclasses.replace(rich, meter_id="a")])
    store.close()
    store = ReadingStore(path)
    old, new = (s.reading for s in sorted(store.readings_since("a", float("-inf")), key=lambda s: s.seq))
    store.close()
    assert old == Reading("a", 1.79e9, 1.79e9, 100.0, import_wh=1000.0, source="dsmr", extra={"tariff": "1"})
    assert new == dataclasses.replace(rich, meter_id="a")
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM state WHERE key='schema_version'").fetchone() == ("4",)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"anomaly_day_max", "anomaly_threshold"} <= tables  # schema 4, created by the migration
    db.close()
