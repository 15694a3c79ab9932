"""Time-ordered splits and the held-out cases every method is judged on."""

from __future__ import annotations

import numpy as np
import pytest

from edge.data import userdata as U
from edge.data.loaders import MeterSeries
from edge.data.profiles import to_profiles
from tests.edge.data.userfiles import household


@pytest.fixture(scope="module")
def prof():
    tr = household(days=60, resolution_s=1800, tz="Europe/London", start="2024-04-01")
    return to_profiles(MeterSeries("m", tr.ts_s, tr.power_w.astype(float), resolution_s=1800), "Europe/London")


def test_split_is_by_time_and_adapts_to_length():
    s = U.time_split(60)
    assert (s.train, s.val, s.test) == ((0, 43), (43, 50), (50, 60))
    y = U.time_split(365)
    assert (y.val[1] - y.val[0], y.test[1] - y.test[0]) == (28, 28)
    with pytest.raises(U.UserDataError, match="20 days cannot give 7 test"):
        U.time_split(20)


def test_cases_only_use_test_days_and_earlier_history(prof):
    split = U.time_split(len(prof.dates))
    test = split.days("test")
    fc = U.forecast_cases(prof, test)
    whole = np.isfinite(prof.load_w).all(axis=1)
    expect = [d for d in test if whole[d] and whole[d - 1] and whole[d - 7]]
    assert fc.target_day.tolist() == expect and len(expect) >= len(test) - 1  # the last local day is partial
    np.testing.assert_array_equal(fc.last_day_w, prof.load_w[fc.target_day - 1])
    np.testing.assert_array_equal(fc.week_ago_w, prof.load_w[fc.target_day - 7])
    rng = np.random.default_rng(0)
    for pattern in ("points", "blocks"):
        for rate in U.IMPUTATION_RATES:
            ic = U.imputation_cases(prof, test, pattern, rate, rng)
            missing = 1 - ic.observed
            assert missing.sum(axis=1) == pytest.approx(np.full(len(ic.day), round(rate * 48)))
    ac = U.anomaly_cases(prof, test, rng)
    assert ac.window_label.mean() == 0.5 and set(ac.kind) - {"none"} <= set(U.ANOMALY_KINDS)
    attacked = ac.window_label == 1
    assert (ac.point_label[attacked].sum(axis=1) >= 2).all() and ac.point_label[~attacked].sum() == 0
    changed = np.abs(ac.load_w - prof.load_w[ac.day]) > 1e-3
    assert not changed[~attacked].any() and (changed[attacked] <= (ac.point_label[attacked] > 0)).all()


def test_block_masks_are_blocks_of_4_to_12():
    rng = np.random.default_rng(1)
    for _ in range(50):
        miss = U.block_mask(48, 0.3, rng)
        assert miss.sum() == 14
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, miss.astype(int), 0])))[::2]
        assert runs.max() <= 24  # adjacent blocks may touch, none is longer than two blocks


def test_history_context_is_the_same_time_of_earlier_days():
    x = np.arange(10 * 4, dtype=np.float32)  # 10 days of 4 points
    x[4 * 2 + 1] = np.nan  # day 2 incomplete
    hist, mask = U.history_context(x, np.array([4 * 3 + 2, 4]), 4, 3)
    np.testing.assert_array_equal(hist[0, 2], x[10:14])  # the day just before the window, same time of day
    np.testing.assert_array_equal(hist[0, 0], x[2:6])
    assert mask[0].tolist() == [1, 0, 1] and not hist[0, 1].any()  # the day holding the NaN is masked
    assert mask[1].tolist() == [0, 0, 1] and not hist[1, :2].any()  # before the series starts: masked
