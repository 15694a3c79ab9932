"""CER / ISSDA day codes, DST half-hours, the fast and the line parser. Fixture files in the real formats; malformed lines are named file:line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from edge.data import loaders as L
from edge.data.loaders import cer

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def _utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


def test_cer_parses_meters_days_and_dst_half_hours():
    series = L.load_cer(FIX / "cer" / "File1.txt")
    assert [s.meter_id for s in series] == ["1392", "1951"]
    s = series[0]
    assert len(s) == 2 * 48 + 4 and s.source == "cer" and s.resolution_s == 1800
    # day 195 = 2009-07-14, Irish summer time: local midnight is 23:00 UTC the day before
    assert s.ts_s[0] == _utc(2009, 7, 13, 23, 0)
    assert np.all(np.diff(s.ts_s) > 0)
    # day 298 = 2009-10-25: 50 half-hours; half-hour 50 starts at 23:30 GMT (local midnight was IST)
    assert s.ts_s[-1] == _utc(2009, 10, 24, 23) + 49 * 1800 == _utc(2009, 10, 25, 23, 30)
    first_line = next(ln for ln in (FIX / "cer" / "File1.txt").read_text().splitlines() if ln.startswith("1392 19501 "))
    assert s.power_w[0] == pytest.approx(float(first_line.split()[2]) * 2000)


def test_cer_rejects_bad_value_naming_file_and_line():
    with pytest.raises(L.LoaderError, match=r"File_bad\.txt:5: kWh '0\.2x1'"):
        L.load_cer(FIX / "cer" / "File_bad.txt")


def test_cer_fast_and_line_parsers_agree(tmp_path):
    import zoneinfo

    fast = cer._load_cer_fast(FIX / "cer" / "File1.txt", zoneinfo.ZoneInfo("Europe/Dublin"))
    slow = cer._load_cer_lines(FIX / "cer" / "File1.txt", zoneinfo.ZoneInfo("Europe/Dublin"))
    assert fast is not None and [s.meter_id for s in fast] == [s.meter_id for s in slow]
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a.ts_s, b.ts_s)
        np.testing.assert_allclose(a.power_w, b.power_w)
    # a bad half-hour code passes pyarrow's parsing but not the fast path's checks: the line parser names it
    bad = tmp_path / "File9.txt"
    bad.write_text("1000 19501 0.5\n1000 19551 0.5\n")
    with pytest.raises(L.LoaderError, match=r"File9\.txt:2: day code 19551"):
        L.load_cer(bad)
