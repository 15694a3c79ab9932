"""Local wall-clock times -> UTC: the repeated autumn hour in order, the skipped spring hour refused
(or read with the offset before the change), and the other time forms."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edge.data.loaders.clock import LocalClock, parse_timestamp
from edge.data.loaders.series import LoaderError


def test_the_repeated_hour_is_summer_time_first_then_standard_time():
    clock = LocalClock("Europe/London")
    local = dt.datetime(2024, 10, 27, 1, 30)
    first, second = clock.utc_s(local), clock.utc_s(local)
    assert second - first == 3600
    assert dt.datetime.fromtimestamp(first, dt.UTC).hour == 0  # 01:30 BST = 00:30 UTC


def test_the_skipped_hour_is_refused_or_read_with_the_earlier_offset():
    local = dt.datetime(2024, 3, 31, 1, 30)  # does not exist in London
    with pytest.raises(ValueError, match="does not exist"):
        LocalClock("Europe/London").utc_s(local)
    lenient = LocalClock("Europe/London", strict=False)
    assert lenient.utc_s(local) == int(dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.UTC).timestamp())
    assert lenient.nonexistent == 1


def test_timestamps_in_every_form_and_an_unreadable_one_named():
    p = Path("x.csv")
    utc = int(dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC).timestamp())
    assert parse_timestamp(p, 1, str(utc)) == utc
    assert parse_timestamp(p, 1, "2024-01-02T03:04:00Z") == utc
    assert parse_timestamp(p, 1, "2024-01-02 04:04", offset_s=3600) == utc
    assert parse_timestamp(p, 1, "02.01.2024 03:04", time_format="%d.%m.%Y %H:%M") == utc
    with pytest.raises(LoaderError, match=r"x\.csv:9: bad timestamp 'soon'"):
        parse_timestamp(p, 9, "soon")
