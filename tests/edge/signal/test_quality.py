"""Data-quality equations (seed 002 eqs. 1-5) on hand-computed examples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.signal.errors import SignalInputError
from edge.signal.quality import (
    activity,
    availability,
    expected_samples,
    fleet_mean,
    noise_threshold,
    quality_summary,
    quality_vector,
    sample_phase,
)


def test_expected_samples_follow_the_sample_phase():
    # T_P = 1000 s, T_s = 100 s. Phase 30 s: samples at 30, 130, ..., 930 -> 10 = floor(970/100)+1
    assert expected_samples(1000, 30, 100) == 10 == int(np.floor((1000 - 30) / 100)) + 1
    # seed Figure 3: the same meter can have 11 samples in one period and 10 in the next.
    assert expected_samples(1050, 0.0, 100) == 11
    assert expected_samples(1050, 50.0, 100) == 10
    # boundary: phase 0 and T_P a multiple of T_s -- the sample at T_P belongs to the next period
    assert expected_samples(1000, 0.0, 100) == 10
    assert sample_phase(period_start_s=1000, anchor_ts_s=30, sample_period_s=100) == 30.0
    assert sample_phase(period_start_s=1050, anchor_ts_s=0, sample_period_s=100) == 50.0


def test_availability_per_period_with_a_hole_and_a_duplicate():
    ts = np.arange(0, 7200, 360.0) + 30  # 10 per hour
    ts = np.delete(ts, [3, 4])  # 2 lost in the first hour
    ts = np.append(ts, ts[-1])  # a duplicate must not count twice
    av = availability(ts, 360, 3600, start_s=0, end_s=7200)
    assert av["n_max"].tolist() == [10, 10]
    assert av["n_observed"].tolist() == [8, 10]
    np.testing.assert_allclose(av["q"], [0.8, 1.0])


def test_fleet_mean_and_quality_vector():
    q = np.array([[1.0, 0.5, np.nan], [0.0, 0.5, 1.0]])
    np.testing.assert_allclose(fleet_mean(q), [0.5, 0.5, 0.5])  # a silent meter counts as 0
    meter_a = np.arange(0, 7200, 60.0)  # complete, 1 min
    meter_b = np.arange(0, 3600, 600.0)  # 10 min, silent in the second hour
    qv = quality_vector([meter_a, meter_b], [60, 600], 0, 7200)
    np.testing.assert_allclose(qv, [1.0, 0.5])
    with pytest.raises(SignalInputError):
        fleet_mean(np.zeros((0, 3)))


def test_activity_uses_a_strict_noise_threshold():
    f = np.array([100, 103, 120, 120, 90, 91.0])
    # diffs: +3, +17, 0, -30, +1 with eps = 5
    assert activity(f, 5.0).tolist() == [False, True, False, True, False]
    assert activity(f, 17.0).tolist() == [False, False, False, True, False]  # strict >
    rng = np.random.default_rng(0)
    noise = 200 + rng.normal(0, 4, 5000)
    eps = noise_threshold(noise, k=3.0)
    assert 15 < eps < 19  # 3 sigma of the difference of 4 W noise: 3 * 4 * sqrt(2)
    assert activity(noise, eps).mean() < 0.01


def test_quality_summary_is_json_ready_and_counts_problems():
    ts = np.arange(0, 3600 * 3, 60.0)
    p = np.full(ts.size, 250.0)
    p[10:20] = np.nan  # 10-sample gap
    p[100] = 5000  # activity
    ts[50], ts[51] = ts[51], ts[50]  # out of order
    s = quality_summary("m-1", ts, p, 60.0)
    json.dumps(s)  # plain types only
    assert s["expected_samples"] == 180
    assert s["observed_samples"] == 170
    assert s["availability"] == pytest.approx(170 / 180)
    assert s["n_gaps"] == 1 and s["longest_gap_s"] == 600.0
    assert s["gap_length_histogram"]["6-15"] == 1
    assert s["out_of_order_samples"] == 1
    assert s["hourly_q"] == [pytest.approx(50 / 60, abs=1e-4), 1.0, 1.0]
    assert s["activity_fraction"] > 0
    with pytest.raises(SignalInputError):
        quality_summary("m", ts, p[:-1], 60.0)
