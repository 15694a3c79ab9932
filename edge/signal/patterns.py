"""Multi-home usage patterns (seed 002 §5.4, Table 1).

The number of homes using an appliance in each 3-hour slot, averaged per weekday over the weeks
observed: "how many in the neighbourhood are watching TV on Mondays 18-21". A home counts in a
slot of a date if any of its sessions overlaps the slot (local time, ``utc_offset_s``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from edge.signal.errors import SignalInputError
from edge.signal.nilm.normfilter import Session

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DAY_S = 86400.0


@dataclass
class UsagePattern:
    appliance: str
    slot_hours: int
    mean_homes: np.ndarray  # [7, 24 // slot_hours]: mean homes using it, per weekday and slot
    n_days: np.ndarray  # [7]: dates of each weekday in the window
    n_homes: int

    @property
    def slot_labels(self) -> list[str]:
        h = self.slot_hours
        return [f"{a:02d}-{a + h:02d}" for a in range(0, 24, h)]

    def to_markdown(self) -> str:
        head = "| weekday | " + " | ".join(self.slot_labels) + " |"
        rule = "|---" * (len(self.slot_labels) + 1) + "|"
        rows = [f"| {WEEKDAYS[d]} | " + " | ".join(f"{v:.1f}" for v in self.mean_homes[d]) + " |"
                for d in range(7)]
        return "\n".join([head, rule, *rows])

    def to_dict(self) -> dict:
        return {"appliance": self.appliance, "slot_hours": self.slot_hours,
                "slots": self.slot_labels, "weekdays": list(WEEKDAYS), "n_homes": self.n_homes,
                "mean_homes": np.round(self.mean_homes, 3).tolist(),
                "n_days": self.n_days.astype(int).tolist()}


def usage_pattern(sessions: Iterable[Session], appliance: str, start_s: float, end_s: float,
                  slot_hours: int = 3, utc_offset_s: float = 0.0, n_homes: int | None = None
                  ) -> UsagePattern:
    """Table 1 for one appliance over whole local days in ``[start_s, end_s)``."""
    if 24 % slot_hours:
        raise SignalInputError(f"slot_hours must divide 24, got {slot_hours}")
    day0 = np.floor((start_s + utc_offset_s) / DAY_S)
    n_dates = int(np.ceil((end_s + utc_offset_s) / DAY_S) - day0)
    if n_dates <= 0:
        raise SignalInputError("end_s must be after start_s")
    n_slots = 24 // slot_hours
    slot_s = slot_hours * 3600.0
    used: dict[str, np.ndarray] = {}
    homes = set()
    for s in sessions:
        homes.add(s.home_id)
        if s.appliance != appliance:
            continue
        grid = used.setdefault(s.home_id, np.zeros(n_dates * n_slots, dtype=bool))
        a = int(np.floor((s.start_s + utc_offset_s - day0 * DAY_S) / slot_s))
        b = int(np.ceil((s.end_s + utc_offset_s - day0 * DAY_S) / slot_s))
        grid[max(a, 0):min(b, grid.size)] = True
    count = np.zeros((n_dates, n_slots))
    for grid in used.values():
        count += grid.reshape(n_dates, n_slots)
    # 1970-01-01 (epoch day 0) was a Thursday: weekday index 3
    weekday = ((day0 + np.arange(n_dates) + 3) % 7).astype(int)
    n_days = np.bincount(weekday, minlength=7).astype(float)
    sums = np.zeros((7, n_slots))
    np.add.at(sums, weekday, count)
    mean = sums / np.maximum(n_days, 1)[:, None]
    return UsagePattern(appliance, slot_hours, mean, n_days,
                        n_homes if n_homes is not None else len(homes))
