"""The agent's health: one data structure, written to ``health.json`` and read by ``agent health``.

The running agent builds a :class:`Health` every ``HEALTH_EVERY_S`` seconds (``Agent.health()``)
and writes it atomically next to its store (``<store dir>/health.json``). ``unimeter agent
health`` (the container's HEALTHCHECK, a monitoring script) reads that file: the agent is healthy
when the file is fresh, ``ok`` is true and the newest stored reading is young enough. The same
structure goes out on the gateway status topic, so subscribers (Home Assistant diagnostics) see
exactly what the health command sees.

``ok`` is false while anything in ``problems`` holds; ``warnings`` are conditions worth a look
that do not stop the agent doing its job (a refused model update while the old model serves,
outbox messages dropped by the bounded-disk policy). Every time is UTC epoch seconds.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import AgentError

HEALTH_FILE = "health.json"
HEALTH_VERSION = 1
HEALTH_EVERY_S = 5.0  # how often the agent rewrites the file
STALE_AFTER_S = 30.0  # a file older than this: the agent is not running (or hung)


class HealthFileError(AgentError, RuntimeError):
    """The health file is missing or unreadable."""


@dataclass
class StoreHealth:
    path: str
    epoch: str = ""  # store epoch carried by every message (edge.agent.store)
    created_s: float | None = None
    write_error: str = ""  # "" while writes succeed
    write_failing_since_s: float | None = None
    readings_waiting: int = 0  # received but not yet committed (held in memory)
    outbox_rows: int = 0
    outbox_dropped: int = 0  # bounded-disk policy, total
    refused_held: int = 0  # outbox messages the broker refused, kept for a retry
    recovered: list[dict] = field(default_factory=list)  # corrupt stores moved aside this run


@dataclass
class MqttHealth:
    enabled: bool = True
    protocol: str = ""  # "5" or "3.1.1" (the one in use)
    connected: bool = False
    connects: int = 0
    disconnects: int = 0  # connections lost (under 3.1.1 also how a refused publish shows)
    connect_failures: int = 0  # failed attempts in the current spell
    disconnected_since_s: float | None = None
    last_error: str = ""  # last connection failure, one line, never a secret
    last_error_kind: str = ""  # edge.agent.mqtt.CONNECT_ERROR_KINDS
    last_error_s: float | None = None
    published: int = 0  # messages acknowledged by the broker since start
    refused: int = 0  # publishes the broker refused since start (MQTT 5 reason code >= 0x80)
    refused_topics: dict[str, str] = field(default_factory=dict)  # topic -> reason, held now


@dataclass
class ModelHealth:
    version: str | None = None
    backend: str | None = None
    error: str | None = None  # last refused bundle (the previous model keeps serving)
    swaps: int = 0
    rollbacks: int = 0
    signature: str = ""  # "valid (key <id>)", "unsigned (allowed)", ...


@dataclass
class Health:
    """The whole health report (JSON object; field order is the file's)."""

    ok: bool
    problems: list[str]
    warnings: list[str]
    ts_s: float
    gateway: str
    pid: int
    state: str  # "running" | "stopped"
    tasks: dict[str, dict]  # edge.agent.supervise.TaskHealth per task
    store: StoreHealth
    mqtt: MqttHealth
    model: ModelHealth
    committed: int = 0  # readings committed since start
    last_reading_age_s: float | None = None
    readings_guarded: dict[str, int] = field(default_factory=dict)  # withheld/flagged since start
    version: int = HEALTH_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def health_path(store_path: str | Path) -> Path:
    """Where the agent writes its health: beside its store."""
    return Path(store_path).with_name(HEALTH_FILE)


def write_health(path: str | Path, health: Health) -> None:
    """Write atomically (temporary file + rename): a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(health.to_dict(), separators=(",", ":"), allow_nan=False),
                   encoding="utf-8")
    os.replace(tmp, path)


def read_health(path: str | Path) -> dict[str, Any]:
    """The health file as a dict; raises :class:`HealthFileError` saying why it cannot."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise HealthFileError(f"no health file {path}: the agent has not run with this store") from e
    except (OSError, ValueError) as e:
        raise HealthFileError(f"cannot read the health file {path}: {e}") from e
    if not isinstance(data, dict) or "ok" not in data or "ts_s" not in data:
        raise HealthFileError(f"{path} is not an agent health file")
    return data


def assess(data: dict[str, Any], now_s: float | None = None,
           stale_after_s: float = STALE_AFTER_S) -> list[str]:
    """Problems of a health report read from the file ([] = healthy), staleness included."""
    now_s = time.time() if now_s is None else now_s
    age_s = now_s - float(data["ts_s"])
    if data.get("state") == "stopped":
        return [f"the agent stopped {age_s:.0f} s ago"]
    problems = list(data.get("problems", []))
    if age_s > stale_after_s:
        problems.insert(0, f"health file is {age_s:.0f} s old (pid {data.get('pid')}): "
                           "the agent is not running or is hung")
    return problems
