"""The evaluation's data: exact missing rates, attacks that change exactly the labelled points,
the household split, and NILM windows with their timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluation import data as D
from trainer.evaluation.config import EvalConfig, EvaluationError


@pytest.mark.parametrize("pattern", ["random", "block"])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_missing_masks_have_the_exact_rate(pattern, rate):
    obs = D.missing_masks(50, rate, pattern, np.random.default_rng(0))
    assert ((~obs).sum(1) == round(rate * 48)).all()
    if pattern == "block":  # one contiguous run per day
        runs = np.sum(np.diff((~obs).astype(int), axis=1) == 1, axis=1) + (~obs[:, 0])
        assert (runs == 1).all()


def test_unknown_missing_pattern_is_rejected():
    with pytest.raises(EvaluationError):
        D.missing_masks(2, 0.1, "diagonal", np.random.default_rng(0))


def test_attacks_change_exactly_the_labelled_points():
    cfg = EvalConfig()
    window = np.full(48, 500.0)
    for kind in ("scaling", "ramp_ii"):
        attacked, label = D.attack_day(window, kind, np.random.default_rng(1), cfg)
        changed = ~np.isclose(attacked, window)
        assert changed.sum() > 0 and not changed[label == 0].any()
        assert cfg.attack_steps_range[0] <= label.sum() <= cfg.attack_steps_range[1]
        if kind == "scaling":  # one factor across the interval
            assert np.unique(np.round(attacked[label == 1], 6)).size == 1


def test_household_split_is_disjoint_and_complete():
    split = D.split_households(200, (0.6, 0.2, 0.2), seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [120, 40, 40]
    together = np.concatenate(list(split.values()))
    assert np.array_equal(np.sort(together), np.arange(200))
    with pytest.raises(EvaluationError):
        D.split_households(2, (0.6, 0.2, 0.2), seed=0)


def test_nilm_windows_carry_the_traces_timestamps():
    from edge.sim import simulate_fleet

    traces = list(simulate_fleet(n_households=2, days=1, resolution_s=60, seed=5))
    batch = D.nilm_batch(traces, D.nilm_appliances(traces), 120)
    expected = np.concatenate([np.asarray(t.ts_s[: len(t.ts_s) // 120 * 120]).reshape(-1, 120) for t in traces])
    assert np.array_equal(batch.ts_s, expected)
    assert batch.load_w.shape == (len(expected), 120) and batch.on.dtype == bool


def test_fleet_profiles_stack_the_trainer_profiles():
    from edge.sim import simulate_fleet
    from trainer.data import profiles_from_traces

    traces = list(simulate_fleet(n_households=3, days=4, resolution_s=1800, seed=2))
    fleet = D.FleetProfiles.from_dataset(profiles_from_traces(traces), max_days=3)
    assert fleet.power_w.shape == (3, 3, 48) and fleet.power_w.dtype == np.float64
    first = traces[1].to_profiles()
    assert np.array_equal(fleet.power_w[1], first.load_w[:3])
    assert fleet.day_start_s[1, 0] == first.dates[0].astype("datetime64[s]").astype(np.int64)

