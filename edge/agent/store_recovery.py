"""The running agent's store when it fails under it: damaged (moved aside, a fresh store under a new
epoch) or deleted/replaced (written back whole from the open connection, SQLite's backup API).

Each recovery is an event (``store_recovered`` / ``store_restored``) kept in the agent's health
and published on the gateway's event topic; the agent never exits for it.
"""

from __future__ import annotations

import logging
import os
import time
from functools import partial
from typing import TYPE_CHECKING

from edge.agent.store import ReadingStore
from edge.agent.store_files import move_aside

if TYPE_CHECKING:
    from edge.agent.agent import Agent

log = logging.getLogger(__name__)


async def replace_store(agent: Agent, reason: str) -> None:
    """The store turned out damaged while open: move it aside and start a fresh one.

    Outbox ids of the old store mean nothing in the new one, so everything that refers to
    them (paho's in-flight map, pending acknowledgements, the pump cursor) is forgotten; what
    was in flight may still reach subscribers, under the old epoch.
    """
    if agent.pump is not None:
        agent.pump.store_changing()
    old = agent.store
    path = agent.cfg.store_path
    await agent.db(old.close)
    moved = await agent.db(move_aside, path)
    agent.store = await agent.db(partial(ReadingStore, path, **agent.store_options()))
    event = {"event": "store_recovered", "reason": reason, "moved_to": str(moved),
             "at_s": time.time(), "epoch": agent.store.epoch, "previous_epoch": old.epoch}
    log.error("store %s is damaged (%s): moved it aside to %s and started a fresh store (epoch %s)",
              path, reason, moved.name, agent.store.epoch)
    agent.adopt_store(event)
    if agent.pump is not None:
        agent.pump.forget_store()
        await agent.enqueue([agent.topics.event_message(event)])
    await agent.build_meter_states()


async def check_store_file(agent: Agent) -> None:
    """Write a store file deleted (or replaced) under the running agent back from the open
    connection (SQLite's backup API), so nothing it held is lost when the agent exits."""
    ident = await agent.db(agent.store.file_identity)
    if ident == agent.store_identity:
        return
    log.error("store file %s was %s while the agent runs; writing it back from the open database",
              agent.cfg.store_path, "deleted" if ident is None else "replaced")
    await agent.db(_restore_store_file, agent)
    event = {"event": "store_restored", "reason": "store file deleted while running"
             if ident is None else "store file replaced while running", "at_s": time.time(),
             "epoch": agent.store.epoch}
    agent.adopt_store(event)
    await agent.enqueue([agent.topics.event_message(event)])


def _restore_store_file(agent: Agent) -> None:
    """(store thread) back up the open store to its path and reopen it there."""
    store = agent.store
    path = store.path
    if path.exists():  # something else took its place: keep it, but not as our store
        move_aside(path)
    tmp = path.with_name(f".{path.name}.restore")
    store.restore_to(tmp)
    os.replace(tmp, path)
    store.db.close()
    agent.store = ReadingStore(path, **agent.store_options())
