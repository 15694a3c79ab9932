"""Natural-language reports from structured results, by templates (seed 002 §5.5).

Home: "Home 2 was watching TV from 18:00 to 20:45 on 1 May 2015."
Zone: "CompanyA (service provider of zone 4321) ran Norm Filter on smart meters 1, 2, 3, 4, 5 and
detects that the TV was ON from 06:00 to 09:00 on Monday, 4 May 2015 in 3 of 5 homes."

Activity phrases per appliance are a data table; unknown appliances get "using the <name>".
Times are shown in a fixed zone (``zoneinfo`` name, default UTC).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from edge.signal.nilm.normfilter import Session
from edge.signal.patterns import WEEKDAYS, UsagePattern

# appliance -> (activity phrase, display name)
ACTIVITY: dict[str, tuple[str, str]] = {
    "tv": ("watching TV", "TV"),
    "kettle": ("boiling the kettle", "kettle"),
    "toaster": ("using the toaster", "toaster"),
    "microwave": ("using the microwave", "microwave"),
    "oven": ("cooking with the oven", "oven"),
    "washing_machine": ("running the washing machine", "washing machine"),
    "dishwasher": ("running the dishwasher", "dishwasher"),
    "tumble_dryer": ("running the tumble dryer", "tumble dryer"),
    "computer": ("using the computer", "computer"),
    "lighting": ("using the lights", "lights"),
    "water_heater": ("heating water", "water heater"),
    "ev": ("charging the car", "EV charger"),
}


def _phrase(appliance: str) -> tuple[str, str]:
    name = appliance.replace("_", " ")
    return ACTIVITY.get(appliance, (f"using the {name}", name))


def _date(d: datetime) -> str:
    return f"{d.day} {d.strftime('%B')} {d.year}"


def _tz(tz: str) -> timezone | ZoneInfo:
    return UTC if tz.upper() == "UTC" else ZoneInfo(tz)


def session_sentence(session: Session, home_label: str, tz: str = "UTC",
                     user: str | None = None) -> str:
    """One sentence for one session; a session across midnight names both dates."""
    zone = _tz(tz)
    a = datetime.fromtimestamp(session.start_s, zone)
    b = datetime.fromtimestamp(session.end_s, zone)
    who = f"{user} living in {home_label}" if user else home_label
    activity, _ = _phrase(session.appliance)
    if a.date() == (b - timedelta(microseconds=1)).date():
        when = f"from {a:%H:%M} to {b:%H:%M} on {_date(a)}"
    else:
        when = f"from {a:%H:%M} on {_date(a)} to {b:%H:%M} on {_date(b)}"
    return f"{who} was {activity} {when}."


def home_report(sessions: Iterable[Session], home_label: str, tz: str = "UTC",
                user: str | None = None) -> list[str]:
    """Sentences for one home's sessions, in time order."""
    return [session_sentence(s, home_label, tz, user)
            for s in sorted(sessions, key=lambda s: (s.start_s, s.appliance))]


@dataclass(frozen=True)
class ZoneSlot:
    weekday: int
    slot: int
    mean_homes: float


def zone_report(pattern: UsagePattern, zone: str, meters: list[str], provider: str = "unimeter",
                algorithm: str = "Norm Filter", min_share: float = 0.5,
                example_date: datetime | None = None) -> list[str]:
    """Sentences for the slots where at least ``min_share`` of the homes used the appliance."""
    _, display = _phrase(pattern.appliance)
    n = max(pattern.n_homes, 1)
    out = []
    for d in range(7):
        for j, label in enumerate(pattern.slot_labels):
            homes = pattern.mean_homes[d, j]
            if pattern.n_days[d] == 0 or homes / n < min_share:
                continue
            a, b = label.split("-")
            day = WEEKDAYS[d]
            if example_date is not None:
                shift = (d - example_date.weekday()) % 7
                day = f"{day}, {_date(example_date + timedelta(days=shift))}"
            out.append(f"{provider} (service provider of zone {zone}) ran {algorithm} on smart "
                       f"meters {', '.join(meters)} and detects that the {display} was ON from "
                       f"{a}:00 to {'00' if b == '24' else b}:00 on {day} in "
                       f"{homes:.1f} of {n} homes on average.")
    return out


def report_dict(sessions: Iterable[Session], home_label: str, tz: str = "UTC") -> dict:
    """Structured + text form for publishing (JSON-ready)."""
    sessions = sorted(sessions, key=lambda s: s.start_s)
    energy = {}
    for s in sessions:
        energy.setdefault(s.appliance, 0.0)
        energy[s.appliance] += s.duration_s
    return {"home": home_label,
            "sessions": [{"appliance": s.appliance, "start_s": s.start_s, "end_s": s.end_s}
                         for s in sessions],
            "on_hours": {k: round(v / 3600.0, 3) for k, v in energy.items()},
            "text": home_report(sessions, home_label, tz)}


__all__ = ["ACTIVITY", "home_report", "report_dict", "session_sentence", "zone_report"]
