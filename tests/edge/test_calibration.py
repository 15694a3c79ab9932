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
    assert cal.threshold == max(cal.empirical_threshold, cal.tail_threshold, cal.window_tail_threshold)


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
    # a calm meter's own fit sits far below the bundle's, which stays the floor
    assert m.fitted is not None and m.fitted.threshold < 0.0 and m.threshold == 1.0
    assert m.source.startswith("meter history (20 days; its fit -") and "stays the floor" in m.source
    noisy = MeterThreshold(bundle_threshold=1.0, after_days=14)
    for day in range(20):
        for logit in rng.normal(2.0, 0.3, 48):  # a household whose normal scores above the bundle's cut
            noisy.observe(day, logit)
    noisy.refit(20)
    assert noisy.threshold > 2.0 and noisy.source == "meter history (20 days)"
    m.observe(30, float("nan"))  # a failed score is ignored
    assert 30 not in m.daily_max


def _heavy_days(rng, n_days: int, per_day: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Clean window logits with a heavy tail: a level per day plus Student-t (10 dof, a generalized
    Pareto tail with xi 0.1, heavier than the real series' validation windows: xi -0.14 and -0.44)
    AR(1) noise (phi 0.9: overlapping windows move together), ``per_day`` windows a day."""
    e = rng.standard_t(10, (n_days, per_day)) * 0.5 * np.sqrt(1 - 0.9**2)
    for t in range(1, per_day):
        e[:, t] += 0.9 * e[:, t - 1]
    return (-3.0 + rng.normal(0.0, 0.3, (n_days, 1)) + e).ravel(), np.repeat(np.arange(n_days), per_day)


def _rates_from_ten_days(n_fits: int = 200) -> tuple[float, float]:
    """(mean alarm-day rate on fresh clean days of thresholds fitted on 10 days, the same for the
    empirical bound and the normal quantile of daily maxima alone)."""
    from statistics import NormalDist

    rng = np.random.default_rng(11)
    fresh = daily_max(*_heavy_days(rng, 2000))
    ours, plain = [], []
    for _ in range(n_fits):
        cal = fit_threshold(*_heavy_days(rng, 10), target_per_month=1.0)
        quantile = cal.tail_center + cal.tail_spread * NormalDist().inv_cdf(1 - 1 / 30)
        ours.append(np.mean(fresh > cal.threshold))
        plain.append(np.mean(fresh > max(cal.empirical_threshold, quantile)))
    return float(np.mean(ours)), float(np.mean(plain))


def test_ten_days_of_heavy_tailed_windows_hold_one_false_alarm_a_month():
    ours, plain = _rates_from_ten_days()
    budget = 1 / 30
    assert ours <= 1.25 * budget  # a month of fresh clean days sees about one alarm day
    # the check can fail: the bounds of ten daily maxima alone fire far more often
    assert plain > 1.25 * budget and plain > 1.5 * ours


def test_the_window_tail_recovers_a_known_quantile():
    from edge.calibration import gpd_pwm, window_tail_threshold

    rng = np.random.default_rng(12)
    scores = rng.exponential(1.0, 3000)  # P(score > x) = exp(-x): a generalized Pareto tail with xi 0
    tail = window_tail_threshold(scores, windows_per_day=10, p_day=0.03)
    assert tail.p_window == pytest.approx(0.003)
    assert tail.threshold == pytest.approx(-np.log(0.003), rel=0.08)
    assert tail.exceedances == 300 and abs(tail.shape) < 0.15
    xi, sigma = gpd_pwm((rng.pareto(1 / 0.3, 4000) + 1 - 1) * 2.0)  # Lomax: GPD with xi 0.3, sigma 2 * 0.3
    assert xi == pytest.approx(0.3, abs=0.07) and sigma == pytest.approx(0.6, rel=0.1)
    assert window_tail_threshold(scores[:15], 10, 0.03) is None  # too few scores for a tail


def test_the_window_tail_is_used_only_where_the_days_cannot_show_the_budget():
    rng = np.random.default_rng(13)
    short = fit_threshold(*_heavy_days(rng, 10))
    assert np.isfinite(short.window_tail_threshold) and short.tail_exceedances == 48
    assert short.threshold == max(short.empirical_threshold, short.tail_threshold, short.window_tail_threshold)
    assert short.windows_per_day == 48 and "Pareto" in short.method
    long = fit_threshold(*_heavy_days(rng, 60))  # 2 alarm days allowed: the days show the budget
    assert np.isnan(long.window_tail_threshold) and "Pareto" not in long.method


def test_student_t_quantiles():
    from edge.calibration import student_t_quantile

    assert student_t_quantile(0.975, 9) == pytest.approx(2.2622, abs=1e-3)
    assert student_t_quantile(0.95, 1) == pytest.approx(6.3138, abs=1e-3)
    assert student_t_quantile(0.975, 2000) == pytest.approx(1.9612, abs=1e-3)
    with pytest.raises(CalibrationError):
        student_t_quantile(0.2, 5)


def test_an_alarm_is_held_until_the_windows_stay_clean_for_the_release_time():
    """A flag that crosses its threshold up and down within the release time is one alarm; it
    drops once no window has fired for ``release_after_s``; a new crossing after that is a new one."""
    from edge.calibration import AlarmHold, alarm_episodes

    t_s = 1800.0 * np.arange(40)
    raw = np.zeros(40, bool)
    raw[[3, 5, 8, 9, 13]] = True  # flicker: gaps of 1, 2, 0 and 3 windows (<= 2 h)
    raw[30] = True  # 8.5 h after the last: a second alarm
    hold = AlarmHold(release_after_s=2 * 3600.0)
    published = np.array([hold.update(bool(f), t) for f, t in zip(raw, t_s, strict=True)])
    assert alarm_episodes(raw) == 5 and alarm_episodes(published) == 2
    up = np.flatnonzero(published)
    assert up[0] == 3 and 16 in up and 17 not in up  # released 4 windows (2 h) after window 13
    assert published[30:34].all() and not published[34:].any() and hold.since_s is None
    follow = AlarmHold(release_after_s=0.0)
    assert [follow.update(bool(f), t) for f, t in zip(raw, t_s, strict=True)] == raw.tolist()


def test_a_held_alarm_says_so_in_the_published_result():
    from edge.agent.inference import hold_alarm
    from edge.calibration import AlarmHold

    hold = AlarmHold(release_after_s=3600.0)
    first = hold_alarm({"anomaly": True, "window_end_s": 0.0}, hold)
    assert first["anomaly"] and first["window_anomaly"] and not first["anomaly_held"] and first["alarm_since_s"] == 0
    later = hold_alarm({"anomaly": False, "window_end_s": 1800.0}, hold)
    assert later["anomaly"] and later["anomaly_held"] and not later["window_anomaly"] and later["alarm_since_s"] == 0
    done = hold_alarm({"anomaly": False, "window_end_s": 3600.0}, hold)
    assert not done["anomaly"] and not done["anomaly_held"] and done["alarm_since_s"] is None
