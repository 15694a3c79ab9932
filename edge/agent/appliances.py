"""What a household acts on: appliance uses ("Kettle started 07:02, ran 3 min, 0.11 kWh"), the
state now and the energy of each appliance today, from the NILM decisions of one meter.

The agent runs NILM on a rolling window every ``schedule.nilm_every_s``. A sample is *decided* the
first time it sits at least ``decision_lag_s`` before the window's end (the bundle's calibration:
the model then sees that much of what happened after it, e.g. the end of a kettle's boil); later
windows do not revise it. ``MeterAppliances.add`` takes the decided samples of a window, in time
order, and keeps per appliance:

* the state of the newest decided sample (``on``, ``power_w``: one decision, see
  ``edge.nilm_output``) and the aggregate the decision was bounded by (published rounded so
  that the rules still hold: powers down, the aggregate up, to 0.1 W);
* the use in progress: it starts at the first ON sample; OFF gaps shorter than the appliance's
  ``merge_gap_s`` belong to it (an oven's thermostat, a washing machine between heating and
  spinning); it is *started* once it has run ``min_on_s`` (shorter blips are no event) and
  *finished* when the gap is longer, with its duration and energy;
* the energy of today (the gateway's local day), which starts again at 0 at local midnight.

What must survive a restart or a model update (the energy of today, the use in progress and the
end of the newest decided sample, so nothing is counted or reported twice) is kept in
``<store>.appliances.json`` (``ApplianceState``).

Times in the text are the gateway's local time; payloads also carry UTC epoch seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge.nilm_enrol import Signature, enrol
from edge.nilm_output import Decision, NilmCalibration

log = logging.getLogger(__name__)

EVENT_TYPES = ("started", "finished")


@dataclass
class ApplianceEvent:
    """One use of an appliance starting or finishing (the payload of a non-retained event)."""

    appliance: str  # model key ("washing_machine")
    name: str  # display name ("Washing machine")
    event_type: str  # "started" | "finished"
    start_s: float
    end_s: float | None = None
    energy_kwh: float | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.end_s is None else self.end_s - self.start_s

    def text(self) -> str:
        start = _local(self.start_s).strftime("%H:%M")
        if self.event_type == "started":
            return f"{self.name} started {start}"
        return f"{self.name} started {start}, ran {duration_text(self.duration_s or 0.0)}, " \
               f"{self.energy_kwh:.2f} kWh"

    def payload(self) -> dict:
        out = {"event_type": self.event_type, "appliance": self.appliance, "name": self.name,
               "start_s": self.start_s, "start": _iso(self.start_s), "text": self.text()}
        if self.event_type == "finished":
            out.update(end_s=self.end_s, end=_iso(self.end_s), duration_s=round(self.duration_s, 1),
                       energy_kwh=round(self.energy_kwh, 4))
        return out


def duration_text(seconds: float) -> str:
    """``"3 min"``, ``"1 h 25 min"``, ``"40 s"``."""
    minutes = int(round(seconds / 60))
    if seconds < 60:
        return f"{int(round(seconds))} s"
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


def _local(ts_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_s, dt.UTC).astimezone()


def _iso(ts_s: float | None) -> str | None:
    return None if ts_s is None else dt.datetime.fromtimestamp(ts_s, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class _Use:
    start_s: float
    last_on_end_s: float
    energy_wh: float = 0.0
    started: bool = False  # the "started" event was sent


@dataclass
class _Appliance:
    key: str
    name: str
    merge_gap_s: float
    min_on_s: float
    on: bool = False
    power_w: float = 0.0
    margin: float = 0.0
    use: _Use | None = None
    day: dt.date | None = None
    energy_today_wh: float = 0.0
    last_use: dict | None = None


@dataclass
class MeterAppliances:
    """Decided NILM samples of one meter -> state, uses and daily energy (see module docstring)."""

    names: tuple[str, ...]  # model keys, in graph order, then the enrolled ones
    calibration: NilmCalibration
    resolution_s: float
    display: Mapping[str, str] = field(default_factory=dict)  # key -> display name (default: key)
    enrolled: tuple[Signature, ...] = ()  # appliances the model does not know (edge.nilm_enrol)
    decided_until_s: float = 0.0  # end of the newest decided sample
    aggregate_w: float = 0.0  # the budget of the newest decided sample
    warm: bool = False  # events are reported (a first window was taken, or a saved state restored)
    _apps: dict[str, _Appliance] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for key in self.names:
            c = self.calibration.get(key)
            self._apps[key] = _Appliance(key, self.display.get(key) or key, c.merge_gap_s, c.min_on_s)

    def add(self, start_ts_s: float, decision: Decision, first: int, stop: int) -> list[ApplianceEvent]:
        """Take samples ``first:stop`` of a window starting at ``start_ts_s`` as decided; samples
        already decided by an earlier window are skipped. Returns the events, in time order (none
        for the first window after a start without a saved state: its uses may have been reported
        before the restart)."""
        events: list[ApplianceEvent] = []
        res = self.resolution_s
        for t in range(first, stop):
            ts = start_ts_s + t * res
            if ts + res <= self.decided_until_s + 1e-6:
                continue
            for i, key in enumerate(decision.names):
                app = self._apps.get(key)
                if app is not None:
                    events += self._step(app, ts, bool(decision.on[i, t]), float(decision.power_w[i, t]),
                                         float(decision.margin[i, t]))
            self.decided_until_s = ts + res
            self.aggregate_w = float(decision.budget_w[t])
        if not self.warm:
            self.warm = True
            return []
        return events

    def _step(self, app: _Appliance, ts: float, on: bool, power_w: float, margin: float
              ) -> list[ApplianceEvent]:
        res, out = self.resolution_s, []
        day = _local(ts).date()
        if app.day != day:
            app.day, app.energy_today_wh = day, 0.0
        app.on, app.power_w, app.margin = on, power_w, margin
        app.energy_today_wh += power_w * res / 3600.0
        use = app.use
        if use is not None and not on and ts - use.last_on_end_s >= app.merge_gap_s:
            out += self._finish(app)
            use = None
        if on:
            if use is None:
                use = app.use = _Use(ts, ts)
            use.last_on_end_s = ts + res
            use.energy_wh += power_w * res / 3600.0
            if not use.started and use.last_on_end_s - use.start_s >= max(app.min_on_s, res):
                use.started = True
                out.append(ApplianceEvent(app.key, app.name, "started", use.start_s))
        return out

    def _finish(self, app: _Appliance) -> list[ApplianceEvent]:
        use, app.use = app.use, None
        if use is None or not use.started:
            return []
        event = ApplianceEvent(app.key, app.name, "finished", use.start_s, use.last_on_end_s,
                               use.energy_wh / 1000.0)
        app.last_use = {"start_s": use.start_s, "end_s": use.last_on_end_s,
                        "duration_s": round(use.last_on_end_s - use.start_s, 1),
                        "energy_kwh": round(use.energy_wh / 1000.0, 4), "text": event.text()}
        return [event]

    def state(self) -> dict:
        """What survives a restart: the newest decided sample and per appliance its energy today,
        the use in progress and the last finished use."""
        apps = {}
        for k, a in self._apps.items():
            if a.day is not None:
                apps[k] = {"day": a.day.isoformat(), "energy_today_wh": a.energy_today_wh,
                           "use": asdict(a.use) if a.use is not None else None, "last_use": a.last_use}
        return {"decided_until_s": self.decided_until_s, "appliances": apps}

    def restore(self, state: Mapping) -> None:
        """Continue from ``state()`` of an earlier run: samples up to its newest decided one are
        not counted again, today's energy goes on from where it was (a day that has passed starts
        at 0 with its first sample) and a use in progress goes on, so its events are neither lost
        nor repeated. With a state, the first window reports events (the state says what was
        reported); without one it only sets the states."""
        decided = float(state.get("decided_until_s", 0.0))
        for key, saved in dict(state.get("appliances", {})).items():
            app = self._apps.get(key)
            if app is not None:
                app.day = dt.date.fromisoformat(saved["day"])
                app.energy_today_wh = float(saved["energy_today_wh"])
                app.use = _Use(**saved["use"]) if saved.get("use") else None
                app.last_use = saved.get("last_use")
        if decided > self.decided_until_s:
            self.decided_until_s, self.warm = decided, True

    def snapshot(self) -> dict:
        """The ``appliances`` message body: per appliance its state at ``decided_until_s``."""
        apps = {}
        for key, a in self._apps.items():
            apps[key] = {"name": a.name, "on": a.on, "power_w": math.floor(a.power_w * 10) / 10,
                         "energy_today_kwh": round(a.energy_today_wh / 1000.0, 4),
                         "running_since_s": a.use.start_s if a.use is not None and a.use.started else None,
                         "last_use": a.last_use}
        return {"appliances": apps, "as_of_s": self.decided_until_s, "as_of": _iso(self.decided_until_s),
                "aggregate_w": math.ceil(self.aggregate_w * 10) / 10, "resolution_s": self.resolution_s}


def decided_range(n_bins: int, resolution_s: float, decision_lag_s: float) -> tuple[int, int]:
    """Window indices ``[first, stop)`` a NILM round decides: every bin at least
    ``decision_lag_s`` before the window's end (the earlier ones were decided by earlier rounds,
    ``MeterAppliances.add`` skips them)."""
    lag = int(np.ceil(max(decision_lag_s, 0.0) / resolution_s))
    return 0, max(n_bins - lag, 0)


def consistent_snapshot(body: Mapping) -> list[str]:
    """The consistency rules on a published ``appliances`` body (empty: consistent)."""
    problems, total = [], 0.0
    for key, a in dict(body.get("appliances", {})).items():
        p = float(a.get("power_w") or 0.0)
        if not a.get("on") and p != 0.0:
            problems.append(f"{key}: off at {p} W")
        if a.get("on") and p <= 0.0:
            problems.append(f"{key}: on at 0 W")
        total += p
    if total > float(body.get("aggregate_w", 0.0)) + 1e-6:
        problems.append(f"appliances draw {total:.1f} W, the meter {body.get('aggregate_w')} W")
    return problems


def names_in_order(model_names: Sequence[str], wanted: Sequence[str]) -> tuple[str, ...]:
    """The meter's configured appliances (all of the model's when none are configured), in the
    model's order."""
    if not wanted:
        return tuple(model_names)
    return tuple(n for n in model_names if n in set(wanted))


def tracked(model_names: Sequence[str], wanted: Sequence[str]
            ) -> tuple[tuple[str, ...], tuple[Signature, ...], dict[str, str]]:
    """(the meter's appliances: the model's in its order, then those enrolled by signature; their
    signatures; {appliance: why it cannot be tracked} for the rest of ``wanted``)."""
    enrolled, refused = enrol(a for a in wanted if a not in model_names)
    return (*names_in_order(model_names, wanted), *(s.name for s in enrolled)), enrolled, refused


@dataclass
class ApplianceState:
    """``<store>.appliances.json``: ``MeterAppliances.state()`` per meter, written atomically."""

    path: Path | None
    meters: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None) -> ApplianceState:
        """An unreadable file is logged and started afresh (today's energy counts from now)."""
        if path is None:
            return cls(None)
        p = Path(path)
        try:
            data = json.loads(p.read_text())
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise ValueError("not an object of meter states")
            return cls(p, data)
        except FileNotFoundError:
            return cls(p)
        except (OSError, ValueError) as e:
            log.error("appliance state %s unreadable (%s): today's appliance energy starts again at 0", p, e)
            return cls(p)

    def restore(self, meter_id: str, tracker: MeterAppliances) -> None:
        try:
            tracker.restore(self.meters.get(meter_id, {}))
        except (KeyError, TypeError, ValueError) as e:
            log.error("appliance state of %s unreadable (%s): today's appliance energy starts again at 0",
                      meter_id, e)

    def save(self, trackers: Mapping[str, MeterAppliances]) -> None:
        if self.path is None:
            return
        self.meters.update({mid: t.state() for mid, t in trackers.items()})
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.meters, indent=1))
        os.replace(tmp, self.path)
