"""The demo's subscriber: the run's seconds count from the gateway's own online status, not from a
status an earlier run left retained."""

from __future__ import annotations

from export.demo_collector import Collector
from export.demo_gateway import BrokerSettings


def test_only_a_fresh_online_status_starts_the_run() -> None:
    collector = Collector(BrokerSettings())
    collector.messages += [(0.0, "unimeter/demo/status", {"state": "online", "ts": "2026-01-01T00:00:00.000Z"}),
                           (0.0, "unimeter/demo/p1/reading", {"ts": "2026-11-30T12:00:01.000Z"})]
    noon = 1796040000.0  # 2026-11-30T12:00:00Z
    assert not collector.gateway_online_since(noon)  # only an old, retained "online"
    collector.messages.append((0.0, "unimeter/demo/status", {"state": "online", "ts": "2026-11-30T12:00:02.000Z"}))
    assert collector.gateway_online_since(noon)
