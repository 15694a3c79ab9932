"""bench/export.py with days of context: the feeds it times carry the history the context graph's
contract names, and its node profile finds the MoE op of the shared tiny bundle (no training, no
export of its own)."""

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
D = 2


def _bench():
    spec = importlib.util.spec_from_file_location("bench_export", ROOT / "bench" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_feeds_carry_the_history_the_context_graph_takes(tmp_path):
    from edge.task_io import task_io
    from export.pipeline import household_meters
    from trainer.data import simulate_profiles
    from trainer.profile_sets import MeterPart, imputation_set

    meters = household_meters(simulate_profiles(2, 5, seed=0))
    test = imputation_set([MeterPart(m, 0, len(m)) for m in meters], stride=12, seed=0, history_days=D)
    feeds = np.load(_bench().feeds_file({"test": {"imputation": test}, "history_days": D}, tmp_path))
    n = min(64, len(test))
    assert feeds["history_w"].shape == (n, D, 48) and feeds["history_mask"].shape == (n, D)
    assert sorted(feeds.files) == sorted(t.name for t in task_io("imputation", D).inputs)


def test_node_profile_finds_the_moe_op(tmp_path, tiny_bundle):
    data = np.load(tiny_bundle / "imputation.reference.npz")  # the bundle's own reference inputs
    inputs = {k.removeprefix("input/"): data[k].astype(np.float32) for k in data.files if k.startswith("input/")}
    np.savez(tmp_path / "feeds.npz", **inputs)
    profile = _bench().op_profile({"int8": tiny_bundle / "imputation.int8.onnx"}, tmp_path / "feeds.npz", iters=3)
    r = profile["int8"]
    assert r["moe_us"] > 0 and 0 < r["moe_share_of_kernels"] < 1
    assert set(r["per_op_us"]) & {"MoE", "QMoE"}
