"""The outbox pump against a real Mosquitto and a real SQLite outbox: every message reaches the
subscriber in order and leaves the outbox on its PUBACK; a commit's messages go straight to paho
only when the pump has caught up; a replaced store's outbox ids are forgotten."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from edge.agent.config import MqttConfig
from edge.agent.messages import Topics
from edge.agent.meter_state import Stats
from edge.agent.mqtt import MqttPublisher
from edge.agent.pump import OutboxPump
from edge.agent.store import Message, ReadingStore
from edge.agent.supervise import FailureSpell
from tests.edge.agent.helpers import Recorder, until, wait_subscribed

TOPIC = "unimeter/gw1/m1/quality"


async def test_the_outbox_reaches_the_subscriber_and_each_puback_deletes_its_message(mosquitto, tmp_path):
    pool = ThreadPoolExecutor(1)  # the store's own thread, as in the agent
    loop = asyncio.get_running_loop()

    async def db(fn, *args):
        return await loop.run_in_executor(pool, partial(fn, *args))

    store = await db(ReadingStore, tmp_path / "agent.sqlite")
    rec = Recorder(mosquitto.port, topics=("unimeter/#",))
    pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=mosquitto.port, keepalive_s=5, reconnect_max_s=1.0),
                        Topics("unimeter", "gw1"), client_id="unimeter-pump-test")
    pub.start()
    stats = Stats()
    pump = OutboxPump(pub, db, lambda: store, stats, FailureSpell("acks", logging.getLogger(__name__)),
                      asyncio.Event(), window=2)  # a small window: several fetches
    task = None
    try:
        assert pub.connected.wait(15) and wait_subscribed(rec, pub)
        await db(store.enqueue, [Message(TOPIC, json.dumps({"n": i}).encode()) for i in range(5)])
        task = asyncio.create_task(pump.run())
        assert await until(lambda: stats.published == 5), f"{stats.published} of 5 acknowledged"
        assert await db(lambda: store.outbox_rows) == 0 and pump.last_id == 5
        assert rec.wait_for(lambda: len(rec.json("/m1/quality")) == 5, 10)
        assert [m["n"] for m in rec.json("/m1/quality")] == [0, 1, 2, 3, 4]
        assert len(stats.latencies_s) == 5 and not pump.ack_spell.failing
        task.cancel()
        pump.publish_fresh([Message(TOPIC, b'{"n": 7}', id=7)])  # not next: the pump sends it later
        assert pump.last_id == 5 and pub.inflight == 0
        pump.publish_fresh([Message(TOPIC, b'{"n": 6}', id=6)])  # next: straight to paho
        assert pump.last_id == 6
        assert rec.wait_for(lambda: len(rec.json("/m1/quality")) == 6, 10)
        pump.store_changing()
        pump.forget_store()
        assert (pump.generation, pump.last_id, pump.acks_pending, pub.inflight) == (1, 0, [], 0)
    finally:
        if task is not None:
            task.cancel()
        pub.stop()
        rec.stop()
        await db(store.close)
        pool.shutdown()
