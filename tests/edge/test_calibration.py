"""Thresholds fitted to a false-alarm budget (trainer on validation, agent per meter)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.calibration import CalibrationError, alarm_days, daily_max, fit_threshold, recalibrate


def _clean(n_days: int, per_day: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(-3.0, 0.5, n_days * per_day), np.repeat(np.arange(n_days), per_day)


def test_short_validation_sits_above_every_clean_day():
    scores, day = _clean(10)
    cal = fit_threshold(scores, day)
    assert cal.threshold > scores.max() and cal.false_alarm_days == 0
    assert cal.n_days == 10 and cal.n_windows == 480
    assert cal.threshold == max(cal.empirical_threshold, cal.tail_threshold)


def test_the_budget_holds_on_unseen_clean_days():
    scores, day = _clean(60, seed=1)
    cal = fit_threshold(scores, day, target_per_month=1.0)
    fresh, fresh_day = _clean(600, seed=2)  # 20 months of clean days never used to fit
    per_month = alarm_days(fresh, fresh_day, cal.threshold) * 30 / 600
    assert per_month <= 1.5  # the budget (1/month) within the sampling noise of 20 months
    loose = fit_threshold(scores, day, target_per_month=10.0)
    assert loose.threshold < cal.threshold


def test_a_long_validation_may_use_its_allowance():
    scores, day = _clean(90, seed=3)
    cal = fit_threshold(scores, day, target_per_month=2.0)  # 6 alarm days allowed in 90
    assert cal.false_alarm_days <= 6


def test_recalibration_waits_for_enough_days_and_resists_one_attack():
    peaks = daily_max(*_clean(13, seed=4))
    assert recalibrate(peaks, min_days=14) is None
    peaks = daily_max(*_clean(20, seed=4))
    calm = recalibrate(peaks, min_days=14)
    attacked = peaks.copy()
    attacked[5] = 8.0  # one real attack in the meter's history
    hit = recalibrate(attacked, min_days=14)
    assert calm is not None and hit is not None and hit.threshold < 8.0
    assert abs(hit.threshold - calm.threshold) < 0.5


def test_bad_scores_are_refused():
    with pytest.raises(CalibrationError, match="at least 3 days"):
        fit_threshold(np.zeros(4), np.array([0, 0, 1, 1]))
    with pytest.raises(CalibrationError, match="non-finite"):
        fit_threshold(np.array([0.0, np.nan, 1.0]), np.arange(3))


def test_alarm_episodes_count_rising_edges():
    from edge.calibration import alarm_episodes

    assert alarm_episodes([0, 1, 1, 1, 0, 0, 1, 0]) == 2
    assert alarm_episodes([1, 1, 0, 1]) == 2 and alarm_episodes([]) == 0


def test_meter_threshold_switches_to_the_meters_own_history():
    from edge.calibration import MeterThreshold

    rng = np.random.default_rng(5)
    m = MeterThreshold(bundle_threshold=1.0, after_days=14)
    for day in range(20):
        for logit in rng.normal(-4.0, 0.3, 48):  # a calm meter: its own normal is far below the bundle's
            m.observe(day, logit)
        m.refit(day + 1)
        if day < 13:
            assert m.threshold == 1.0 and m.source.startswith("bundle")
    assert m.source == "meter history (20 days)" and m.threshold < 0.0
    m.observe(30, float("nan"))  # a failed score is ignored
    assert 30 not in m.daily_max
