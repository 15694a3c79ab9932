"""A damaged, deleted or unopenable store, with the real agent, real SQLite and a real Mosquitto.

A damaged store is moved aside (``agent.sqlite.corrupt-<time>``), a fresh one started under a new
epoch, and the event logged and published; the agent does not exit. A store deleted between runs
starts a new epoch, so subscribers that dedupe by (epoch, seq) keep the new data. A store deleted
while the agent runs is written back whole from the open database. A store that cannot be opened
at all exits with code 3 and one log line.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.agent.agent import Agent
from edge.agent.meters import build_sources
from edge.agent.store import ReadingStore
from edge.agent.store_files import open_store
from firmware_bridge.reading import Reading
from tests.edge.agent.helpers import Recorder, make_config, toml_text

METERS = [{"id": "s1", "kind": "virtual", "options": {"profile": "sine", "interval_s": 0.1}}]


def _filled_store(path: Path, n: int = 3000) -> str:
    store = ReadingStore(path)
    t0 = time.time() - n
    store.commit_readings([Reading("s1", t0 + i, t0 + i, 100.0 + i) for i in range(n)])
    epoch = store.epoch
    store.close()
    return epoch


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "header":  # "file is not a database"
        data[:100] = b"\xde\xad" * 50
    else:  # a page in the middle of the readings b-tree, after a crash (quick_check runs)
        page = 4096
        mid = (len(data) // page // 2) * page
        data[mid:mid + page] = b"\x07" * page
        db = sqlite3.connect(path)
        db.execute("UPDATE state SET value='1' WHERE key='open'")
        db.commit()
        db.close()
        data[:mid] = path.read_bytes()[:mid]
    path.write_bytes(bytes(data))


def _run_agent(config: Path, until, log_path: Path, ceiling_s: float = 120.0) -> int:
    """Run the agent until ``until()`` holds (a condition, not a time: start-up is slow under
    load), then stop it with SIGTERM; its exit code."""
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "edge.agent", "--config", str(config)],
                                stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + ceiling_s
            while not until() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            assert until(), f"the agent did not get there: {log_path.read_text()[-2000:]}"
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    return code


def _seqs(rec: Recorder) -> set[int]:
    return {r["seq"] for r in rec.json("/s1/reading")}


@pytest.mark.parametrize("how", ["header", "page"])
def test_damaged_store_is_moved_aside_and_a_fresh_one_started(mosquitto, tmp_path, how):
    state = tmp_path / "state"
    state.mkdir()
    store_path = state / "agent.sqlite"
    old_epoch = _filled_store(store_path)
    _damage(store_path, how)
    config = tmp_path / "agent.toml"
    config.write_text(toml_text(state, mosquitto.port, METERS))
    rec = Recorder(mosquitto.port, ["unimeter/gw1/event", "unimeter/gw1/s1/reading"], client_id=f"corrupt-{how}")
    try:
        code = _run_agent(config, lambda: rec.json("/event") and max(_seqs(rec), default=0) > 10,
                          tmp_path / "agent.log")
    finally:
        rec.stop()
    log_text = (tmp_path / "agent.log").read_text()
    assert code == 0, log_text
    assert "Traceback" not in log_text
    moved = sorted(state.glob("agent.sqlite.corrupt-*"))
    assert moved and moved[0].name.startswith("agent.sqlite.corrupt-20"), list(state.iterdir())
    assert f"moved it aside to {moved[0].name}" in log_text
    event = rec.json("/event")[-1]
    assert event["event"] == "store_recovered" and event["moved_to"] == str(moved[0])
    expected = ("not a database",) if how == "header" else ("malformed", "failed its check")
    assert any(e in event["reason"] for e in expected), event["reason"]
    new = ReadingStore(store_path)
    assert new.integrity_check() == "ok" and new.epoch == event["epoch"] != old_epoch
    assert new.last_seq("s1") > 10
    new.close()
    readings = rec.json("/s1/reading")
    assert readings and {r["epoch"] for r in readings} == {event["epoch"]}
    assert min(r["seq"] for r in readings) == 1


def test_store_deleted_between_runs_starts_a_new_epoch_subscribers_keep(mosquitto, tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(toml_text(state, mosquitto.port, METERS))
    rec = Recorder(mosquitto.port, ["unimeter/gw1/s1/reading"], client_id="deleted-sub")
    try:
        assert _run_agent(config, lambda: len(rec.json("/reading")) > 10, tmp_path / "run1.log") == 0
        first_run = ReadingStore(state / "agent.sqlite")
        last = first_run.last_seq("s1")
        first_run.close()
        assert rec.wait_for(lambda: _seqs(rec) >= set(range(1, last + 1)), 60), "run 1 not all sent"
        for f in state.glob("agent.sqlite*"):
            f.unlink()
        n_first = len(rec.json("/reading"))
        assert _run_agent(config, lambda: len(rec.json("/reading")) > n_first + 10,
                          tmp_path / "run2.log") == 0
    finally:
        rec.stop()
    runs = rec.json("/reading")
    first, second = runs[:n_first], runs[n_first:]
    seen = {(r["epoch"], r["seq"]) for r in first}
    assert len({r["epoch"] for r in first}) == len({r["epoch"] for r in second}) == 1
    assert {r["seq"] for r in second} & {r["seq"] for r in first}, "seq should restart at 1"
    kept = [r for r in second if (r["epoch"], r["seq"]) not in seen]  # the documented subscriber rule
    assert len(kept) == len(second)


async def test_store_deleted_while_running_is_written_back(mosquitto, tmp_path):
    cfg = make_config(tmp_path / "state", mosquitto.port, METERS)
    agent = Agent(cfg, build_sources(cfg))
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 60)
        for _ in range(600):
            if agent.store.last_seq("s1") >= 10:
                break
            await asyncio.sleep(0.1)
        before = agent.store.last_seq("s1")
        epoch = agent.store.epoch
        for f in cfg.store_path.parent.glob("agent.sqlite*"):
            f.unlink()
        for _ in range(600):
            await asyncio.sleep(0.1)
            if cfg.store_path.exists():
                break
        assert cfg.store_path.exists(), "the deleted store was not written back"
        for _ in range(600):  # the file appears before the agent has reopened it and noted the event
            if agent.store_events:
                break
            await asyncio.sleep(0.1)
        restored = agent.store.last_seq("s1")
        for _ in range(600):  # the written-back store goes on taking readings
            if agent.store.last_seq("s1") > restored + 5:
                break
            await asyncio.sleep(0.1)
        assert agent.store.last_seq("s1") > restored + 5, "the written-back store takes no readings"
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)
    assert [e["event"] for e in agent.store_events] == ["store_restored"]
    store, event = open_store(cfg.store_path)
    try:
        assert event is None and store.epoch == epoch and store.integrity_check() == "ok"
        seqs = [s.seq for s in store.readings_since("s1", 0)]
        assert seqs == list(range(1, store.last_seq("s1") + 1)) and len(seqs) > restored + 5 > before
    finally:
        store.close()


def test_store_that_cannot_be_opened_exits_3_with_one_line(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")
    config = tmp_path / "agent.toml"
    config.write_text(toml_text(blocker / "state", 1883, METERS))
    proc = subprocess.run([sys.executable, "-m", "edge.agent", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(lines) == 1 and "cannot create the store directory" in lines[0] and "exit 3" in lines[0]
    assert json.dumps(lines)
