"""Each injected attack or fault matches its definition exactly, with labels."""

from __future__ import annotations

import numpy as np
import pytest

from edge.sim import inject as I


@pytest.fixture
def p():
    rng = np.random.default_rng(0)
    return 300 + 200 * np.sin(np.arange(48) / 5) + rng.uniform(0, 50, 48)


def _window_mask(n, t_s, t_e):
    m = np.zeros(n, bool)
    m[t_s : t_e + 1] = True
    return m


def _check_outside_untouched(inj, p, t_s, t_e):
    outside = ~_window_mask(len(p), t_s, t_e)
    np.testing.assert_array_equal(inj.values[outside], p[outside])
    np.testing.assert_array_equal(inj.point_mask, ~outside)
    assert inj.window == (t_s, t_e) and inj.window_label


def test_scaling(p):
    inj = I.scaling(p, 10, 20, 0.3)
    for t in range(10, 21):
        assert inj.values[t] == pytest.approx(p[t] * 1.3)
    _check_outside_untouched(inj, p, 10, 20)
    assert inj.kind == "scaling" and inj.code == I.KIND_CODE["scaling"]


def test_ramping_type_i_rises_over_the_window(p):
    lam = 0.05
    inj = I.ramp_i(p, 5, 15, lam)
    for t in range(5, 16):
        assert inj.values[t] == pytest.approx(p[t] * (1 + lam * (t - 5)))
    _check_outside_untouched(inj, p, 5, 15)
    factor = inj.values[5:16] / p[5:16]
    assert np.all(np.diff(factor) > 0)


def test_ramping_type_ii_rises_to_midpoint_then_falls(p):
    lam = 0.04
    inj = I.ramp_ii(p, 10, 30, lam)
    t_m = 20
    for t in range(10, 31):
        expected = 1 + lam * (t - 10) if t <= t_m else 1 + lam * (30 - t)
        assert inj.values[t] == pytest.approx(p[t] * expected)
    factor = inj.values[10:31] / p[10:31]
    assert factor.argmax() == t_m - 10 and factor[0] == pytest.approx(1) and factor[-1] == pytest.approx(1)
    _check_outside_untouched(inj, p, 10, 30)


def test_pulse_is_a_single_scaled_point(p):
    inj = I.pulse(p, 17, 2.0)
    assert inj.values[17] == pytest.approx(p[17] * 3.0)
    assert inj.point_mask.sum() == 1 and inj.point_mask[17]
    _check_outside_untouched(inj, p, 17, 17)


def test_random_additive_is_bounded_and_rng_deterministic(p):
    a = I.random_additive(p, 4, 12, 0.5, np.random.default_rng(3))
    b = I.random_additive(p, 4, 12, 0.5, np.random.default_rng(3))
    np.testing.assert_array_equal(a.values, b.values)
    scale = np.mean(np.abs(p[4:13]))
    u = np.random.default_rng(3).random(9)
    np.testing.assert_allclose(a.values[4:13], p[4:13] + 0.5 * u * scale)
    _check_outside_untouched(a, p, 4, 12)


def test_smooth_curve_joins_the_true_values(p):
    inj = I.smooth_curve(p, 8, 24, 0.2)
    t = np.arange(8, 25)
    line = p[8] + (p[24] - p[8]) * (t - 8) / 16
    np.testing.assert_allclose(inj.values[8:25], line * (1 + 0.2 * np.sin(np.pi * (t - 8) / 16)))
    assert inj.values[8] == pytest.approx(p[8]) and inj.values[24] == pytest.approx(p[24])
    assert np.all(np.abs(np.diff(np.diff(inj.values[8:25]))) < 20), "curve is smooth"
    _check_outside_untouched(inj, p, 8, 24)


def test_additive_ramp(p):
    inj = I.additive_ramp(p, 30, 40, 12.5)
    np.testing.assert_allclose(inj.values[30:41], p[30:41] + 12.5 * np.arange(11))
    _check_outside_untouched(inj, p, 30, 40)


def test_input_never_modified_and_window_checked(p):
    before = p.copy()
    I.scaling(p, 0, 47, 1.0)
    np.testing.assert_array_equal(p, before)
    with pytest.raises(I.InjectionError, match="not inside"):
        I.scaling(p, 40, 48, 0.1)
    with pytest.raises(I.InjectionError, match="1-D"):
        I.scaling(np.zeros((2, 3)), 0, 1, 0.1)


def test_missing_points_blocks_and_outages():
    x = np.arange(96.0)
    rng = np.random.default_rng(1)
    pts = I.missing_points(x, rng, 0.2)
    assert np.array_equal(np.isnan(pts.values), pts.point_mask) and 5 < pts.point_mask.sum() < 40
    blk = I.missing_block(x, np.random.default_rng(2), 7)
    t_s, t_e = blk.window
    assert t_e - t_s == 6 and np.isnan(blk.values[t_s : t_e + 1]).all()
    assert np.isnan(blk.values).sum() == 7
    out = I.outage(np.arange(48.0 * 5), np.random.default_rng(3), samples_per_day=48, days=2)
    t_s, t_e = out.window
    assert t_s % 48 == 0 and t_e - t_s + 1 == 96 and np.isnan(out.values).sum() == 96


def test_faults():
    x = np.full(50, 200.0)
    sp = I.spikes(x, np.random.default_rng(4), 3, magnitude_w=1000)
    assert sp.point_mask.sum() == 3 and np.all(sp.values[sp.point_mask] >= 200 + 800)
    assert np.all(sp.values[~sp.point_mask] == 200)
    st = I.stuck(np.arange(50.0), 10, 19)
    assert np.all(st.values[10:20] == 10) and st.values[20] == 20
    ng = I.negative(x, np.random.default_rng(5), 4)
    assert np.all(ng.values[ng.point_mask] == -200) and ng.point_mask.sum() == 4
    nv = I.nan_values(x, np.random.default_rng(6), 5)
    assert np.isnan(nv.values).sum() == 5 and nv.kind == "nan"


def test_clock_jump_and_duplicates():
    ts = np.arange(10) * 60.0
    x = np.arange(10.0)
    cj = I.clock_jump(ts, x, at=4, jump_s=-3600)
    np.testing.assert_array_equal(cj.ts_s[:4], ts[:4])
    np.testing.assert_array_equal(cj.ts_s[4:], ts[4:] - 3600)
    assert cj.point_mask[4:].all() and not cj.point_mask[:4].any()
    dup = I.duplicates(ts, x, np.random.default_rng(7), 3)
    assert len(dup.values) == 13 and dup.point_mask.sum() == 3
    np.testing.assert_array_equal(dup.values[~dup.point_mask], x)
    flagged = np.flatnonzero(dup.point_mask)
    np.testing.assert_array_equal(dup.ts_s[flagged], dup.ts_s[flagged - 1])


def test_attack_batch_labels_and_determinism():
    load = np.abs(np.random.default_rng(8).normal(500, 100, (64, 48)))
    a = I.attack_batch(load, np.random.default_rng(9), fraction=0.5)
    b = I.attack_batch(load, np.random.default_rng(9), fraction=0.5)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    attacked, points, window, codes = a
    assert 15 < window.sum() < 50
    np.testing.assert_array_equal(window, points.any(axis=1))
    np.testing.assert_allclose(attacked[~window], load[~window], rtol=1e-6)
    assert set(np.unique(codes[window])) <= {I.KIND_CODE[k] for k in I.FDI_KINDS}
    changed = ~np.isclose(attacked, load, rtol=1e-5)
    assert not (changed & ~points).any(), "only labelled points may change"
