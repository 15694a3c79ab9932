"""bench/export.py with days of context: the feeds it times carry the history the graph takes, and
its node profile finds the MoE op in a context graph (an untrained tiny model, no training)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
D = 2


def _bench():
    spec = importlib.util.spec_from_file_location("bench_export", ROOT / "bench" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def context_graph(tmp_path_factory):
    """An untrained tiny imputation model with D days of context, exported with the MoE op."""
    import torch

    from export.onnx_export import OnnxExportConfig, export_onnx
    from trainer.model import ModelConfig
    from trainer.tasks import TaskConfig, TaskModel, export_module

    torch.manual_seed(0)
    model = TaskModel(ModelConfig.tiny(history_days=D, activation="relu"), TaskConfig(task="imputation")).eval()
    out = tmp_path_factory.mktemp("bench_export")
    return export_onnx(export_module(model), out / "imputation.onnx", OnnxExportConfig(dispatch="moe_op"))


def test_feeds_carry_the_history_the_context_graph_takes(tmp_path, context_graph):
    import onnxruntime as ort

    from export.pipeline import PipelineConfig, build_profile_sets

    bench = _bench()
    sets = build_profile_sets(PipelineConfig.preset("quick", tmp_path, households=6, days=10, history_days=D))
    path = bench.feeds_file({"test": {"imputation": sets["imputation"]["test"]}, "history_days": D}, tmp_path)
    feeds = np.load(path)
    n = min(64, len(sets["imputation"]["test"]))
    assert feeds["history_w"].shape == (n, D, 48) and feeds["history_mask"].shape == (n, D)
    session = ort.InferenceSession(str(context_graph), providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in session.get_inputs()) == sorted(feeds.files)

    profile = bench.op_profile({"moe_op": context_graph}, path, iters=3)["moe_op"]
    assert profile["moe_us"] > 0 and 0 < profile["moe_share_of_kernels"] < 1
    assert "MoE" in profile["per_op_us"]
