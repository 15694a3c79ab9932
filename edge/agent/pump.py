"""The outbox pump: stored messages -> paho while connected, deleted on PUBACK.

A message is deleted from the outbox only once the broker acknowledged it, so nothing is lost to
a broker outage or a restart. Topics the broker refuses (MQTT 5 reason code >= 0x80) are held:
their messages stay in the outbox, one of them is offered again as a probe every
``refused_retry_s``, and an accepted probe releases the topic (and probes the other held ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from edge.agent.meter_state import Stats
from edge.agent.mqtt import MqttPublisher
from edge.agent.store import Message, ReadingStore, StoreError
from edge.agent.supervise import FailureSpell

log = logging.getLogger(__name__)

REFUSED_TOPIC = 0x87  # "not authorized": the reason code a message on a held topic is kept under


class OutboxPump:
    """Moves outbox messages to the broker and records its acknowledgements in the store.

    ``db`` runs a store call on the store thread; ``store`` returns the store in use (it is
    replaced when found damaged: ``store_changing`` before, ``forget_store`` after). ``wake`` is
    set whenever there is something new to send. ``window`` bounds the messages in flight.
    """

    def __init__(self, publisher: MqttPublisher, db: Callable[..., Any], store: Callable[[], ReadingStore],
                 stats: Stats, ack_spell: FailureSpell, wake: asyncio.Event, window: int = 1000):
        self.publisher = publisher
        self.db = db
        self.store = store
        self.stats = stats
        self.ack_spell = ack_spell
        self.wake = wake
        self.window = window
        self.last_id = 0  # outbox id of the last message handed to paho
        self.acks_pending: list = []  # PUBACKs drained from paho, not yet recorded in the store
        self.holds_pending: list[tuple[int, int]] = []  # (outbox id, reason code) to hold
        self.probing: set[str] = set()  # held topics allowed one message (a probe) now
        self.generation = 0  # bumped when the store is replaced: outbox ids before it mean nothing

    # --- the store is replaced ----------------------------------------------------------------------

    def store_changing(self) -> None:
        """A store replacement begins: acknowledgements fetched from now on are not recorded."""
        self.generation += 1

    def forget_store(self) -> None:
        """The store was replaced: everything that refers to its outbox ids is forgotten."""
        self.acks_pending.clear()
        self.holds_pending.clear()
        self.last_id = 0
        self.publisher.forget_inflight()

    # --- sending -------------------------------------------------------------------------------------

    def publish_fresh(self, fresh: list[Message]) -> None:
        """Hand the messages of a commit straight to paho when the pump has caught up with the
        outbox (saves a round trip through the store thread); otherwise the pump sends them."""
        pub = self.publisher
        if (not fresh or fresh[0].id != self.last_id + 1
                or not pub.connected.is_set() or pub.inflight + len(fresh) > self.window
                or (pub.held and any(m.topic in pub.held for m in fresh))):
            return
        for m in fresh:
            if not pub.publish(m):
                return
            self.last_id = m.id

    async def run(self) -> None:
        """Outbox -> paho while connected; delete on PUBACK.

        PUBACKs drained from paho stay in ``acks_pending`` until the store has recorded them: a
        store failure (disk full while the broker acknowledges a backlog) is retried every second
        and reported, and a pump restarted by the supervisor still has them.
        """
        pub = self.publisher
        while True:
            self.stats.pump_tick_s = time.monotonic()
            self.wake.clear()
            self.acks_pending.extend(pub.drain_acks())
            room = self.window - pub.inflight if pub.connected.is_set() else 0
            msgs = []
            if self.acks_pending or self.holds_pending or room > 0:
                acks, holds, gen = list(self.acks_pending), list(self.holds_pending), self.generation
                held = holds + [(a.outbox_id, a.reason_code) for a in acks if a.refused]
                try:
                    msgs = await self.db(self.store().ack_and_fetch,
                                         [a.outbox_id for a in acks if not a.refused],
                                         self.last_id, room, held)
                except StoreError as e:
                    self.stats.errors += 1
                    self.ack_spell.fail(str(e), f"{len(acks)} acknowledgements kept, retrying every 1 s")
                    await asyncio.sleep(1.0)
                    continue
                self.ack_spell.ok()
                if gen != self.generation:  # the store was replaced meanwhile
                    continue
                del self.acks_pending[:len(acks)]
                del self.holds_pending[:len(holds)]
                self._note_acks([a for a in acks if not a.refused])
                await self._release_accepted(acks)
            for m in msgs:
                if m.id <= self.last_id:  # already sent by publish_fresh meanwhile
                    continue
                if m.topic in pub.held and not self._take_probe(m.topic):
                    self.holds_pending.append((m.id, REFUSED_TOPIC))  # the broker refuses its topic: keep it
                    self.last_id = m.id
                    continue
                if not pub.publish(m):
                    break
                self.last_id = m.id
            if msgs and len(msgs) == room:
                continue
            with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: 3.11's wait_for
                async with asyncio.timeout(0.5):      # can lose a cancellation (a hung shutdown)
                    await self.wake.wait()

    async def record_acks(self) -> None:
        """Record the acknowledgements received so far (at shutdown, after the pump stopped)."""
        self.acks_pending.extend(self.publisher.drain_acks())
        acks = list(self.acks_pending)
        if acks:
            await self.db(self.store().acknowledge, [a.outbox_id for a in acks])
            del self.acks_pending[:len(acks)]
            self._note_acks(acks)

    def _note_acks(self, acks: list) -> None:
        self.stats.published += len(acks)
        for a in acks:
            self.stats.note_latency(a.acked_s - a.created_s)

    # --- refused publishes (MQTT 5 reason codes): hold, probe, release ------------------------------

    def _take_probe(self, topic: str) -> bool:
        """True once per probe round of a held topic: that message goes out as the probe."""
        if topic in self.probing:
            self.probing.discard(topic)
            return True
        return False

    async def probe_refused(self) -> None:
        """Offer the oldest held message of one held topic to the broker again (a probe)."""
        pub = self.publisher
        for topic in list(pub.held):
            if topic not in self.probing and await self.db(self.store().release_held, topic, 1):
                self.probing.add(topic)
                log.info("offering a held message on %s to the broker again", topic)
                self.wake.set()
                return

    async def _release_accepted(self, acks: list) -> None:
        """A message on a held topic was accepted: release that topic and probe the others."""
        pub = self.publisher
        for a in acks:
            if a.refused or a.topic not in pub.held:
                continue
            pub.release(a.topic)
            n = await self.db(self.store().release_held, a.topic, None)
            log.warning("%d held messages on %s released", n, a.topic)
            for other in list(pub.held):  # the ACL probably changed: ask about the others now
                if other not in self.probing and await self.db(self.store().release_held, other, 1):
                    self.probing.add(other)
            self.wake.set()
