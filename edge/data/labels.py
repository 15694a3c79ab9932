"""Labelled anomalies a user knows about: a CSV of intervals -> per-slot labels on daily profiles.

The file (one interval a line; header required)::

    start,end[,meter_id][,kind]
    2024-03-04T18:00:00,2024-03-04T21:30:00,house,theft
    2024-03-10,2024-03-11,,meter fault

``start``/``end``: ISO 8601 or epoch seconds; a bare date is its local midnight; times without a
UTC offset are local times of the meter's zone (``tz``). ``end`` is exclusive. ``meter_id`` empty
or absent: the interval applies to every meter. ``kind`` is free text (kept for reports).
Labels fine-tune the anomaly head (``anomaly_point`` per slot, ``window_label`` per day) and
judge the calibrated threshold; without a labels file the anomaly task trains on injected
attacks only.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.data.loaders import LoaderError, LocalClock, parse_timestamp
from edge.data.profiles import MeterProfiles, utc_offsets_s

DAY_S = 86400


@dataclass(frozen=True)
class LabelInterval:
    """One labelled anomaly: [start_s, end_s) in UTC epoch seconds."""

    start_s: int
    end_s: int
    meter_id: str | None = None
    kind: str = ""


def _stamp(path: Path, lineno: int, text: str, clock: LocalClock) -> int:
    text = text.strip()
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        text += "T00:00:00"
    return parse_timestamp(path, lineno, text, clock)


def load_labels(path: str | Path, tz: str | None = None) -> list[LabelInterval]:
    """Read a labels CSV (see the module docstring); errors name the file and line."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise LoaderError(path, None, f"cannot read: {e}") from e
    if not rows:
        raise LoaderError(path, None, "empty labels file")
    cols = [c.strip().lower() for c in rows[0]]
    missing = [c for c in ("start", "end") if c not in cols]
    if missing:
        raise LoaderError(path, 1, f"labels need columns start and end (missing {', '.join(missing)}); got {cols}")
    i_s, i_e = cols.index("start"), cols.index("end")
    i_m = cols.index("meter_id") if "meter_id" in cols else None
    i_k = cols.index("kind") if "kind" in cols else None
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(cols):
            raise LoaderError(path, lineno, f"expected {len(cols)} columns, got {len(row)}")
        clock = LocalClock(tz, strict=False)
        start, end = _stamp(path, lineno, row[i_s], clock), _stamp(path, lineno, row[i_e], clock)
        if end <= start:
            raise LoaderError(path, lineno, f"end {row[i_e]!r} is not after start {row[i_s]!r}")
        meter = (row[i_m].strip() or None) if i_m is not None else None
        out.append(LabelInterval(start, end, meter, row[i_k].strip() if i_k is not None else ""))
    return out


def label_profiles(intervals: list[LabelInterval], prof: MeterProfiles) -> np.ndarray:
    """uint8 [D, L]: 1 where a slot of ``prof`` overlaps a labelled interval of its meter."""
    res, steps = prof.resolution_s, prof.steps_per_day
    out = np.zeros((len(prof.dates), steps), np.uint8)
    if not len(prof.dates):
        return out
    days = prof.dates.astype("datetime64[D]").astype(np.int64)
    row_of = {int(d): i for i, d in enumerate(days)}
    for iv in intervals:
        if iv.meter_id not in (None, prof.household_id):
            continue
        edges = np.array([iv.start_s, iv.end_s - 1], np.int64)
        local = edges + utc_offsets_s(edges, prof.tz)
        first, last = int(local[0] // res), int(local[1] // res)
        for slot in range(first, last + 1):
            day, k = divmod(slot, steps)
            if day in row_of:
                out[row_of[day], k] = 1
    return out


def describe(intervals: list[LabelInterval]) -> str:
    """One line for logs: how many intervals over how many hours."""
    hours = sum(iv.end_s - iv.start_s for iv in intervals) / 3600
    first = min((iv.start_s for iv in intervals), default=0)
    when = dt.datetime.fromtimestamp(first, dt.UTC).date().isoformat() if intervals else "-"
    return f"{len(intervals)} labelled interval(s), {hours:.1f} h in all, first {when}"
