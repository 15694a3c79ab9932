"""Classical NILM on synthetic mixtures with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from edge.signal.errors import NilmError, SignalInputError
from edge.signal.metrics import accuracy, f1_score, power_mae_w
from edge.signal.nilm import (
    FHMM,
    NORM_SETTINGS,
    FHMMConfig,
    NormFilterConfig,
    NormStage,
    ParsonDisaggregator,
    Session,
    WeissMatcher,
    detect_events,
    filter_sessions,
    learn_signatures,
    norm_filter,
    sessions_from_on,
)
from edge.signal.nilm.parson import single_event_fragments

MIN = 60.0


def _onoff(rng, n, p_on, p_off):
    s, state = np.zeros(n, bool), False
    for t in range(n):
        state = rng.random() > p_off if state else rng.random() < p_on
        s[t] = state
    return s


@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(11)
    n = 2880
    a = _onoff(rng, n, 0.01, 0.05) * 1000.0
    b = _onoff(rng, n, 0.02, 0.03) * 150.0
    agg = a + b + 60 + rng.normal(0, 5, n)
    return {"a": a, "b": b}, agg


def test_event_detector_finds_steps_with_their_reactive_change():
    p = np.full(300, 100.0)
    q = np.zeros(300)
    p[50:120] += 1000
    q[50:120] += 300
    p[200] += 40  # a one-sample use: ON and OFF, measured on its own plateau
    p[250] += 20  # below threshold
    p[150:153] += np.array([40, 80, 120])  # a ramp over 3 samples is one event
    p[153:] += 120
    ev = detect_events(p, np.arange(300) * MIN, q)
    assert ev.index.tolist() == [50, 120, 152, 200, 201]
    np.testing.assert_allclose(ev.dp_w, [1000, -1000, 120, 40, -40])
    np.testing.assert_allclose(ev.dq_var[:2], [300, -300])
    with pytest.raises(SignalInputError):
        detect_events(np.array([1.0, np.nan, 2.0]))


def test_weiss_tells_apart_equal_real_power_by_reactive_power():
    n = 600
    heater, motor = np.zeros(n), np.zeros(n)
    heater[100:200] = 1000.0
    motor[300:420] = 1000.0
    motor_q = motor * 0.6  # inductive
    agg_p = heater + motor + 80
    agg_q = motor_q + 5
    sigs = learn_signatures({"heater": heater, "motor": motor},
                            {"heater": np.zeros(n), "motor": motor_q})
    out = WeissMatcher(sigs).predict(agg_p, agg_q)
    np.testing.assert_array_equal(out["heater"]["on"], heater > 0)
    np.testing.assert_array_equal(out["motor"]["on"], motor > 0)
    unknown = WeissMatcher(sigs).match(np.array([400.0]), np.array([0.0]))[0]
    assert unknown.tolist() == [-1]
    with pytest.raises(NilmError):
        WeissMatcher([])


def test_fhmm_recovers_a_two_appliance_mixture(mixture):
    parts, agg = mixture
    model = FHMM().fit(parts, agg)
    out = model.predict(agg)
    for name, truth in parts.items():
        assert accuracy(truth > 0, out[name]["on"]) > 0.98, name
        assert power_mae_w(truth, out[name]["power_w"]) < 0.05 * truth.max()


def test_fhmm_dense_and_factorised_viterbi_agree(mixture):
    parts, agg = mixture
    dense = FHMM(FHMMConfig(dense_limit=10**6)).fit(parts, agg).viterbi(agg[:800])
    factored = FHMM(FHMMConfig(dense_limit=1)).fit(parts, agg).viterbi(agg[:800])
    np.testing.assert_array_equal(dense, factored)


def test_fhmm_refuses_misuse():
    with pytest.raises(NilmError):
        FHMM().predict(np.zeros(10))
    with pytest.raises(SignalInputError):
        FHMM().fit({"a": np.zeros(5)}, np.zeros(6))


def test_parson_adapts_general_priors_and_finds_tv_and_kettle():
    rng = np.random.default_rng(3)
    n = 1440 * 3
    ts = np.arange(n) * MIN
    tv, kettle = np.zeros(n), np.zeros(n)
    for d in range(3):
        s = d * 1440 + 19 * 60
        tv[s:s + 150] = 75.0  # a small TV: far from the 120 W general prior
        for h in (7, 12, 17):
            kettle[d * 1440 + h * 60:d * 1440 + h * 60 + 3] = 2900.0
    agg = tv + kettle + 90 + rng.normal(0, 4, n)
    frags = single_event_fragments(agg, ts)
    assert len(frags) == 12
    model = ParsonDisaggregator(["tv", "kettle"]).adapt(agg, ts)
    by_name = {m.name: m for m in model.models}
    # conjugate update: the prior (120 W) is worth 5 fragments, the house gave three of ~75 W
    assert by_name["tv"].on_w == pytest.approx((5 * 120 + 3 * 75) / 8, abs=2.0)
    assert by_name["kettle"].on_w == pytest.approx((5 * 2200 + 9 * 2900) / 14, abs=10.0)
    out = model.predict(agg, ts)
    assert f1_score(tv > 0, out["tv"]["on"]) > 0.95
    assert f1_score(kettle > 0, out["kettle"]["on"]) > 0.95
    with pytest.raises(SignalInputError, match="no general prior"):
        ParsonDisaggregator(["flux_capacitor"])


def _tv_day(rng):
    """Seed 002 Figure 11-like: true TV 18:00-20:45 and 21:30-23:00 (1-min samples); the
    disaggregation flickers off inside sessions and spikes on for a few minutes elsewhere."""
    ts = np.arange(1440) * MIN
    truth = np.zeros(1440, bool)
    truth[18 * 60:20 * 60 + 45] = True
    truth[21 * 60 + 30:23 * 60] = True
    noisy = truth.copy()
    for start in (18 * 60 + 40, 19 * 60 + 30, 22 * 60 + 10):  # 2-5 min dropouts inside
        noisy[start:start + rng.integers(2, 6)] = False
    for start in (3 * 60, 7 * 60 + 15, 12 * 60, 15 * 60 + 5, 16 * 60 + 40):  # 2-8 min spikes
        noisy[start:start + rng.integers(2, 9)] = True
    noisy[10 * 60:10 * 60 + 14] = True  # a 14-min false session survives stage 1 ...
    noisy[10 * 60 + 16:10 * 60 + 22] = True  # ... merges with this one, and dies in stage 2
    return ts, truth, noisy


def test_norm_filter_turns_a_noisy_tv_trace_into_the_expected_sessions():
    ts, truth, noisy = _tv_day(np.random.default_rng(0))
    filtered = norm_filter(noisy, ts)
    sessions = sessions_from_on(filtered, ts, "tv")
    assert [(s.start_s / 3600, s.end_s / 3600) for s in sessions] == [(18.0, 20.75), (21.5, 23.0)]
    np.testing.assert_array_equal(filtered, truth)
    assert f1_score(truth, filtered) == 1.0 > f1_score(truth, noisy)


def test_norm_filter_stages_and_per_appliance_settings():
    s = [Session("tv", 0, 500), Session("tv", 1000, 2000), Session("tv", 2600, 4000)]
    one_stage = NormFilterConfig((NormStage(purge_s=600, merge_s=900),))
    # 500 s purged; the 600 s OFF between the others is < 900: merged
    assert filter_sessions(s, one_stage) == [Session("tv", 1000, 4000)]
    assert filter_sessions(s, NormFilterConfig(())) == s
    assert NORM_SETTINGS["tv"] == NormFilterConfig()  # seed 002: 10/15 then 25/30 min
    assert [st.purge_s for st in NORM_SETTINGS["tv"].stages] == [600, 1500]
