"""The scheduled rounds: a round that fails is counted and reported under its name, logged (a
store failure only by its own spell) and run again on the next period."""

from __future__ import annotations

import logging
from functools import partial

from edge.agent.meter_state import Stats
from edge.agent.rounds import every
from edge.agent.store import StoreError
from edge.agent.supervise import Supervisor
from tests.edge.agent.helpers import until


async def test_a_failing_round_is_reported_under_its_name_and_runs_again(caplog):
    sup, stats = Supervisor(), Stats()
    calls: list[int] = []

    async def round_() -> None:
        calls.append(len(calls))
        raise (ValueError("no window") if len(calls) == 1 else StoreError("disk I/O error"))

    with caplog.at_level(logging.ERROR, logger="edge.agent.supervise"):
        sup.spawn("quality", partial(every, 0.02, round_, "quality", sup, stats))
        assert await until(lambda: len(calls) >= 3)
        health = sup.tasks["quality"]
        assert health.state == "running" and health.restarts == 0  # a failed round is no death
        assert health.errors >= 3 and stats.errors >= 3
        assert "StoreError: disk I/O error" in health.last_error
    logged = [r.getMessage() for r in caplog.records if "task quality" in r.getMessage()]
    assert len(logged) == 1 and "no window" in logged[0]  # a store failure is its spell's to log
    sup.stopping = True
    await sup.cancel()
