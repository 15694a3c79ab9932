"""Which timestamp a reading gets: the meter's clock, or the receive time when the meter's is bad."""

from __future__ import annotations

import math
from dataclasses import dataclass

from firmware_bridge.reading import ReadingFlag


@dataclass(frozen=True)
class ClockPolicy:
    """Meter clock policy.

    A meter clock that is missing, or further than ``max_skew_s`` from the gateway clock (NTP
    synced on a Pi), is replaced by the receive time and the reading carries CLOCK_FALLBACK. Meters
    drift and some are never set after installation; the gateway clock is the better reference then.
    """

    max_skew_s: float = 300.0

    def apply(self, meter_ts_s: float | None, received_s: float) -> tuple[float, ReadingFlag]:
        if meter_ts_s is None or not math.isfinite(meter_ts_s):
            return received_s, ReadingFlag.CLOCK_FALLBACK
        if abs(meter_ts_s - received_s) > self.max_skew_s:
            return received_s, ReadingFlag.CLOCK_FALLBACK
        return meter_ts_s, ReadingFlag.NONE
