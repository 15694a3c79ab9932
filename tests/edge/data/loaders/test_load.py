"""Choosing a loader by name: unknown formats, unreadable files and misspelt time zones are loader errors. Fixture files in the real formats; malformed lines are named file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.data import loaders as L

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def test_missing_file_and_unknown_format_are_loader_errors(tmp_path):
    with pytest.raises(L.LoaderError, match="cannot read"):
        L.load_cer(tmp_path / "nope.txt")
    with pytest.raises(L.LoaderError, match="unknown format"):
        L.load(tmp_path, "xml")
    (tmp_path / "x.csv").write_text("when,value\n1,2\n")
    with pytest.raises(L.LoaderError, match=r"x\.csv:1: missing the time column"):
        L.load_generic(tmp_path / "x.csv")


def test_a_misspelt_time_zone_is_a_loader_error_with_suggestions(tmp_path):
    path = tmp_path / "house.csv"
    path.write_text("timestamp,power_w\n2024-03-01 00:00,500\n")
    with pytest.raises(L.LoaderError, match=r"unknown time zone 'Europe/Amsterdm'.*did you mean Europe/Amsterdam"):
        L.load(path, "generic", tz="Europe/Amsterdm")
    with pytest.raises(L.LoaderError, match=r"unknown time zone '../etc'"):
        L.load(path, "generic", tz="../etc")
    assert len(L.load(path, "generic", tz="Europe/Amsterdam")[0].ts_s) == 1
