"""The profile history in a real SQLite file: context layout, partial days, restarts, pruning."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from edge.agent.history import ProfileHistory

L, D = 48, 7


def _open(path) -> tuple[sqlite3.Connection, ProfileHistory]:
    db = sqlite3.connect(path, isolation_level=None)
    return db, ProfileHistory(db, 1800, L, D)


def test_context_is_the_days_before_the_window_at_the_same_times(tmp_path):
    db, h = _open(tmp_path / "s.db")
    series = np.arange(10 * L, dtype=float)  # bin k holds k
    h.record("m", 1000, series, np.ones(len(series), bool))
    start = 1000 + 8 * L + 5  # a window that starts mid-day
    ctx = h.context("m", start)
    assert ctx.days == D and ctx.complete
    for k in range(D):
        first = start - (D - k) * L
        np.testing.assert_array_equal(ctx.history_w[k], np.arange(first, first + L) - 1000)


def test_fewer_days_than_d_are_masked_not_invented(tmp_path):
    db, h = _open(tmp_path / "s.db")
    h.record("m", 0, np.full(2 * L, 300.0), np.ones(2 * L, bool))
    ctx = h.context("m", 2 * L)
    assert ctx.days == 2 and not ctx.complete
    np.testing.assert_array_equal(ctx.history_mask, [0, 0, 0, 0, 0, 1, 1])
    assert (ctx.history_w[:5] == 0).all() and (ctx.history_w[5:] == 300).all()


def test_partial_day_is_interpolated_or_dropped_by_coverage(tmp_path):
    db, h = _open(tmp_path / "s.db")
    day = np.linspace(100, 200, L)
    good = day.copy()
    good[10:20] = np.nan  # 79% covered: kept, gap interpolated
    bad = day.copy()
    bad[:30] = np.nan  # 38% covered: masked
    h.record("m", 0, bad, np.isfinite(bad))
    h.record("m", L, good, np.isfinite(good))
    ctx = h.context("m", 2 * L)
    assert ctx.history_mask[-2:].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(ctx.history_w[-1], day, rtol=1e-6)


def test_measured_value_wins_over_a_filled_one(tmp_path):
    db, h = _open(tmp_path / "s.db")
    h.record("m", 0, np.array([5.0, 6.0]), np.array([True, False]))
    h.record("m", 0, np.array([50.0, 60.0]), np.array([False, True]))  # filled 50 must not replace 5
    assert [(k, w, m) for k, w, m in h.bins("m", 0)] == [(0, 5.0, 1), (1, 60.0, 1)]


def test_history_survives_a_restart_and_is_per_meter(tmp_path):
    db, h = _open(tmp_path / "s.db")
    h.record("a", 0, np.full(D * L, 100.0), np.ones(D * L, bool))
    h.record("b", 0, np.full(D * L, 900.0), np.ones(D * L, bool))
    db.close()
    db2, h2 = _open(tmp_path / "s.db")
    assert h2.context("a", D * L).days == D
    assert h2.context("b", D * L).history_w.mean() == pytest.approx(900.0)
    assert db2.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_old_bins_are_pruned_to_d_plus_two_days(tmp_path):
    db, h = _open(tmp_path / "s.db")
    n = 20 * L
    h.record("m", 0, np.ones(n), np.ones(n, bool))
    kept = h.bins("m", 0)
    assert kept[0][0] == (n - 1) - (D + 2) * L
    assert len(kept) == (D + 2) * L + 1


def test_bad_arguments_are_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    with pytest.raises(ValueError, match="steps_per_day"):
        ProfileHistory(db, 1800, 0, 7)
    h = ProfileHistory(db, 1800, L, D)
    with pytest.raises(ValueError, match="equal 1-D"):
        h.record("m", 0, np.ones(3), np.ones(4, bool))
