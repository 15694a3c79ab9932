"""Lifecycle: sd_notify READY/WATCHDOG only while the pipeline is healthy; the health command."""

from __future__ import annotations

import asyncio
import socket
import time

from edge.agent.__main__ import main
from edge.agent.agent import Agent
from edge.agent.notify import Notifier
from edge.agent.simulated import build_sources
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
                      [{"id": "w1", "kind": "sim", "options": {"profile": "sine", "interval_s": 0.1}}])
    agent = Agent(cfg, build_sources(cfg), notifier=Notifier({"NOTIFY_SOCKET": sock_path,
                                                               "WATCHDOG_USEC": "1000000"}))
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.ready.wait(), 30)
    await collect(2.0)
    assert any(m.startswith(b"READY=1") for _, m in pings)
    healthy_pings = [t for t, m in pings if m == b"WATCHDOG=1"]
    assert len(healthy_pings) >= 2
    original = agent.store.commit_readings

    def stuck_commit(*args, **kwargs):  # a hung disk: the commit does not return for 6 s
        time.sleep(6.0)
        return original(*args, **kwargs)

    agent.store.commit_readings = stuck_commit
    t_stuck = time.monotonic()
    await collect(5.5)
    agent.store.commit_readings = original
    await collect(3.0)
    agent.request_stop()
    await asyncio.wait_for(task, 30)
    await collect(0.2)  # STOPPING=1 is already in the socket buffer
    server.close()
    stalled = [t for t, m in pings if m == b"WATCHDOG=1" and t_stuck + 3.5 < t < t_stuck + 5.5]
    assert not stalled, "watchdog pinged while the writer was stuck"
    assert any(m == b"WATCHDOG=1" for t, m in pings if t > t_stuck + 6.5), "pings did not resume"
    assert any(m == b"STOPPING=1" for _, m in pings)


def test_health_command_checks_age_of_last_reading(tmp_path, capsys):
    path = tmp_path / "agent.sqlite"
    assert main(["health", "--store", str(path)]) == 1  # no store yet
    store = ReadingStore(path)
    now = time.time()
    store.commit_readings([Reading("m", now - 300, now - 300, 5.0)])
    assert main(["health", "--store", str(path), "--max-age-s", "120"]) == 1
    assert "unhealthy" in capsys.readouterr().out
    store.commit_readings([Reading("m", now, now, 5.0)])
    store.close()
    assert main(["health", "--store", str(path), "--max-age-s", "120"]) == 0
    assert "healthy: last reading" in capsys.readouterr().out
