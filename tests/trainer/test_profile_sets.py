"""Training sets from one meter's own days: windows stay inside their part of the split, the
history is the past, labelled slots are positives, and the forecast covers run without weather."""

from __future__ import annotations

import numpy as np
import pytest

from edge.data.loaders import MeterSeries
from edge.data.profiles import to_profiles
from edge.data.userdata import time_split
from edge.errors import DataError
from edge.features import CALENDAR_NAMES, CovariateSpec
from tests.edge.data.userfiles import household
from trainer import profile_sets as S

TZ = "Europe/London"


def _profiles(resolution_s: int, temperature: bool = True):
    tr = household(days=40, resolution_s=resolution_s, tz=TZ, start="2024-04-01")
    temp = tr.temperature_c.astype(float) if temperature else None
    return to_profiles(MeterSeries("m", tr.ts_s, tr.power_w.astype(float), resolution_s=resolution_s,
                                   temperature_c=temp), TZ)


@pytest.fixture(scope="module")
def parts():
    prof = _profiles(1800)
    split = time_split(len(prof.dates), 7, 7)
    return {k: S.meter_parts([prof], [split], k) for k in ("train", "val", "test")}


def test_windows_stay_inside_their_part_and_the_history_is_the_past(parts):
    (val,) = parts["val"]
    w = S.day_windows([val], stride=6, history_days=3)
    x, L = val.prof.load_w.reshape(-1), 48
    starts = val.starts(L, 6)
    assert starts.min() >= val.start * L and starts.max() + L <= val.stop * L
    np.testing.assert_array_equal(w["load_w"][0], x[starts[0]:starts[0] + L])
    np.testing.assert_array_equal(w["history_w"][0, 2], x[starts[0] - L:starts[0]])  # the day before
    np.testing.assert_array_equal(w["history_w"][0, 0], x[starts[0] - 3 * L:starts[0] - 2 * L])
    assert w["history_mask"].all()  # validation days have complete training days before them


def test_a_missing_point_keeps_a_window_out():
    x = np.arange(100, dtype=float)
    x[30] = np.nan
    starts = S.window_starts(x, 10, 5)
    assert not any(s <= 30 < s + 10 for s in starts) and 35 in starts and 15 in starts


def test_task_sets_have_the_task_keys(parts):
    spec = CovariateSpec(tz=TZ, country="GB", subdiv="ENG", weather="temperature_c")
    imp = S.imputation_set(parts["train"], 12, seed=0)
    missing = 1 - imp.arrays["observed"].mean(axis=1)
    assert missing.min() > 0.05 and missing.max() <= 0.5 + 1e-6
    np.testing.assert_array_equal(imp.arrays["load_w"], imp.arrays["target_w"] * imp.arrays["observed"])
    an = S.anomaly_set(parts["train"], 12, seed=0)
    assert 0.3 < an.arrays["window_label"].mean() < 0.7
    fc = S.forecast_set(parts["train"], spec, 12, seed=0)
    assert fc.arrays["day_ahead_w"].shape[1] == 48 and fc.arrays["hour_ahead_w"].shape[1] == 2
    np.testing.assert_array_equal(fc.arrays["day_ahead_w"][:, :2], fc.arrays["hour_ahead_w"])
    available = fc.arrays["covariates"][:, len(CALENDAR_NAMES)]
    assert 0.6 < available.mean() < 0.95  # the temperature withheld in about 20 % of the windows
    assert fc.meta["covariates"]["country"] == "GB" and fc.meta["resolution_s"] == 1800


def test_without_temperature_the_weather_mask_is_zero():
    prof = _profiles(3600, temperature=False)
    parts = S.meter_parts([prof], [time_split(len(prof.dates), 7, 7)], "train")
    fc = S.forecast_set(parts, CovariateSpec(tz=TZ), 6, seed=0)
    assert fc.arrays["load_w"].shape[1] == 24 and fc.arrays["hour_ahead_w"].shape[1] == 1
    assert not fc.arrays["covariates"][:, len(CALENDAR_NAMES):].any()


def test_labelled_windows_are_positives(parts):
    (part,) = parts["train"]
    labels = np.zeros_like(part.prof.load_w, np.uint8)
    labels[5, 30:36] = 1
    an = S.anomaly_set([S.MeterPart(part.prof, part.start, part.stop, labels)], 12, seed=0, attack_fraction=0.0)
    pos = an.arrays["window_label"] > 0
    assert pos.any() and an.arrays["point_label"][pos].sum(axis=1).min() >= 1


def test_stride_keeps_big_data_bounded():
    assert S.stride_for(60, 48, 24) == 2
    assert S.stride_for(60, 48) == 1  # small data: a window at every point
    assert S.stride_for(200 * 365, 48) == 48  # a fleet-year: one window a day
    with pytest.raises(DataError, match="NILM"):
        S.task_set("nilm", [], CovariateSpec(), 1, 0)


def test_the_wide_attack_draw_covers_inside_ongoing_and_whole_windows_at_lambda_up_to_0_8():
    """AttackDraw's docstring: 2-12 h inside the window, ongoing to its last point, or all of it;
    |lambda| in 0.1-0.8 either sign; ramps reach 1 + lambda; the label is the attacked span."""
    draw, L, rng = S.AttackDraw(fault_share=0.0), 48, np.random.default_rng(0)
    spans = [draw.span(L, rng) for _ in range(3000)]
    whole = [s for s in spans if s == (0, L - 1)]
    ongoing = [s for s in spans if s[1] == L - 1 and s[0] > 0]
    inside = [s for s in spans if s[1] < L - 1]
    assert 0.15 < len(whole) / len(spans) < 0.25 and 0.25 < len(ongoing) / len(spans) < 0.40
    assert all(4 <= e - s + 1 <= 24 for s, e in inside) and min(e - s + 1 for s, e in ongoing) >= 4
    assert max(e - s + 1 for s, e in ongoing) > 40
    x = np.full(L, 100.0)
    peaks = {}
    for _ in range(600):
        inj = draw.attack(x, rng)
        s, e = inj.window
        np.testing.assert_array_equal(inj.point_mask, np.isin(np.arange(L), np.arange(s, e + 1)))
        ratio = inj.values[inj.point_mask] / 100.0
        extreme = ratio[np.argmax(np.abs(ratio - 1))] - 1
        peaks.setdefault(inj.kind, []).append(extreme)
    assert set(peaks) == {"scaling", "ramp_i", "ramp_ii"}
    for kind, lam in peaks.items():
        lam = np.abs(np.asarray(lam))
        low = 0.1 * (2 / 3 if kind == "ramp_ii" else 1)  # an even span's middle falls between two points
        assert lam.min() >= low - 1e-9 and lam.max() <= 0.8 + 1e-9, kind
        assert lam.max() > 0.7 and (np.asarray(peaks[kind]) < 0).mean() > 0.3, kind


def test_a_quarter_of_the_draws_are_faults_labelled_where_they_changed_the_window():
    draw, rng = S.AttackDraw(), np.random.default_rng(1)
    x = 200 + 100 * np.sin(np.linspace(0, 6, 48))
    x[:6] = -50.0  # exporting: a sign error there changes nothing
    kinds = {}
    for _ in range(800):
        inj = draw.attack(x, rng)
        kinds[inj.kind] = kinds.get(inj.kind, 0) + 1
        if inj.kind in ("spike", "stuck", "negative"):  # a zero run is a scaling by 1 - 1
            np.testing.assert_array_equal(inj.point_mask, inj.values != x)
    faults = sum(kinds.get(k, 0) for k in ("spike", "stuck", "negative"))
    assert {"spike", "stuck", "negative"} <= set(kinds) and 0.12 < faults / 800 < 0.25


def test_the_anomaly_set_takes_the_draw_and_keeps_the_history_clean(parts):
    an = S.anomaly_set(parts["train"], 12, seed=0, history_days=2, draw=S.AttackDraw(coverage=(0, 0, 1), fault_share=0.0))
    clean = S.day_windows(parts["train"], 12, history_days=2)
    pos = an.arrays["window_label"] > 0
    assert 0.3 < pos.mean() < 0.7 and an.arrays["point_label"][pos].all()
    assert not np.allclose(an.arrays["load_w"][pos], clean["load_w"][pos])
    np.testing.assert_array_equal(an.arrays["load_w"][~pos], clean["load_w"][~pos])
    np.testing.assert_array_equal(an.arrays["history_w"], clean["history_w"])
