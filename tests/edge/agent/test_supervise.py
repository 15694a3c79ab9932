"""The supervisor: a task that dies is logged with its traceback, restarted with backoff, reported."""

from __future__ import annotations

import asyncio
import logging

from edge.agent.supervise import FailureSpell, Supervisor


async def test_dying_task_is_logged_restarted_with_backoff_and_reported(caplog):
    sup = Supervisor(backoff_initial_s=0.05, backoff_max_s=0.2, stable_s=10.0)
    starts: list[str] = []  # the state the supervisor reported as each incarnation started
    release = asyncio.Event()

    async def flaky() -> None:
        starts.append(sup.tasks["flaky"].state)
        if len(starts) <= 4:
            raise OSError(28, "No space left on device")
        await release.wait()
        raise ValueError("a bug")

    with caplog.at_level(logging.ERROR, logger="edge.agent.supervise"):
        sup.spawn("flaky", flaky)
        sup.spawn("steady", lambda: asyncio.sleep(3600))
        for _ in range(3000):  # a condition with a generous ceiling, not a time
            if len(starts) >= 5:
                break
            await asyncio.sleep(0.01)
        assert len(starts) == 5 and sup.all_alive() and set(starts) == {"running"}
        health = sup.snapshot()["flaky"]
        assert health["restarts"] == 4 and "No space left on device" in health["last_error"]
        release.set()
        for _ in range(3000):
            if sup.dead():
                break
            await asyncio.sleep(0.01)
        dead = sup.dead()
        assert [h.name for h in dead] == ["flaky"] and dead[0].state == "backoff"
        assert "ValueError: a bug" in dead[0].last_error
    died = [r for r in caplog.records if "task flaky died" in r.getMessage()]
    assert len(died) == 5 and all(r.exc_info for r in died)  # every death with its traceback
    delays_s = [r.args[2] for r in died]  # the backoff chosen for each restart, as logged
    assert delays_s == [0.05, 0.1, 0.2, 0.2, 0.2]  # doubling, capped at backoff_max_s
    assert [r.args[3] for r in died] == [1, 2, 3, 4, 5]
    sup.stopping = True
    await sup.cancel()
    assert sup.snapshot()["steady"]["state"] == "cancelled"


async def test_task_returning_while_running_is_a_failure_but_not_at_shutdown(caplog):
    sup = Supervisor(backoff_initial_s=0.01)
    runs = []

    async def ends() -> None:
        runs.append(1)

    with caplog.at_level(logging.ERROR, logger="edge.agent.supervise"):
        sup.spawn("ends", ends)
        for _ in range(100):
            if len(runs) >= 2:
                break
            await asyncio.sleep(0.01)
    assert len(runs) >= 2 and "ended by itself" in caplog.text
    sup.stopping = True
    await asyncio.sleep(0.05)
    assert sup.snapshot()["ends"]["state"] == "finished" and sup.all_alive()


def test_failure_spell_logs_start_change_and_end_once(caplog):
    spell = FailureSpell("store: committing readings", every_s=3600)
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            spell.fail("database or disk is full")
        assert spell.failing and spell.attempts == 50
        assert "failing for" in spell.describe()
        spell.fail("disk I/O error")
        spell.ok()
        spell.ok()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "failing: database or disk is full" in lines[0]
    assert "still failing" in lines[1] and "disk I/O error" in lines[1]
    assert "recovered after" in lines[2] and not spell.failing and spell.describe() == ""


async def test_a_restarted_task_is_alive_but_not_settled_until_it_has_run_a_while():
    sup = Supervisor(backoff_initial_s=0.01)
    runs = []

    async def dies_once() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first start fails")
        await asyncio.sleep(3600)

    sup.spawn("once", dies_once)
    sup.spawn("steady", lambda: asyncio.sleep(3600))
    for _ in range(3000):
        if len(runs) >= 2:
            break
        await asyncio.sleep(0.01)
    assert len(runs) == 2 and sup.all_alive()
    assert [h.name for h in sup.unsettled(3600.0)] == ["once"]  # never died: "steady" is settled
    assert not sup.settled(3600.0) and sup.settled(0.0)
    started = sup.tasks["once"].started_s
    assert sup.unsettled(10.0, now_s=started + 10.0) == []  # settled once it has run settle_s
    sup.stopping = True
    await sup.cancel()
