"""Gap fillers on signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.signal.errors import FillError, SignalInputError
from edge.signal.gapfill import (
    DEFAULT_POLICY,
    FILLERS,
    apply_energy_constraint,
    auto_fill,
    choose,
    fill,
    find_gaps,
)
from edge.signal.gapfill.emd import emd
from edge.signal.gapfill.gaussian import GaussianConfig
from edge.signal.gapfill.ssa import SSAConfig

ALL = sorted(FILLERS)


def _mask(n: int, runs: list[tuple[int, int]]) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for a, length in runs:
        m[a:a + length] = True
    return m


def test_find_gaps_reports_knowledge_either_side():
    m = _mask(20, [(3, 2), (8, 4)])
    gaps = find_gaps(m)
    assert [(g.start, g.stop, g.known_before, g.known_after) for g in gaps] == [
        (3, 5, 3, 3), (8, 12, 3, 8)]


def test_linear_is_exact_on_lines_with_irregular_clock():
    rng = np.random.default_rng(0)
    ts = np.cumsum(rng.uniform(30, 90, 200))
    x = 3.5 * ts / 60 - 40
    m = _mask(200, [(10, 1), (40, 5), (100, 37)])
    out = fill("linear", np.where(m, np.nan, x), m, ts)
    np.testing.assert_allclose(out, x, rtol=0, atol=1e-9)


def test_papoulis_gerchberg_recovers_band_limited_signal():
    n = 256
    k = np.arange(n)
    x = 200 + 60 * np.sin(2 * np.pi * 3 * k / n) + 25 * np.cos(2 * np.pi * 7 * k / n + 0.4)
    m = _mask(n, [(40, 12), (130, 16), (200, 8)])
    out = fill("papoulis", x, m, k * 60.0)
    lin = fill("linear", x, m, k * 60.0)
    rmse = np.sqrt(np.mean((out[m] - x[m]) ** 2))
    assert rmse < 2.0, rmse  # signal amplitude ~85 W
    assert rmse < 0.2 * np.sqrt(np.mean((lin[m] - x[m]) ** 2))


def test_ssa_fills_periodic_signal_far_better_than_linear():
    rng = np.random.default_rng(1)
    n = 400
    x = 300 + 100 * np.sin(2 * np.pi * np.arange(n) / 64) + rng.normal(0, 3, n)
    m = _mask(n, [(200, 20)])
    err = {name: np.sqrt(np.mean((fill(name, x, m)[m] - x[m]) ** 2)) for name in ("ssa", "linear")}
    assert err["ssa"] < 0.4 * err["linear"], err


def test_multichannel_ssa_uses_a_correlated_neighbour():
    rng = np.random.default_rng(2)
    n = 300
    base = np.cumsum(rng.normal(0, 10, n))  # no periodicity: only the neighbour can help
    x = base + rng.normal(0, 1, n)
    neighbour = base + rng.normal(0, 1, n)
    m = _mask(n, [(150, 15)])
    x_known = np.where(m, 0, x)
    from edge.signal.gapfill.base import find_gaps as fg
    from edge.signal.gapfill.ssa import fill_gaps
    t = np.arange(n, dtype=float)
    cfg = SSAConfig(max_components=20, inner_iterations=30)  # a random walk needs many
    mono = fill_gaps(x_known, m, t, fg(m), cfg)
    multi = fill_gaps(x_known, m, t, fg(m), cfg, channels=neighbour[None, :])
    e_mono = np.sqrt(np.mean((mono[m] - x[m]) ** 2))
    e_multi = np.sqrt(np.mean((multi[m] - x[m]) ** 2))
    assert e_multi < 0.4 * e_mono, (e_mono, e_multi)


def test_wiener_beats_linear_on_an_oscillation():
    n = 600
    x = 500 + 120 * np.sin(2 * np.pi * np.arange(n) / 40)
    m = _mask(n, [(300, 15)])
    e_w = np.abs(fill("wiener", x, m)[m] - x[m]).max()
    e_l = np.abs(fill("linear", x, m)[m] - x[m]).max()
    assert e_w < 0.1 * e_l


def test_emd_components_sum_to_the_signal():
    rng = np.random.default_rng(3)
    x = np.sin(np.arange(300) / 3) + 0.3 * np.sin(np.arange(300) / 17) + rng.normal(0, 0.05, 300)
    imfs, res = emd(x)
    assert len(imfs) >= 2
    np.testing.assert_allclose(np.sum(imfs, axis=0) + res, x, atol=1e-9)


def test_gaussian_draws_follow_the_hour_and_stay_within_capacity():
    days = 30
    ts = np.arange(days * 24 * 60) * 60.0
    hour = (ts // 3600) % 24
    rng = np.random.default_rng(4)
    x = np.where(hour >= 18, 1500.0, 200.0) + rng.normal(0, 400, ts.size)
    x = np.clip(x, 0, None)
    m = rng.random(ts.size) < 0.6  # very sparse, as in seed 004
    out = fill("gaussian", x, m, ts, config=GaussianConfig(capacity_w=1800.0, seed=7))
    assert out[m].min() >= 0.0 and out[m].max() <= 1800.0
    evening, morning = m & (hour >= 18), m & (hour < 6)
    assert abs(out[evening].mean() - x[~m & (hour >= 18)].mean()) < 60
    assert abs(out[morning].mean() - x[~m & (hour < 6)].mean()) < 60
    again = fill("gaussian", x, m, ts, config=GaussianConfig(capacity_w=1800.0, seed=7))
    np.testing.assert_array_equal(out, again)


def test_energy_counter_constraint_holds_to_a_tenth_of_a_percent():
    rng = np.random.default_rng(5)
    n, res = 2000, 60.0
    ts = np.arange(n) * res
    p = 300 + 250 * (rng.random(n) < 0.2) * 8 + rng.normal(0, 20, n)
    counter = 1e6 + np.cumsum(p * res / 3600.0)  # counter read at the end of each interval
    m = _mask(n, [(100, 3), (500, 40), (1200, 200), (1700, 1)])
    filled = auto_fill(np.where(m, np.nan, p), m, ts, counter_wh=counter)
    for g in find_gaps(m):
        a, b = g.start - 1, g.stop
        want = counter[b] - counter[a]
        got = np.sum(filled[a + 1:b + 1]) * res / 3600.0
        assert abs(got - want) <= 1e-3 * abs(want), (g, got, want)
    np.testing.assert_array_equal(filled[~m], p[~m])


def test_energy_constraint_skips_gaps_without_counters_and_adds_offset_on_flat_fill():
    ts = np.arange(10) * 60.0
    p = np.full(10, 100.0)
    m = _mask(10, [(3, 3)])
    counter = np.full(10, np.nan)
    assert np.array_equal(apply_energy_constraint(p, m, ts, counter), p)
    counter[2], counter[6] = 0.0, 4 * 160.0 / 60  # 160 W on average over samples 3..6
    p0 = np.where(m, 0.0, p)  # a zero fill cannot be scaled: a constant is added
    out = apply_energy_constraint(p0, m, ts, counter)
    np.testing.assert_allclose(out[3:6], (4 * 160 - 100) / 3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_known_samples_are_never_altered(data):
    n = data.draw(st.integers(12, 120))
    values = np.array(data.draw(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=n,
                                         max_size=n)))
    missing = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if missing.all():
        missing[0] = False
    ts = np.arange(n) * 60.0
    poisoned = np.where(missing, np.nan, values)
    for name in [*ALL, "auto"]:
        out = FILLERS[name](poisoned, missing, ts) if name != "auto" else fill(name, poisoned, missing, ts)
        assert out.shape == values.shape
        assert np.isfinite(out).all(), name
        assert np.array_equal(out[~missing], values[~missing]), name


@pytest.mark.parametrize("name", ALL)
def test_bad_input_raises_clear_errors(name):
    x = np.arange(10.0)
    with pytest.raises(SignalInputError, match="shape"):
        fill(name, x, np.zeros(9, bool))
    bad = x.copy()
    bad[2] = np.nan
    with pytest.raises(SignalInputError, match="finite"):
        fill(name, bad, np.zeros(10, bool))
    with pytest.raises(SignalInputError, match="increasing"):
        fill(name, x, np.zeros(10, bool), ts_s=np.zeros(10))
    with pytest.raises(FillError):
        fill(name, x, np.ones(10, bool))
    assert np.array_equal(x, np.arange(10.0))  # input untouched


def test_unknown_filler_and_policy_choice():
    with pytest.raises(SignalInputError, match="unknown filler"):
        fill("magic", np.zeros(3), np.zeros(3, bool))
    short = find_gaps(_mask(50, [(20, 2)]))[0]
    assert choose(short, DEFAULT_POLICY) == "linear"
    policy = ((5, 0, "linear"), (10**9, 10, "ssa"), (10**9, 0, "linear"))
    long_gap = find_gaps(_mask(200, [(100, 30)]))[0]
    assert choose(long_gap, policy) == "ssa"
    thin = find_gaps(_mask(200, [(100, 30), (132, 5)]))[0]
    assert choose(thin, policy) == "linear"  # only 2 known samples after it


def test_gap_metrics_on_known_cases():
    from edge.signal.metrics import frequency_response_error, jitter_power_error, sample_mse

    x = np.sin(np.arange(64) / 3)
    m = _mask(64, [(10, 4)])
    y = x.copy()
    y[m] += 2.0
    assert sample_mse(x, y, m) == pytest.approx(4.0)
    assert frequency_response_error(x, x) == 0.0 and jitter_power_error(x, x) == 0.0
    flat = np.full(64, 160.0)
    assert frequency_response_error(flat, flat) == 0.0
    assert frequency_response_error(flat, y) == pytest.approx(1.0)  # bounded, not infinite
    assert 0 < jitter_power_error(x, 0.5 * x) < 1


def test_gaussian_keeps_export_on_net_meters_and_rejects_bad_capacity():
    ts = np.arange(48 * 60) * 60.0
    x = np.where((ts // 3600) % 24 == 12, -1500.0, 300.0)  # PV export at noon
    m = np.zeros(x.size, bool)
    m[::7] = True
    out = fill("gaussian", x, m, ts)
    assert out[m].min() < 0  # export survives: the floor follows the known data
    with pytest.raises(SignalInputError, match="below"):
        fill("gaussian", x, m, ts, config=GaussianConfig(capacity_w=-2000.0))


def test_finish_replaces_a_diverged_estimate_with_linear() -> None:
    """A spline filler that blows up across a long gap is replaced by the linear fill there."""
    from edge.signal.gapfill.base import finish

    x = np.array([100.0, 200.0, np.nan, np.nan, np.nan, 300.0, 250.0])
    m = np.isnan(x)
    estimate = np.array([0, 0, 220.0, 9_000.0, -7_000.0, 0, 0])  # one plausible, two diverged
    out = finish(x, m, estimate)
    assert out[2] == 220.0  # inside the known range plus margin: kept
    assert out[3] == pytest.approx(250.0) and out[4] == pytest.approx(275.0)  # linear
    assert np.array_equal(out[~m], x[~m])
