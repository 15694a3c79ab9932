"""Gateway fault rules on real-shaped meter data: simulated households' 30-min profiles with the
faults of ``edge.sim.inject``, and the legitimate look-alikes that must not fire (a quantised flat
standby night, PV export at noon, a coarse 1-kWh register)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.data.userdata import history_context
from edge.signal.errors import SignalInputError
from edge.signal.faults import FaultConfig, FaultReport, detect_faults
from edge.sim import inject, simulate_fleet

L, D, RES = 48, 7, 1800.0


def _bins(trace) -> np.ndarray:
    """Whole UTC days of 30-min mean power (W) of a simulated household."""
    k = np.asarray(trace.ts_s, np.int64) // 1800
    first = -(-int(k[0]) // L) * L
    sel = k >= first
    s = np.bincount(k[sel] - first, weights=np.asarray(trace.power_w, float)[sel])
    n = np.bincount(k[sel] - first)
    days = len(s) // L
    return (s / np.maximum(n, 1))[:days * L]


@pytest.fixture(scope="module")
def fleet() -> dict[str, np.ndarray]:
    """Five simulated households, 12 days of January (two of them with PV that exports)."""
    return {t.household_id: _bins(t) for t in simulate_fleet(5, 13, resolution_s=1800, seed=7)}


def _judge(series: np.ndarray, day: int, load: np.ndarray | None = None, cfg: FaultConfig | None = None) -> set:
    """The kinds any rolling window ending on ``day`` finds (``load`` replacing that day)."""
    x = series.astype(np.float64).copy()
    if load is not None:
        x[day * L:(day + 1) * L] = load
    starts = (day - 1) * L + np.arange(L) + 1
    hist, mask = history_context(x, starts, L, D)
    kinds: set = set()
    for i, s in enumerate(starts):
        kinds |= set(detect_faults(x[s:s + L], hist[i], mask[i], RES, cfg).kinds)
    return kinds


def test_clean_days_of_simulated_households_fire_nothing(fleet):
    for hid, series in fleet.items():
        for day in (9, 10, 11):
            assert _judge(series, day) == set(), (hid, day)


def test_each_injected_fault_is_named(fleet):
    rng = np.random.default_rng(4)
    series = fleet["h00000"]
    day = series[10 * L:11 * L]
    assert "stuck" in _judge(series, 10, inject.stuck(day, 10, 21).values)
    assert _judge(series, 10, inject.scaling(day, 10, 21, -1.0).values) == {"zero_run"}
    assert _judge(series, 10, inject.negative(day, rng, 4).values) == {"sign_error"}
    hist = series[3 * L:10 * L].reshape(D, L)
    quiet = int(np.argmin([hist[:, t - 3:t + 4].max() + 10 * max(day[t - 1], day[t + 1]) for t in range(4, 44)])) + 4
    spiked = day.copy()
    spiked[quiet] = day[quiet] + 3000.0  # a corrupt bin at the quietest time of this household's days
    assert _judge(series, 10, spiked) == {"spike"}


def test_pv_export_at_noon_is_normal_but_a_negative_night_bin_is_not(fleet):
    pv = [hid for hid, s in fleet.items() if (s < -10).sum() > 20]
    assert pv, "the simulated fleet has a PV household"
    series = fleet[pv[0]]
    day = series[10 * L:11 * L].copy()
    assert (day[20:30] < -10).any()  # it exports around noon on the day judged
    assert _judge(series, 10) == set()
    night = day.copy()
    night[4] = -abs(night[4]) - 50.0  # 02:00: no history day ever exported then
    assert _judge(series, 10, night) == {"sign_error"}


def test_a_quantised_flat_standby_night_is_not_stuck_on_a_meter_that_always_does_it():
    rng = np.random.default_rng(1)
    days = []
    for _ in range(D + 1):
        d = np.round(rng.gamma(2.0, 150.0, L) + 100, -1)  # a 10-W meter, as DSMR/ZigBee report
        d[2:2 + int(rng.integers(5, 8))] = 90.0  # the standby reads 90 W for 2.5-3.5 h every night
        days.append(d)
    series = np.concatenate(days)
    series[D * L + 2:D * L + 9] = 90.0  # tonight 3.5 h
    assert _judge(series, D) == set()
    frozen = series.copy()  # the same meter frozen at an evening level it never repeats at
    frozen[D * L + 36:D * L + 44] = frozen[D * L + 36]
    assert "stuck" in _judge(frozen, D)


def test_a_coarse_one_kwh_register_reads_long_zero_runs_without_a_fault():
    """Power from a 1-kWh counter's differences per 30 min: 0 W most of the night, 2000 W when the
    counter ticks. Its history reads zero for hours every night."""
    rng = np.random.default_rng(2)
    true_w = np.tile(np.r_[np.full(14, 150.0), np.full(34, 700.0)], D + 1) * rng.uniform(0.7, 1.3, (D + 1) * L)
    counter_kwh = np.floor(np.cumsum(true_w) * 0.5 / 1000.0)
    series = np.diff(np.r_[0.0, counter_kwh]) * 2000.0
    assert (series == 0).mean() > 0.3
    assert _judge(series, D) == set()


def test_too_little_history_is_not_judged_and_says_so():
    x = np.full(L, 100.0)
    r = detect_faults(x, np.zeros((D, L)), np.r_[np.zeros(D - 2), np.ones(2)], RES)
    assert not r.judged and not r.any and "2 history days" in r.reason
    assert not detect_faults(x, None, None, RES).judged


def test_guard_events_join_the_report():
    m = np.zeros(L, bool)
    m[5] = True
    r = FaultReport().with_events("counter_reset", m).with_events("clock_jump", np.zeros(L, bool))
    assert r.kinds == ["counter_reset"] and r.mask(L)[5] and r.mask(L).sum() == 1
    with pytest.raises(SignalInputError, match="unknown fault kind"):
        r.with_events("gremlins", m)


def test_bad_shapes_and_settings_are_refused():
    with pytest.raises(SignalInputError, match="do not fit"):
        detect_faults(np.zeros(L), np.zeros((D, L - 1)), np.ones(D), RES)
    with pytest.raises(SignalInputError, match="1-D"):
        detect_faults(np.zeros((2, L)), None, None, RES)
    with pytest.raises(SignalInputError, match="run_alpha"):
        FaultConfig(run_alpha=0.0)
