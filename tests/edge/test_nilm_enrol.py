"""Appliances enrolled by name: the signature table and the edge matcher on a residual."""

import numpy as np
import pytest

from edge.nilm_enrol import EnrolError, Signature, add_enrolled, enrol, match, signature
from edge.sim.specs import SPECS_BY_NAME


def _toaster_day(res_s: float = 10.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One hour at 10 s: a noisy 150-400 W base and a 1 kW toaster on for 200 s, switched on and
    off mid-sample (part of each step falls in the next sample)."""
    rng = np.random.default_rng(seed)
    n = int(3600 / res_s)
    base = 250 + 100 * np.sin(np.arange(n) / 40.0) + rng.normal(0, 8, n)
    t_on, t_off = 1203.0, 1403.0  # s
    edges = np.arange(n + 1) * res_s
    frac = np.clip(np.minimum(edges[1:], t_off) - np.maximum(edges[:-1], t_on), 0, None) / res_s
    return base + 1000.0 * frac, frac > 0


def test_the_table_gives_on_off_appliances_a_signature_and_refuses_the_others():
    sig = signature("toaster")
    lo, hi = SPECS_BY_NAME["toaster"].power_w
    assert sig.min_w < lo <= hi < sig.max_w and sig.min_on_s < SPECS_BY_NAME["toaster"].duration_s[0]
    with pytest.raises(EnrolError, match="cycle"):
        signature("washing_machine")
    with pytest.raises(EnrolError, match="no signature"):
        signature("sauna")
    with pytest.raises(EnrolError, match="min_w"):
        Signature("sauna", 6000, 5000, 60, 3600)


def test_a_use_is_a_rising_step_and_its_falling_step_within_the_duration():
    load, true_on = _toaster_day()
    on, power = match(signature("toaster"), load, 10.0)
    assert np.sum(on & true_on) >= np.sum(true_on) - 2 and np.sum(on & ~true_on) <= 1
    assert np.all(power[~on] == 0) and np.all(np.abs(power[on] - 1000) < 60)
    # a step of the right size with no falling step inside the use's duration is no use
    assert not match(signature("toaster"), np.where(np.arange(len(load)) > 120, load + 1000, load), 10.0)[0].any()
    # nor is a step of another size (a 2 kW kettle)
    assert not match(signature("toaster"), 250 + 2 * (load - 250), 10.0)[0].any()


def test_enrolled_rows_follow_the_models_and_never_exceed_the_meter():
    load, true_on = _toaster_day()
    n = len(load)
    kettle_on = np.zeros(n, bool)
    kettle_on[100:118] = True
    load = load + 2000.0 * kettle_on
    on = kettle_on[None]
    power = np.where(on, 2000.0, 0.0)
    names, on2, power2 = add_enrolled(("kettle",), on, power, load, (signature("toaster"),), 10.0)
    assert names == ("kettle", "toaster") and on2.shape == (2, n)
    assert np.array_equal(on2[0], on[0]) and np.array_equal(power2[0], power[0])  # the model's row kept
    assert not (on2[1] & kettle_on).any()  # the kettle's power is the model's, not the toaster's
    assert (on2[1] & true_on).sum() >= true_on.sum() - 2
    assert np.all(power2.sum(0) <= load + 1e-9) and np.all(power2[~on2] == 0)


def test_enrol_splits_names_into_signatures_and_reasons():
    sigs, refused = enrol(["toaster", "oven", "sauna"])
    assert [s.name for s in sigs] == ["toaster"] and set(refused) == {"oven", "sauna"}
    assert "cycle" in refused["oven"]
