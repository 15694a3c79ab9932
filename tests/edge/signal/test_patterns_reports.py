"""Multi-home usage patterns and natural-language reports."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from edge.signal.errors import SignalInputError
from edge.signal.nilm import Session
from edge.signal.patterns import usage_pattern
from edge.signal.reports import home_report, report_dict, session_sentence, zone_report


def _ts(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_home_sentence_in_the_seed_style():
    s = Session("tv", _ts(2015, 5, 1, 18, 0), _ts(2015, 5, 1, 20, 45), "2")
    assert session_sentence(s, "Home 2") == "Home 2 was watching TV from 18:00 to 20:45 on 1 May 2015."
    assert session_sentence(s, "XYZ (Home ID: 2)", user="Peter (User ID: 123)") == (
        "Peter (User ID: 123) living in XYZ (Home ID: 2) was watching TV from 18:00 to 20:45 "
        "on 1 May 2015.")
    # local time zone (CEST = UTC+2 in May)
    assert "from 20:00 to 22:45" in session_sentence(s, "Home 2", tz="Europe/Copenhagen")


def test_home_report_orders_sessions_and_names_both_dates_across_midnight():
    late = Session("washing_machine", _ts(2015, 5, 1, 23, 30), _ts(2015, 5, 2, 0, 45))
    early = Session("kettle", _ts(2015, 5, 1, 7, 0), _ts(2015, 5, 1, 7, 3))
    lines = home_report([late, early], "Home 7")
    assert lines == [
        "Home 7 was boiling the kettle from 07:00 to 07:03 on 1 May 2015.",
        "Home 7 was running the washing machine from 23:30 on 1 May 2015 to 00:45 on 2 May 2015.",
    ]
    d = report_dict([late, early], "Home 7")
    assert d["on_hours"] == {"washing_machine": 1.25, "kettle": 0.05}
    assert d["text"] == lines
    odd = Session("air_fryer", 0, 60)
    assert "was using the air fryer" in session_sentence(odd, "Home 1")


def test_usage_pattern_counts_homes_per_weekday_and_slot():
    monday = _ts(2015, 5, 4)  # a Monday
    sessions = []
    for week in range(2):
        base = monday + week * 7 * 86400
        for home in ("1", "2", "3"):  # three homes watch Monday 19:00-20:00 both weeks
            sessions.append(Session("tv", base + 19 * 3600, base + 20 * 3600, home))
        # home 4 only in week 1, 08:30-09:30 (spans the 06-09 and 09-12 slots)
        if week == 0:
            sessions.append(Session("tv", base + 8.5 * 3600, base + 9.5 * 3600, "4"))
    sessions.append(Session("kettle", monday + 3600, monday + 3700, "5"))
    pat = usage_pattern(sessions, "tv", monday, monday + 14 * 86400)
    assert pat.n_homes == 5
    assert pat.n_days.tolist() == [2] * 7
    assert pat.mean_homes[0, 6] == 3.0  # Monday 18-21
    assert pat.mean_homes[0, 2] == 0.5 and pat.mean_homes[0, 3] == 0.5  # one home, one of 2 weeks
    assert pat.mean_homes[1:].sum() == 0.0
    assert "| Monday | 0.0 | 0.0 | 0.5 | 0.5 | 0.0 | 0.0 | 3.0 | 0.0 |" in pat.to_markdown()
    assert pat.to_dict()["slots"][6] == "18-21"
    with pytest.raises(SignalInputError):
        usage_pattern(sessions, "tv", monday, monday, slot_hours=5)


def test_zone_report_names_the_slots_most_homes_used():
    monday = _ts(2015, 5, 4)
    sessions = [Session("tv", monday + 6 * 3600, monday + 8 * 3600, str(h)) for h in range(1, 6)]
    pat = usage_pattern(sessions, "tv", monday, monday + 7 * 86400)
    lines = zone_report(pat, "4321", ["1", "2", "3", "4", "5"], provider="CompanyA",
                        example_date=datetime(2015, 5, 4))
    assert lines == [
        "CompanyA (service provider of zone 4321) ran Norm Filter on smart meters 1, 2, 3, 4, 5 "
        "and detects that the TV was ON from 06:00 to 09:00 on Monday, 4 May 2015 in 5.0 of 5 "
        "homes on average."]
    assert zone_report(pat, "4321", ["1"], min_share=1.01) == []
    assert np.isclose(pat.mean_homes.sum(), 5.0)
