"""Shards: household splits are disjoint and deterministic, and stream back what was written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.data import shards as S
from edge.sim import simulate_fleet

IDS = [f"h{i:05d}" for i in range(10)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    traces = list(simulate_fleet(10, 6, "1min", seed=4))
    out = tmp_path_factory.mktemp("ds")
    manifest = S.write_traces(traces, out, IDS, fractions={"train": 0.6, "val": 0.2, "test": 0.2}, seed=4,
                              nilm_window=120, nilm_per_household=3, rows_per_shard=7)
    return out, manifest, {t.household_id: t for t in traces}


def test_manifest_splits_are_disjoint_by_household(dataset):
    out, manifest, _ = dataset
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["household_split"] == manifest["household_split"]
    for kind in ("profiles", "nilm"):
        seen = {}
        for split, info in manifest[kind]["splits"].items():
            for hid in info["households"]:
                assert seen.setdefault(hid, split) == split
            assert all((out / f).exists() for f in info["files"])
    assert len(manifest["profiles"]["splits"]["train"]["files"]) > 1, "rows_per_shard=7 must cut shards"


def test_profiles_stream_back_exactly(dataset):
    out, manifest, traces = dataset
    got = {}
    for split in ("train", "val", "test"):
        for batch in S.iter_profile_batches(out, split, batch_size=5):
            assert len(batch["date"]) <= 5 and batch["load_w"].shape[1:] == (48,)
            assert {manifest["household_split"][h] for h in batch["household_id"]} == {split}
            for i, hid in enumerate(batch["household_id"]):
                got[(hid, str(batch["date"][i]))] = (batch["load_clean_w"][i], batch["temperature_c"][i],
                                                     batch["weekday"][i], batch["observed"][i])
    assert len(got) == 10 * 6
    for hid, tr in traces.items():
        prof = tr.to_profiles()
        for d in range(len(prof.dates)):
            load, temp, wd, obs = got[(hid, str(prof.dates[d]))]
            np.testing.assert_array_equal(load, prof.load_w[d])
            np.testing.assert_array_equal(temp, prof.temperature_c[d])
            assert wd == prof.weekday[d] and obs.all()


def test_shuffle_drop_last_and_columns(dataset):
    out, manifest, _ = dataset
    rows = manifest["profiles"]["splits"]["train"]["rows"]
    plain = list(S.iter_profile_batches(out, "train", 4, columns=["household_id", "date", "load_w"]))
    assert set(plain[0]) == {"household_id", "date", "load_w"}
    shuf = list(S.iter_profile_batches(out, "train", 4, shuffle=True, seed=1, drop_last=True))
    assert all(len(b["date"]) == 4 for b in shuf) and len(shuf) == rows // 4
    key = lambda bs: sorted(f"{h}{d}" for b in bs for h, d in zip(b["household_id"], b["date"], strict=True))  # noqa: E731
    assert key(plain)[: 4 * (rows // 4)] != key(shuf) or rows % 4 == 0
    assert set(key(shuf)) <= set(key(plain))


def test_nilm_windows_match_the_trace(dataset):
    out, manifest, traces = dataset
    apps = manifest["nilm"]["appliances"]
    n = 0
    for split in manifest["nilm"]["splits"]:
        for b in S.iter_nilm_batches(out, split, batch_size=4):
            assert b["appliance_w"].shape[1:] == (len(apps), 120)
            for i, hid in enumerate(b["household_id"]):
                tr = traces[hid]
                k = int(np.searchsorted(tr.ts_s, b["start_ts_s"][i]))
                np.testing.assert_array_equal(b["load_w"][i], tr.power_w[k : k + 120])
                fridge = apps.index("fridge")
                if "fridge" in tr.appliances:
                    np.testing.assert_array_equal(b["appliance_w"][i, fridge], tr.appliances["fridge"].power_w[k : k + 120])
                    assert b["owned"][i, fridge] == 1
                owned = [a for a in apps if a in tr.appliances]
                assert b["owned"][i].sum() == len(owned)
                n += 1
    assert n == 30


def test_reader_errors(tmp_path, dataset):
    out, _, _ = dataset
    with pytest.raises(S.ShardError, match="no manifest"):
        next(S.iter_profile_batches(tmp_path, "train", 4))
    with pytest.raises(S.ShardError, match="no profiles split 'holdout'"):
        next(S.iter_profile_batches(out, "holdout", 4))
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(S.ShardError, match="corrupt manifest"):
        S.read_manifest(tmp_path)


def test_write_fleet_same_rows_for_any_worker_count(tmp_path):
    kw = dict(n_households=4, days=3, resolution_s=60, seed=8, nilm_window=60, nilm_per_household=2,
              attack_fraction=0.5, progress=False)
    m1, _ = S.write_fleet(tmp_path / "one", workers=1, **kw)
    m2, kept = S.write_fleet(tmp_path / "two", workers=2, keep_trace_of=1, **kw)
    assert m1["household_split"] == m2["household_split"] and kept.household_id == "h00001"
    for split in m1["profiles"]["splits"]:
        a = list(S.iter_profile_batches(tmp_path / "one", split, 100))
        b = list(S.iter_profile_batches(tmp_path / "two", split, 100))
        for x, y in zip(a, b, strict=True):
            for k in ("load_w", "load_clean_w", "anomaly_point", "anomaly_kind"):
                np.testing.assert_array_equal(x[k], y[k])
    assert sum(s["rows"] for s in m2["nilm"]["splits"].values()) == 8


def test_read_from_shard_files_or_whole_directory(dataset):
    out, manifest, _ = dataset
    total = sum(s["rows"] for s in manifest["profiles"]["splits"].values())
    assert sum(len(b["date"]) for b in S.iter_profile_batches(out, batch_size=9)) == total
    files = [out / f for f in manifest["profiles"]["splits"]["val"]["files"]]
    got = sum(len(b["date"]) for b in S.iter_profile_batches(files, batch_size=3))
    assert got == manifest["profiles"]["splits"]["val"]["rows"]
    with pytest.raises(S.ShardError, match="no such shard"):
        next(S.iter_profile_batches([out / "missing.parquet"]))
