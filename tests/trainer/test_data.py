"""Datasets: batching and DDP sharding, task sets built with edge.sim and edge.sim.inject."""

from __future__ import annotations

import numpy as np
import pytest

from edge.features import N_COVARIATES
from trainer import data as d


@pytest.fixture(scope="module")
def profiles():
    return d.simulate_profiles(4, 6, seed=2)


def test_rank_slices_partition_each_global_batch():
    ds = d.ArrayDataset({"load_w": np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)})
    single = [b["load_w"][:, 0] for b in ds.batches(20, seed=3, epoch=1)]
    ranks = [[b["load_w"][:, 0] for b in ds.batches(20, seed=3, epoch=1, rank=r, world=2)] for r in (0, 1)]
    assert len(single) == 5
    for i, full in enumerate(single):
        np.testing.assert_array_equal(np.concatenate([ranks[0][i], ranks[1][i]]), full)
    assert not np.array_equal(single[0], next(ds.batches(20, seed=3, epoch=2))["load_w"][:, 0])
    assert len(list(ds.batches(20, seed=3, epoch=1, skip=3))) == 2
    with pytest.raises(d.DataError, match="divisible"):
        next(ds.batches(21, world=2))


def test_bad_arrays_are_rejected():
    with pytest.raises(d.DataError, match="differ in length"):
        d.ArrayDataset({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(d.DataError, match="non-finite"):
        d.ArrayDataset({"a": np.array([1.0, np.inf])})
    with pytest.raises(d.DataError, match="lacks"):
        d.ArrayDataset.coerce({"load_w": np.zeros((2, 48))}, "anomaly")


def test_simulated_profiles_and_household_split(profiles):
    a = profiles.arrays
    assert a["load_w"].shape[1] == 48 and len(a["load_w"]) >= 4 * 5
    assert (a["load_w"] >= -10000).all() and a["load_w"].mean() > 50
    train, val = d.split_by_household(profiles, (0.5, 0.5), seed=0)
    assert not set(train.arrays["household"]) & set(val.arrays["household"])
    assert len(train) + len(val) == len(profiles)


@pytest.mark.parametrize("mode", ["random", "block"])
def test_missing_rate_and_shape(mode):
    obs = d.missing_mask(400, 48, 0.3, mode, np.random.default_rng(0))
    assert abs(1 - obs.mean() - 0.3) < 0.03
    if mode == "block":  # one contiguous run of zeros per row
        runs = (np.diff(np.pad(1 - obs, ((0, 0), (1, 1))), axis=1) == 1).sum(1)
        assert (runs == 1).all()


def test_imputation_set_zeroes_missing_points(profiles):
    s = d.imputation_set(profiles.arrays["load_w"], seed=1)
    a = s.arrays
    assert (a["load_w"][a["observed"] == 0] == 0).all()
    np.testing.assert_array_equal(a["load_w"][a["observed"] == 1], a["target_w"][a["observed"] == 1])
    assert 0.1 <= 1 - a["observed"].mean() <= 0.5


def test_anomaly_set_labels_match_changes(profiles):
    s = d.anomaly_set(profiles.arrays["load_w"], attack_fraction=0.5, seed=4)
    a = s.arrays
    changed = np.abs(a["load_w"] - profiles.arrays["load_w"]) > 1e-3
    assert not (changed & (a["point_label"] == 0)).any()  # nothing changes outside the labels
    np.testing.assert_array_equal(a["window_label"] == 1, a["point_label"].any(1))
    assert 0.2 < a["window_label"].mean() < 0.8


def test_forecast_targets_follow_inputs(profiles):
    s = d.forecast_set(profiles, stride_steps=24)
    a, p = s.arrays, profiles.arrays
    h0 = p["load_w"][p["household"] == 0].reshape(-1)
    np.testing.assert_array_equal(a["load_w"][0], h0[:48])
    np.testing.assert_array_equal(a["day_ahead_w"][0], h0[48:96])
    np.testing.assert_array_equal(a["hour_ahead_w"][1], h0[72:74])
    assert a["covariates"].shape[1] == N_COVARIATES


def test_daily_profiles_bin_means():
    ts = np.arange(0, 2 * 86400, 60, dtype=np.int64) + 1_700_006_400  # two whole UTC days
    power = np.where((ts // 1800) % 2 == 0, 100.0, 300.0)
    prof, starts = d.daily_profiles(ts, power)
    assert prof.shape == (2, 48) and starts[0] % 86400 == 0
    np.testing.assert_allclose(prof[0, :2], [100.0, 300.0])


def test_high_rate_windows_carry_ground_truth():
    from edge.sim import simulate_fleet

    ds = d.high_rate_windows(simulate_fleet(2, 1, resolution_s=60, seed=1), window=240)
    a = ds.arrays
    assert a["appliance_w"].shape[1:] == (len(ds.meta["appliances"]), 240)
    assert ds.meta["resolution_s"] == 60
    # the aggregate is (close to) the sum of the appliances: meter noise only
    err = np.abs(a["load_w"] - a["appliance_w"].sum(1)).mean()
    assert err < 0.1 * np.abs(a["load_w"]).mean()


def test_high_rate_windows_overlap_by_stride_and_rare_uses_are_repeated():
    from edge.sim import simulate_fleet

    traces = list(simulate_fleet(2, 1, resolution_s=60, seed=1))
    whole = d.high_rate_windows(traces, window=240)
    half = d.high_rate_windows(traces, window=240, stride=120)
    assert len(half) == 2 * len(whole) - 2  # 1440 points a day: 6 windows, 11 at half a window
    np.testing.assert_array_equal(half.arrays["load_w"][1, :120], whole.arrays["load_w"][0, 120:])
    with pytest.raises(d.DataError):
        d.high_rate_windows(traces, window=240, stride=0)
    on = np.zeros((10, 2, 4), np.float32)
    on[0, 0, 1] = 1.0  # appliance 0 used in 1 window of 10, appliance 1 in 5
    on[1:6, 1] = 1.0
    ds = d.ArrayDataset({"appliance_on": on, "load_w": np.arange(10.0)[:, None] * np.ones(4)}, {})
    out = d.balance_appliance_windows(ds, min_share=0.25, max_repeat=4)
    has = out.arrays["appliance_on"].max(axis=2) > 0.5
    assert has[:, 0].sum() == 3 and len(out) == 12  # (1 * k) / (k + 9) >= 0.25: k = 3
    assert has[:, 0].mean() >= 0.25 and has[:, 1].sum() == 5  # frequent enough: left alone


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    from edge.data.shards import write_fleet

    out = tmp_path_factory.mktemp("shards")
    write_fleet(out, 6, 5, 60, seed=0, nilm_per_household=2, nilm_window=120, progress=False,
                rows_per_shard=8)
    return out


def test_profiles_from_shards_split_across_ranks(shard_dir):
    full = d.profiles_from_shards(str(shard_dir), "train")
    parts = [d.profiles_from_shards(str(shard_dir), "train", r, 2) for r in (0, 1)]
    assert len(parts[0]) + len(parts[1]) == len(full) > 0
    assert full.arrays["load_w"].shape[1] == 48 and np.isfinite(full.arrays["load_w"]).all()
    assert len(d.forecast_set(full)) > 0
    with pytest.raises(d.DataError, match="no profiles split"):
        d.profiles_from_shards(str(shard_dir), "holdout")


def test_nilm_from_shards(shard_dir):
    ds = d.nilm_from_shards(str(shard_dir), "train")
    assert ds.meta["resolution_s"] == 60
    assert ds.arrays["appliance_w"].shape[1:] == (len(ds.meta["appliances"]), 120)


def test_unknown_temperature_is_no_error_and_gives_the_weather_mask_at_zero():
    """A user's meter has no temperature: NaN there is 'unknown', not bad data (it was
    "array 'temperature_c' holds 3216 non-finite values"); a NaN load still is."""
    from edge.features import CALENDAR_NAMES

    n, L = 6, 24
    arrays = {"load_w": d.synthetic_profiles(n, L), "household": np.zeros(n, np.int32),
              "day": np.arange(19000, 19000 + n), "temperature_c": np.full((n, L), np.nan, np.float32),
              "is_holiday": np.zeros(n, bool)}
    fc = d.forecast_set(d.ArrayDataset(arrays, {"resolution_s": 3600}))
    assert fc.arrays["hour_ahead_w"].shape[1] == 1 and fc.arrays["day_ahead_w"].shape[1] == L
    assert not fc.arrays["covariates"][:, len(CALENDAR_NAMES):].any()
    arrays["load_w"][0, 0] = np.nan
    with pytest.raises(d.DataError, match="'load_w' holds 1 non-finite"):
        d.ArrayDataset(arrays)
