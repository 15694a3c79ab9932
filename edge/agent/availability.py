"""Per-meter availability: a meter is offline after N missed readings (or a configured time).

A meter's reading interval is learnt from its arrivals (the median of the last gaps between
received readings), so a DSMR 5 meter (1 s), a DSMR 4 meter (10 s) and a ZigBee meter reporting
every 5-60 s each go offline after ``missed`` of *their own* intervals without a reading, plus a
grace of ``grace_s`` for the store's batching and the scheduler. ``offline_after_s`` > 0 fixes
the time for a meter instead. Zigbee2MQTT's availability feature works the same way (an "active"
timeout per device); the state goes to ``<base>/<gw>/<meter>/availability`` as ``online`` or
``offline`` (retained), which every entity of the meter lists beside the gateway's status.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field


@dataclass
class MeterClock:
    """Arrival bookkeeping of one meter."""

    offline_after_s: float = 0.0  # 0: learnt
    last_received_s: float = 0.0
    gaps_s: deque[float] = field(default_factory=lambda: deque(maxlen=15))
    online: bool | None = None  # None: not published yet


@dataclass
class AvailabilityTracker:
    """Decides per meter whether it is online; ``changes(now)`` returns the states to publish."""

    missed: int = 3
    grace_s: float = 2.0
    default_interval_s: float = 10.0  # before two readings have arrived
    meters: dict[str, MeterClock] = field(default_factory=dict)

    def add(self, meter_id: str, offline_after_s: float = 0.0, last_received_s: float = 0.0) -> None:
        clock = self.meters.setdefault(meter_id, MeterClock())
        clock.offline_after_s = offline_after_s
        clock.last_received_s = max(clock.last_received_s, last_received_s)

    def note(self, meter_id: str, received_s: float) -> None:
        """A reading of ``meter_id`` was received at ``received_s`` (gateway clock, UTC s)."""
        clock = self.meters.get(meter_id)
        if clock is None:
            return
        if clock.last_received_s and received_s > clock.last_received_s:
            clock.gaps_s.append(received_s - clock.last_received_s)
        clock.last_received_s = max(clock.last_received_s, received_s)

    def interval_s(self, meter_id: str) -> float:
        gaps = self.meters[meter_id].gaps_s
        return statistics.median(gaps) if len(gaps) >= 2 else self.default_interval_s

    def timeout_s(self, meter_id: str) -> float:
        """Seconds without a reading after which the meter is offline."""
        clock = self.meters[meter_id]
        if clock.offline_after_s > 0:
            return clock.offline_after_s
        return self.missed * self.interval_s(meter_id) + self.grace_s

    def is_online(self, meter_id: str, now_s: float) -> bool:
        clock = self.meters[meter_id]
        return bool(clock.last_received_s) and now_s - clock.last_received_s <= self.timeout_s(meter_id)

    def changes(self, now_s: float) -> list[tuple[str, bool]]:
        """(meter, online) for every meter whose state changed (or was never published)."""
        out = []
        for meter_id, clock in self.meters.items():
            online = self.is_online(meter_id, now_s)
            if online != clock.online:
                clock.online = online
                out.append((meter_id, online))
        return out

    def forget(self) -> None:
        """Publish every state again (after a reconnect with a clean session)."""
        for clock in self.meters.values():
            clock.online = None
