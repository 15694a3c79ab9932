"""The SQLite store: sequence numbers, outbox acknowledgement, the bounded-disk policy, health."""

from __future__ import annotations

import sqlite3
import time

import pytest

from edge.agent.messages import Topics
from edge.agent.store import Message, ReadingStore, StoreError, last_reading_age_s
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


def test_health_reads_age_of_last_reading(tmp_path):
    path = tmp_path / "s.sqlite"
    store = ReadingStore(path)
    assert last_reading_age_s(path) is None
    now = time.time()
    store.commit_readings([Reading("a", now - 30, now - 30, 1.0)])
    assert 29 < last_reading_age_s(path, now_s=now) < 31
    with pytest.raises(StoreError):
        last_reading_age_s(tmp_path / "missing.sqlite")


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
