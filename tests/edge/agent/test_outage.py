"""Broker outage: mosquitto stops for 25 s while 10 meters report at 1 Hz; nothing is lost.

25 s is five times the agent's keepalive (5 s) and 25 times its reconnect ceiling (1 s) in this
test's config (tests/edge/agent/helpers.toml_text): the agent retries and backs off many times
while the outbox grows by 250 readings.

The subscriber has a persistent session (clean_session=False) on a broker with persistence, so
what the broker accepted before the outage is queued for it across the restart; what the agent
could not send waits in its SQLite outbox. Every reading must arrive (checked by sequence numbers
against the agent's store); duplicates are allowed (QoS 1) but must be exact copies of one seq.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.edge.agent.helpers import Recorder, toml_text

N_METERS = 10
OUTAGE_S = 25.0


def _store_counts(path) -> tuple[dict[str, int], int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        last = dict(db.execute("SELECT meter_id, last_seq FROM meters"))
        outbox = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        db.close()
    return last, outbox


@pytest.mark.slow
def test_broker_outage_loses_nothing(mosquitto, tmp_path):
    meters = [{"id": f"m{i:02d}", "kind": "virtual", "options": {"profile": "sine", "interval_s": 1.0, "seed": i}}
              for i in range(N_METERS)]
    config = tmp_path / "agent.toml"
    config.write_text(toml_text(tmp_path / "state", mosquitto.port, meters, "[schedule]\nstatus_every_s = 5\n"))
    store = tmp_path / "state" / "agent.sqlite"
    rec = Recorder(mosquitto.port, ["unimeter/gw1/+/reading"], client_id="outage-subscriber", persistent=True)
    agent = subprocess.Popen([sys.executable, "-m", "edge.agent", "--config", str(config)])
    try:
        assert rec.wait_for(lambda: len(rec.seqs()) == N_METERS and
                            min(len(v) for v in rec.seqs().values()) >= 3, 30), "no readings before the outage"
        mosquitto.stop()
        t_stop = time.monotonic()
        time.sleep(OUTAGE_S - 5)
        _, outbox_during = _store_counts(store)
        assert outbox_during >= N_METERS * (OUTAGE_S - 10)  # the outbox holds what could not be sent
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_stop)))
        mosquitto.start()
        last, _ = _store_counts(store)
        assert rec.wait_for(lambda: all(set(rec.seqs().get(m, [])) >= set(range(1, n + 1))
                                        for m, n in last.items()), 60), "readings missing after the outage"
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        rec.stop()
    last, outbox_after = _store_counts(store)
    assert outbox_after == 0  # graceful shutdown flushed everything to the broker
    final = Recorder(mosquitto.port, ["unimeter/gw1/+/reading"], client_id="outage-subscriber", persistent=True)
    time.sleep(1.0)  # messages queued for the session while it was away
    final.stop()
    by_meter = rec.seqs()
    for m, seqs in final.seqs().items():
        by_meter.setdefault(m, []).extend(seqs)
    payloads: dict[tuple[str, int], set[bytes]] = {}
    for _topic, payload, _ in rec.messages + final.messages:
        body = json.loads(payload)
        payloads.setdefault((body["meter"], body["seq"]), set()).add(payload)
    assert len(last) == N_METERS
    for meter, n in last.items():
        assert n >= OUTAGE_S, f"{meter}: only {n} readings in {OUTAGE_S} s at 1 Hz"
        assert set(by_meter[meter]) == set(range(1, n + 1)), f"{meter}: missing sequence numbers"
    dups = sum(c - 1 for c in Counter((m, s) for m, v in by_meter.items() for s in v).values())
    assert all(len(p) == 1 for p in payloads.values()), "a duplicate differs from its original"
    assert dups <= sum(last.values())  # at-least-once, never more than one extra copy per reading here
