"""Supervision of the agent's background tasks: a task that dies is logged, restarted, reported.

Every long-running coroutine of the agent (readers, writer, publisher pump, schedules, bundle
watcher, health writer) runs under a :class:`Supervisor`. When one raises, the supervisor logs the
exception with its traceback, marks the task ``backoff`` (so ``agent health`` and the systemd
watchdog see it), waits, and starts it again from its factory. The wait doubles from
``backoff_initial_s`` up to ``backoff_max_s`` and falls back to the initial value once the task
has run ``stable_s`` without failing (Home Assistant's and paho's reconnect pattern).

A task that returns normally while the agent is not stopping is treated as a failure too: the
agent's tasks are loops, and one that ends by itself would otherwise vanish without a trace.

Failures a task survives (one round of a schedule that raised, a store write that will be
retried) are recorded with :meth:`Supervisor.note_error` so they show in the same health view.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from edge.agent.store import StoreError

log = logging.getLogger(__name__)

TASK_STATES = ("running", "backoff", "finished", "cancelled")


@dataclass
class TaskHealth:
    """What ``agent health`` shows of one supervised task (times are UTC epoch seconds)."""

    name: str
    critical: bool  # its absence makes the agent unhealthy and withholds the watchdog ping
    state: str = "running"  # one of TASK_STATES
    restarts: int = 0  # times it died and was started again
    errors: int = 0  # failures it survived (note_error)
    last_error: str = ""  # "ExceptionType: message" of the latest failure
    last_error_s: float | None = None
    started_s: float = 0.0  # when the current incarnation started
    next_start_s: float | None = None  # while in backoff: when it starts again


class Supervisor:
    """Runs coroutine factories as supervised asyncio tasks (see the module docstring)."""

    def __init__(self, *, backoff_initial_s: float = 1.0, backoff_max_s: float = 60.0,
                 stable_s: float = 60.0):
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_s = stable_s
        self.tasks: dict[str, TaskHealth] = {}
        self._handles: dict[str, asyncio.Task] = {}
        self.stopping = False  # set at shutdown: a task that returns now has simply finished

    def spawn(self, name: str, factory: Callable[[], Awaitable[object]], *,
              critical: bool = True) -> asyncio.Task:
        """Start ``factory()`` under supervision as task ``name`` (unique); returns the asyncio task."""
        if name in self._handles and not self._handles[name].done():
            raise ValueError(f"a supervised task named {name!r} is already running")
        health = TaskHealth(name, critical, started_s=time.time())
        self.tasks[name] = health
        handle = asyncio.create_task(self._supervise(health, factory), name=name)
        self._handles[name] = handle
        return handle

    async def _supervise(self, health: TaskHealth, factory: Callable[[], Awaitable[object]]) -> None:
        delay_s = self.backoff_initial_s
        while True:
            health.state, health.started_s, health.next_start_s = "running", time.time(), None
            started = time.monotonic()
            try:
                await factory()
            except asyncio.CancelledError:
                health.state = "cancelled"
                raise
            except Exception as e:
                self._record(health, e)
                problem = f"died: {health.last_error}"
                exc_info: BaseException | None = e
            else:
                if self.stopping:
                    health.state = "finished"
                    return
                self._record(health, RuntimeError("returned while the agent was running"))
                problem, exc_info = "ended by itself", None
            if time.monotonic() - started >= self.stable_s:
                delay_s = self.backoff_initial_s
            health.restarts += 1
            health.state, health.next_start_s = "backoff", time.time() + delay_s
            log.error("task %s %s; restarting it in %.0f s (restart %d)", health.name, problem,
                      delay_s, health.restarts, exc_info=exc_info)
            await asyncio.sleep(delay_s)
            delay_s = min(self.backoff_max_s, 2 * delay_s)

    @staticmethod
    def _record(health: TaskHealth, error: BaseException) -> None:
        health.errors += 1
        health.last_error = _describe(error)
        health.last_error_s = time.time()

    def note_error(self, name: str, error: BaseException, *, log_it: bool = True) -> None:
        """Record a failure that task ``name`` survived (and log it once, without traceback
        for the expected kinds, with it for everything else)."""
        health = self.tasks.get(name)
        if health is not None:
            self._record(health, error)
        if log_it:
            log.error("task %s: %s", name, _describe(error),
                      exc_info=None if _expected(error) else error)

    # --- views ----------------------------------------------------------------------------------

    def dead(self) -> list[TaskHealth]:
        """Critical tasks that are not running right now (died and waiting, or gone)."""
        return [h for h in self.tasks.values() if h.critical and h.state != "running"
                and not (self.stopping and h.state in ("finished", "cancelled"))]

    def all_alive(self) -> bool:
        return not self.dead()

    def unsettled(self, settle_s: float, now_s: float | None = None) -> list[TaskHealth]:
        """Critical tasks restarted less than ``settle_s`` ago: running, but not yet proven (a
        task that dies on every start is "running" for a moment each time)."""
        now_s = time.time() if now_s is None else now_s
        return [h for h in self.tasks.values() if h.critical and h.restarts and h.state == "running"
                and now_s - h.started_s < settle_s]

    def settled(self, settle_s: float) -> bool:
        """All critical tasks alive, and none restarted less than ``settle_s`` ago (what the
        systemd watchdog is fed on: a crash-looping task must not keep it quiet)."""
        return self.all_alive() and not self.unsettled(settle_s)

    def snapshot(self) -> dict[str, dict]:
        """name -> TaskHealth as a plain dict (JSON-ready)."""
        return {name: asdict(h) for name, h in sorted(self.tasks.items())}

    # --- shutdown -------------------------------------------------------------------------------

    def handle(self, name: str) -> asyncio.Task:
        return self._handles[name]

    async def cancel(self, names: list[str] | None = None, timeout_s: float = 10.0) -> None:
        """Cancel the named tasks (default: all) and wait until they are gone."""
        handles = [self._handles[n] for n in (names if names is not None else list(self._handles))
                   if n in self._handles]
        for h in handles:
            h.cancel()
        if not handles:
            return
        _, stuck = await asyncio.wait(handles, timeout=timeout_s)
        if stuck:  # never hold up the shutdown for a task that ignores its cancellation
            log.error("tasks did not stop within %.0f s of being cancelled: %s", timeout_s,
                      ", ".join(sorted(h.get_name() for h in stuck)))


# Failures whose message says all there is to say (the environment, not a bug): no traceback.
_EXPECTED = (OSError, TimeoutError)


def _expected(error: BaseException) -> bool:
    return isinstance(error, (*_EXPECTED, StoreError))


def _describe(error: BaseException) -> str:
    text = str(error).strip() or traceback.format_exception_only(type(error), error)[-1].strip()
    return f"{type(error).__name__}: {text}"


class FailureSpell:
    """A recurring failure (disk full, broker unreachable): logged when it starts, every
    ``every_s`` while it lasts, and when it ends; its state is what health reports.

    ``fail(error)`` on every failed attempt, ``ok()`` on every success.
    """

    def __init__(self, what: str, logger: logging.Logger = log, every_s: float = 60.0):
        self.what = what
        self.log = logger
        self.every_s = every_s
        self.since_s: float | None = None  # wall clock of the first failure of this spell
        self.last_error = ""
        self.attempts = 0  # failed attempts in this spell
        self.spells = 0  # spells so far
        self._last_log = 0.0

    @property
    def failing(self) -> bool:
        return self.since_s is not None

    def fail(self, error: str, detail: str = "") -> None:
        now = time.monotonic()
        extra = f"; {detail}" if detail else ""
        if self.since_s is None:
            self.since_s, self.attempts, self._last_log = time.time(), 0, now
            self.spells += 1
            self.log.error("%s failing: %s%s", self.what, error, extra)
        elif error != self.last_error or now - self._last_log >= self.every_s:
            self._last_log = now
            self.log.error("%s still failing after %.0f s (%d attempts): %s%s", self.what,
                           time.time() - self.since_s, self.attempts + 1, error, extra)
        self.attempts += 1
        self.last_error = error

    def ok(self, detail: str = "") -> None:
        if self.since_s is None:
            return
        self.log.warning("%s recovered after %.0f s (%d failed attempts)%s", self.what,
                         time.time() - self.since_s, self.attempts, f"; {detail}" if detail else "")
        self.since_s, self.attempts = None, 0

    def describe(self) -> str:
        """'' when not failing, else one line for the health problems list."""
        if self.since_s is None:
            return ""
        return f"{self.what} failing for {time.time() - self.since_s:.0f} s: {self.last_error}"
