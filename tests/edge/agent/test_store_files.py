"""The store as a file: its age read without the agent, a damaged file moved aside and replaced."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.agent.store import ReadingStore, StoreError
from edge.agent.store_files import last_reading_age_s, move_aside, open_store
from firmware_bridge.reading import Reading


def test_health_reads_age_of_last_reading(tmp_path):
    path = tmp_path / "s.sqlite"
    store = ReadingStore(path)
    assert last_reading_age_s(path) is None
    now = time.time()
    store.commit_readings([Reading("a", now - 30, now - 30, 1.0)])
    assert 29 < last_reading_age_s(path, now_s=now) < 31
    with pytest.raises(StoreError):
        last_reading_age_s(tmp_path / "missing.sqlite")


def test_a_damaged_file_is_moved_aside_and_a_fresh_store_starts(tmp_path):
    path = tmp_path / "s.sqlite"
    store = ReadingStore(path)
    old_epoch = store.epoch
    store.close()
    path.write_bytes(b"this is not a database" * 100)
    store, event = open_store(path)
    assert event["event"] == "store_recovered" and event["epoch"] == store.epoch != old_epoch
    assert Path(event["moved_to"]).read_bytes().startswith(b"this is not a database")
    assert store.meters() == []
    store.close()
    moved = move_aside(path, now_s=0.0)
    assert moved.name == "s.sqlite.corrupt-19700101T000000Z" and not path.exists()
    path.write_bytes(b"")
    assert move_aside(path, now_s=0.0).name == "s.sqlite.corrupt-19700101T000000Z-1"  # never overwrites
