"""The norm filter (seed 002 §4.4): purge sessions too short and merge those too close, twice.

Seed 002 (TVs): purge ON sessions shorter than 10 min, merge sessions separated by less than
15 min of OFF time, then purge shorter than 25 min and merge closer than 30 min. The stages are a
per-appliance data table; ``NORM_SETTINGS`` holds defaults for the simulator's appliances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.signal.errors import SignalInputError
from edge.signal.runs import runs


@dataclass(frozen=True)
class NormStage:
    purge_s: float  # drop ON sessions shorter than this
    merge_s: float  # join ON sessions separated by OFF time shorter than this


@dataclass(frozen=True)
class NormFilterConfig:
    stages: tuple[NormStage, ...] = (NormStage(600, 900), NormStage(1500, 1800))


@dataclass(frozen=True)
class Session:
    """One use of an appliance: ON during ``[start_s, end_s)`` (UTC epoch seconds)."""

    appliance: str
    start_s: float
    end_s: float
    home_id: str = ""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


# Per-appliance norm settings; appliances not listed are not filtered. TV is seed 002's table;
# the others are looser because their normal uses are shorter.
NORM_SETTINGS: dict[str, NormFilterConfig] = {
    "tv": NormFilterConfig(),
    "computer": NormFilterConfig((NormStage(600, 900), NormStage(1200, 1800))),
    "lighting": NormFilterConfig((NormStage(300, 600), NormStage(900, 1200))),
    # programme appliances: join the detected high-power phases of one cycle (they are separated
    # by long low-power washing phases), then drop what cannot be a whole programme
    "washing_machine": NormFilterConfig((NormStage(120, 3600), NormStage(1800, 3600))),
    "dishwasher": NormFilterConfig((NormStage(120, 3600), NormStage(1800, 3600))),
}


def _check(on, ts_s) -> tuple[np.ndarray, np.ndarray, float]:
    on = np.asarray(on, dtype=bool)
    t = np.asarray(ts_s, dtype=np.float64)
    if on.ndim != 1 or on.shape != t.shape:
        raise SignalInputError(f"on {on.shape} and ts_s {t.shape} must be 1-D of equal length")
    if t.size > 1 and not (np.diff(t) > 0).all():
        raise SignalInputError("ts_s must be strictly increasing")
    step = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    return on, t, step


def sessions_from_on(on, ts_s, appliance: str = "", home_id: str = "") -> list[Session]:
    """ON runs as sessions; a run ends at the timestamp of the first OFF sample after it."""
    on, t, step = _check(on, ts_s)
    starts, stops = runs(on)
    t_end = np.append(t, t[-1] + step) if t.size else t
    return [Session(appliance, float(t[a]), float(t_end[b]), home_id)
            for a, b in zip(starts, stops, strict=True)]


def on_from_sessions(sessions: list[Session], ts_s) -> np.ndarray:
    t = np.asarray(ts_s, dtype=np.float64)
    on = np.zeros(t.size, dtype=bool)
    for s in sessions:
        on[(t >= s.start_s) & (t < s.end_s)] = True
    return on


def filter_sessions(sessions: list[Session], cfg: NormFilterConfig = NormFilterConfig()
                    ) -> list[Session]:
    """Purge then merge, stage by stage (sessions sorted by start)."""
    out = sorted(sessions, key=lambda s: s.start_s)
    for stage in cfg.stages:
        out = [s for s in out if s.duration_s >= stage.purge_s]
        merged: list[Session] = []
        for s in out:
            if merged and s.start_s - merged[-1].end_s < stage.merge_s:
                last = merged[-1]
                merged[-1] = Session(last.appliance, last.start_s, max(last.end_s, s.end_s),
                                     last.home_id)
            else:
                merged.append(s)
        out = merged
    return out


def norm_filter(on, ts_s, cfg: NormFilterConfig = NormFilterConfig()) -> np.ndarray:
    """Filtered ON/OFF series of one appliance (same length as ``on``)."""
    _check(on, ts_s)
    return on_from_sessions(filter_sessions(sessions_from_on(on, ts_s), cfg), ts_s)
