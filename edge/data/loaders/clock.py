"""Times as meters and exports write them -> UTC epoch seconds: naive local wall-clock times read
DST-aware in the meter's zone (:class:`LocalClock`), ISO 8601, epoch seconds or a strptime format."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Iterable
from pathlib import Path

from edge.data.loaders.series import LoaderError

log = logging.getLogger(__name__)


class LocalClock:
    """Naive local wall-clock times of one meter -> UTC epoch seconds, DST-aware.

    An ambiguous time (the repeated hour when the clocks go back) maps to its first occurrence
    (summer time) the first time it is seen and to the second (standard time) when it comes again,
    which is how a meter logging local time writes the repeated hour. A time that does not exist
    (the hour skipped when the clocks go forward) raises ``ValueError``.
    """

    def __init__(self, tz: str | dt.tzinfo | None, strict: bool = True) -> None:
        self.zone = zoneinfo.ZoneInfo(tz) if isinstance(tz, str) else (tz or dt.UTC)
        self.strict = strict  # False: a non-existent time is read with the offset before the change
        self.nonexistent = 0  # non-existent times read so (strict=False)
        self._seen: set[dt.datetime] = set()

    def utc_s(self, local: dt.datetime) -> int:
        first = int(local.replace(tzinfo=self.zone, fold=0).timestamp())
        second = int(local.replace(tzinfo=self.zone, fold=1).timestamp())
        if first == second:
            return first
        if dt.datetime.fromtimestamp(first, self.zone).replace(tzinfo=None) != local:
            if not self.strict:
                self.nonexistent += 1
                return first
            raise ValueError(f"{local.isoformat()} does not exist in {self.zone} (the clocks went forward); "
                             "if the file keeps standard time all year, give a fixed-offset zone "
                             "such as Etc/GMT-1")
        if local in self._seen:
            return second
        self._seen.add(local)
        return first


def parse_timestamp(path: Path, lineno: int, text: str, clock: LocalClock | None = None,
                    time_format: str | None = None, hint: str = "", offset_s: int | None = None) -> int:
    """Epoch seconds, or ISO 8601 (or ``time_format``, a ``strptime`` format such as
    ``%d/%m/%Y %H:%M``): with an offset as given; without one, at UTC offset ``offset_s`` (s east
    of UTC, from a separate offset column) or else in ``clock``'s zone (UTC when there is no clock).
    ``hint`` ends the error of an unreadable time (how to give another format)."""
    text = str(text).strip()
    if time_format is None:
        try:
            return int(float(text))
        except ValueError:
            pass
    try:
        stamp = (dt.datetime.strptime(text, time_format) if time_format
                 else dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as e:
        expected = f"time format {time_format!r}" if time_format else "ISO 8601 or epoch seconds" + hint
        raise LoaderError(path, lineno, f"bad timestamp {text!r} ({expected})") from e
    if stamp.tzinfo is not None:
        return int(stamp.timestamp())
    if offset_s is not None:
        return int(stamp.replace(tzinfo=dt.UTC).timestamp()) - offset_s
    if clock is None:
        return int(stamp.replace(tzinfo=dt.UTC).timestamp())
    try:
        return clock.utc_s(stamp)
    except ValueError as e:
        raise LoaderError(path, lineno, str(e)) from e


def warn_nonexistent(path: Path, clocks: Iterable[LocalClock]) -> None:
    n = sum(c.nonexistent for c in clocks)
    if n:
        log.warning("%s: %d local times fall in an hour skipped by a clock change; read with the "
                    "offset before the change", path, n)
