"""Lifecycle: sd_notify READY/WATCHDOG only while the pipeline is healthy; the health command."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from edge.agent.__main__ import main
from edge.agent.agent import Agent
from edge.agent.meters import build_sources
from edge.agent.notify import Notifier
from edge.agent.store import ReadingStore
from firmware_bridge.reading import Reading
from tests.edge.agent.helpers import make_config


async def test_watchdog_pings_stop_while_the_writer_is_stuck(mosquitto, tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    server.setblocking(False)
    pings: list[tuple[float, bytes]] = []

    async def collect(duration_s: float) -> None:
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            try:
                while True:
                    pings.append((time.monotonic(), server.recv(200)))
            except BlockingIOError:
                await asyncio.sleep(0.05)

    cfg = make_config(tmp_path / "state", mosquitto.port,
                      [{"id": "w1", "kind": "virtual", "options": {"profile": "sine", "interval_s": 0.1}}])
    agent = Agent(cfg, build_sources(cfg), notifier=Notifier({"NOTIFY_SOCKET": sock_path,
                                                               "WATCHDOG_USEC": "1000000"}))
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.ready.wait(), 30)
    await collect(2.0)
    assert any(m.startswith(b"READY=1") for _, m in pings)
    healthy_pings = [t for t, m in pings if m == b"WATCHDOG=1"]
    assert len(healthy_pings) >= 2
    original = agent.store.commit_readings
    sent: list[float] = []  # when each watchdog ping was sent (not when the test read it)
    ping = agent.notifier.watchdog

    def stamped_ping():
        sent.append(time.monotonic())
        return ping()

    agent.notifier.watchdog = stamped_ping
    stuck: dict[str, float] = {}

    def stuck_commit(*args, **kwargs):  # a hung disk: the first commit does not return for 6 s
        if "from" not in stuck:
            stuck["from"] = time.monotonic()
            time.sleep(6.0)
            stuck["to"] = time.monotonic()
        return original(*args, **kwargs)

    agent.store.commit_readings = stuck_commit
    for _ in range(1200):  # until the hung commit has returned (a condition, not a time)
        await collect(0.1)
        if "to" in stuck:
            break
    agent.store.commit_readings = original
    assert "to" in stuck, "the writer never committed"
    # the writer ticked last just before it hung; the watchdog's limit is 3 s (interval 0.5 s)
    stalled = [t for t in sent if stuck["from"] + 3.5 < t < stuck["to"]]
    assert not stalled, "watchdog pinged while the writer was stuck"
    for _ in range(1200):
        await collect(0.1)
        if any(t > stuck["to"] for t in sent):
            break
    assert any(t > stuck["to"] for t in sent), "pings did not resume"
    agent.request_stop()
    await asyncio.wait_for(task, 30)
    await collect(0.2)  # STOPPING=1 is already in the socket buffer
    server.close()
    assert any(m == b"STOPPING=1" for _, m in pings)


def _health(ok=True, problems=(), ts_s=None, state="running"):
    from edge.agent.health import Health, ModelHealth, MqttHealth, StoreHealth

    return Health(ok=ok, problems=list(problems), warnings=[], ts_s=ts_s or time.time(), gateway="gw",
                  pid=1, state=state, tasks={}, store=StoreHealth("x"), mqtt=MqttHealth(),
                  model=ModelHealth())


def test_health_command_checks_health_file_and_age_of_last_reading(tmp_path, capsys):
    from edge.agent.health import health_path, write_health

    path = tmp_path / "agent.sqlite"
    assert main(["health", "--store", str(path)]) == 1  # no store yet
    assert "no health file" in capsys.readouterr().out
    store = ReadingStore(path)
    now = time.time()
    store.commit_readings([Reading("m", now - 300, now - 300, 5.0)])
    write_health(health_path(path), _health())
    assert main(["health", "--store", str(path), "--max-age-s", "120"]) == 1
    assert "unhealthy" in capsys.readouterr().out
    store.commit_readings([Reading("m", now, now, 5.0)])
    store.close()
    assert main(["health", "--store", str(path), "--max-age-s", "120"]) == 0
    assert "healthy: last reading" in capsys.readouterr().out
    write_health(health_path(path), _health(False, ["task pump is not running (backoff, 3 restarts)"]))
    assert main(["health", "--store", str(path)]) == 1
    assert "task pump is not running" in capsys.readouterr().out
    write_health(health_path(path), _health(ts_s=now - 120))
    assert main(["health", "--store", str(path)]) == 1
    out = capsys.readouterr().out
    assert "not running or is hung" in out and "MB free on its disk" in out
    write_health(health_path(path), _health(False, state="stopped"))
    assert main(["health", "--store", str(path)]) == 1
    assert "the agent stopped" in capsys.readouterr().out


async def test_a_task_that_dies_is_restarted_and_shows_in_health_and_watchdog(mosquitto, tmp_path, caplog):
    from edge.agent.health import health_path, read_health

    sock_path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    server.setblocking(False)
    pings: list[float] = []

    def drain() -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                if server.recv(200) == b"WATCHDOG=1":
                    pings.append(time.monotonic())

    cfg = make_config(tmp_path / "state", mosquitto.port,
                      [{"id": "d1", "kind": "virtual", "options": {"profile": "sine", "interval_s": 0.1}}])
    agent = Agent(cfg, build_sources(cfg), notifier=Notifier({"NOTIFY_SOCKET": sock_path,
                                                               "WATCHDOG_USEC": "1000000"}))
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.ready.wait(), 30)
    original = agent.store.ack_and_fetch

    def broken(*args, **kwargs):
        raise RuntimeError("outbox cursor bug")

    try:
        agent.store.ack_and_fetch = broken
        file_saw_it = False
        silent_from = None  # pings received when the pump was first seen dead
        for _ in range(1200):  # the pump dies, waits 1, 2, 4 s between restarts
            await asyncio.sleep(0.1)
            drain()  # no await between this and the check below: every ping sent so far is counted
            if silent_from is None and agent.supervisor.tasks["pump"].state != "running":
                silent_from = len(pings)
            health = read_health(health_path(cfg.store_path))
            file_saw_it |= any("task pump is not running" in p for p in health["problems"])
            if file_saw_it and agent.supervisor.tasks["pump"].restarts >= 3:
                break
        assert file_saw_it and not health["ok"] and silent_from is not None
        assert health["tasks"]["pump"]["last_error"] == "RuntimeError: outbox cursor bug"
        assert agent.supervisor.tasks["pump"].restarts >= 3
        # neither while it waits to restart nor in the moments it runs before dying again
        assert len(pings) == silent_from, "watchdog pinged while the pump was crash-looping"
        agent.store.ack_and_fetch = original
        for _ in range(1200):
            await asyncio.sleep(0.1)
            drain()
            if agent.supervisor.all_alive() and len(pings) > silent_from:
                break
        assert agent.supervisor.all_alive() and agent.health().ok
        assert len(pings) > silent_from, "watchdog pings did not resume"
    finally:
        agent.store.ack_and_fetch = original
        agent.request_stop()
        await asyncio.wait_for(task, 30)
        server.close()
    died = [r for r in caplog.records if "task pump died" in r.getMessage()]
    assert died and died[0].exc_info and "outbox cursor bug" in str(died[0].exc_info[1])
