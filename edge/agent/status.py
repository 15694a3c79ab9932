"""What the running agent says about itself: the details of its status topic and its health
(``edge.agent.health.Health``: tasks, store, MQTT, model, problems and warnings).

Both are read from the agent as it is now, on the event loop; nothing here changes it.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import numpy as np

from edge.agent.guards import guard_totals, guard_warnings
from edge.agent.health import Health, ModelHealth, MqttHealth, StoreHealth
from edge.agent.inference import ModelHost
from edge.agent.messages import iso_utc

if TYPE_CHECKING:
    from edge.agent.agent import Agent


def status_details(agent: Agent) -> dict:
    """The gateway status payload's details: counts, outbox, latency percentiles (ms), model, uptime."""
    stats = agent.stats
    lat = np.asarray(stats.latencies_s[-5000:]) if stats.latencies_s else np.zeros(0)
    store = agent.store
    host = agent.host
    model = host.current
    return {
        "meters": len(agent.meters), "committed": stats.committed,
        "published": stats.published, "errors": stats.errors,
        "outbox_rows": store.outbox_rows if store else 0,
        "outbox_dropped": store.dropped_total if store else 0,
        "outbox_max_rows": agent.cfg.store.outbox_max_rows,
        "latency_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 1) if lat.size else None,
        "latency_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 1) if lat.size else None,
        "model_version": model.version if model else None,
        "model_backend": model.runtime.backend_name if model else None,
        "model_error": host.last_error or None,
        "model_swaps": host.swaps, "model_rollbacks": host.rollbacks,
        "last_error": last_error(agent) or None,
        "started": iso_utc(stats.started_s), "uptime_s": round(time.time() - stats.started_s),
    }


def last_error(agent: Agent) -> str:
    """The most recent failure of any kind: a task's, an inference's or the model's."""
    errors = [(h.last_error_s or 0.0, f"{name}: {h.last_error}")
              for name, h in agent.supervisor.tasks.items() if h.last_error]
    if agent.stats.last_error:
        errors.append((agent.stats.last_error_s, agent.stats.last_error))
    if errors:
        return max(errors)[1]
    return agent.host.last_error


def agent_health(agent: Agent, state: str = "running") -> Health:
    """The agent's health now (also what the status topic carries); ``ok`` only while running
    without problems."""
    problems: list[str] = []
    warnings: list[str] = []
    for h in agent.supervisor.dead():
        problems.append(f"task {h.name} is not running ({h.state}, {h.restarts} restarts): "
                        f"{h.last_error}")
    for spell in (agent.write_spell, agent.ack_spell, agent.appliance_spell, agent.rounds.score_spell):
        if spell.failing:
            problems.append(spell.describe())
    store = store_health(agent)
    publisher = agent.publisher
    mqtt = publisher.health() if publisher is not None else MqttHealth(enabled=False)
    if publisher is not None:
        problems += publisher.problems()
    if store.outbox_dropped:
        warnings.append(f"bounded-disk policy dropped {store.outbox_dropped} outbox messages")
    model = model_health(agent.host)
    if model.error:
        warnings.append(f"model: {model.error}")
    current = agent.host.current
    fallback = getattr(current.runtime, "fallback_reason", "") if current else ""
    if fallback:  # e.g. the ONNX model failed its self-check and TFLite serves
        warnings.append(f"model: {fallback}")
    warnings += guard_warnings(agent.guards)
    ages = [time.time() - st.last_received_s for st in agent.meters.values() if st.last_received_s]
    return Health(
        ok=not problems and state == "running", problems=problems, warnings=warnings,
        ts_s=time.time(), gateway=agent.cfg.gateway.id, pid=os.getpid(), state=state,
        tasks=agent.supervisor.snapshot(), store=store, mqtt=mqtt, model=model,
        committed=agent.stats.committed, last_reading_age_s=round(min(ages), 3) if ages else None,
        readings_guarded=guard_totals(agent.guards))


def store_health(agent: Agent) -> StoreHealth:
    """The store's part of health: file, epoch, failing writes, readings waiting, outbox."""
    store, spell = agent.store, agent.write_spell
    waiting = agent.readings_waiting()
    if store is None:
        return StoreHealth(str(agent.cfg.store_path), readings_waiting=waiting)
    return StoreHealth(
        path=str(store.path), epoch=store.epoch, created_s=store.created_s,
        write_error=spell.last_error if spell.failing else "",
        write_failing_since_s=spell.since_s, readings_waiting=waiting,
        outbox_rows=store.outbox_rows, outbox_dropped=store.dropped_total,
        refused_held=store.held_rows, recovered=list(agent.store_events))


def model_health(host: ModelHost) -> ModelHealth:
    """The model's part of health: version, backend, last error, swaps and rollbacks, signature."""
    model = host.current
    return ModelHealth(
        version=model.version if model else None,
        backend=model.runtime.backend_name if model else None,
        error=host.last_error or None, swaps=host.swaps, rollbacks=host.rollbacks,
        signature=model.signature if model else "")
