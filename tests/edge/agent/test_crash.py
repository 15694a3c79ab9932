"""Crash safety: kill -9 the agent at random moments (10 times), restart it each time.

After every kill the store must pass ``PRAGMA integrity_check``, keep every reading it held after
the previous kill (same values), and hold per-meter sequence numbers without holes. At the end
every reading a subscriber received (so the agent had counted it as received) is in the store, and
every stored reading reached the subscriber; the LWT marks the gateway offline after a kill.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from tests.edge.agent.helpers import Recorder, toml_text, wait_for

KILLS = 10


def _rows(path) -> dict[tuple[str, int], tuple[float, float]]:
    db = sqlite3.connect(path, timeout=10)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = {(m, s): (ts, p) for m, s, ts, p in db.execute("SELECT meter_id, seq, ts_s, power_w FROM readings")}
        last = dict(db.execute("SELECT meter_id, last_seq FROM meters"))
    finally:
        db.close()
    for meter, n in last.items():
        assert {s for m, s in rows if m == meter} == set(range(1, n + 1)), f"{meter}: hole in seq"
    return rows


def _stored(path) -> int:
    """Readings committed so far (0 while the agent has not created its store yet)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def test_kill9_at_random_moments_loses_no_committed_reading(mosquitto, tmp_path):
    meters = [{"id": f"k{i}", "kind": "virtual", "options": {"profile": "sine", "interval_s": 0.005, "seed": i}}
              for i in range(4)]
    config = tmp_path / "agent.toml"
    # readings of one commit share a message (max 50), as a gateway with fast meters is set up
    config.write_text(toml_text(tmp_path / "state", mosquitto.port, meters).replace(
        "[mqtt]\n", "[mqtt]\nmax_readings_per_message = 50\n"))
    store = tmp_path / "state" / "agent.sqlite"
    rec = Recorder(mosquitto.port, ["unimeter/gw1/+/reading", "unimeter/gw1/status"], client_id="crash-sub")
    cmd = [sys.executable, "-m", "edge.agent", "--config", str(config)]
    rng = random.Random(20261122)
    before: dict = {}
    try:
        for i in range(KILLS):
            agent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if i % 3 == 0:  # during start-up (or just after, on a fast machine)
                time.sleep(rng.uniform(0.3, 1.5))
            else:  # mid-stream: once this run has committed readings, however slow its start-up
                assert wait_for(lambda n=len(before): _stored(store) > n, 120), f"run {i}: nothing stored"
                time.sleep(rng.uniform(0.0, 1.5))
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(timeout=10)
            if not store.exists():
                continue
            rows = _rows(store)
            lost = [k for k in before if k not in rows or rows[k] != before[k]]
            assert not lost, f"kill {i}: {len(lost)} committed readings lost or changed"
            before = rows
        assert len(before) > 500, "the agent barely ran between the kills"
        assert rec.wait_for(lambda: any(json.loads(p).get("state") == "offline"
                                        for t, p, _ in rec.messages if t.endswith("/status")), 10)
        agent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the last run stores new readings, sends what the killed ones left in the outbox, and stops
        assert wait_for(lambda: _stored(store) > len(before), 120), "the last run stored nothing"
        assert rec.wait_for(lambda: set(before) <= set(rec.samples()), 120), "the backlog was not sent"
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
    rows = _rows(store)
    assert all(rows.get(k) == v for k, v in before.items())
    assert rec.wait_for(lambda: len(rec.samples()) >= len(rows), 20)
    rec.stop()
    received = rec.samples()
    ghost = [k for k in received if k not in rows]
    assert not ghost, f"{len(ghost)} readings were published but are not in the store"
    assert set(rows) == set(received), "some stored readings never reached the subscriber"
    for k, (ts, p) in received.items():
        assert abs(rows[k][0] - ts) < 1e-3 and abs(rows[k][1] - p) < 1e-2
