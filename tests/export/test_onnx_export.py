"""The exported ONNX graph keeps the MoE sparse (proved by walking the graph), matches PyTorch
in every dispatch, and runs any batch size."""

from __future__ import annotations

import numpy as np
import pytest

from export.bundle_writer import scaled_error, torch_outputs
from export.onnx_export import (
    MoeShape,
    OnnxExportConfig,
    export_onnx,
    sparsity_report,
    with_dispatch,
)
from tests.export._tiny import feeds
from tests.export.conftest import run_onnx
from trainer.checkpoint import load_task_model
from trainer.model import MoEFeedForward
from trainer.tasks import export_module


def test_sparse_graph_walk_proves_top_k_routing(t, module, dense_path, gather_path):
    moe = MoeShape.of(module)
    n_layers = module.model.model_cfg.n_layers
    one = feeds(t.held_out["imputation"], module.input_names, 1)
    tokens = module.model.model_cfg.n_patches
    sparse = sparsity_report(gather_path, moe, one, tokens)
    dense = sparsity_report(dense_path, moe, one, tokens)
    assert sparse.n_topk == n_layers
    assert len(sparse.expert_gathers) == 2 * n_layers  # W1 and W2 tables gathered per layer
    assert sparse.dense_operands == []  # no MatMul reads a whole expert table
    assert sparse.is_sparse
    # the dense reference is caught by the same walk: its MatMuls read all N_e experts
    assert len(dense.dense_operands) == 2 * n_layers and not dense.is_sparse
    per_token = 2 * moe.d_model * moe.d_expert * n_layers  # W1 and W2 of one expert, all layers
    assert sparse.expert_macs_per_token == pytest.approx(moe.top_k * per_token)
    assert dense.expert_macs_per_token == pytest.approx(moe.n_experts * per_token)
    assert sparse.expert_macs_per_token / dense.expert_macs_per_token == pytest.approx(moe.top_k / moe.n_experts)


def test_onnx_fp32_matches_pytorch(t, module, gather_path):
    """<= 1e-4 max abs error on logits and on outputs in W relative to their scale (a kW-sized
    output carries 1e-4 W of float32 rounding by itself); both fp32 dispatches."""
    x = feeds(t.held_out["imputation"], module.input_names, 64)
    ref = torch_outputs(module, x)
    for path in (t.bundle / "imputation.fp32.onnx", gather_path):
        assert scaled_error(run_onnx(path, x), ref) <= 1e-4
    anomaly = export_module(load_task_model(t.checkpoints["anomaly"])).eval()
    xa = feeds(t.held_out["anomaly"], anomaly.input_names, 64)
    ref_a, got_a = torch_outputs(anomaly, xa), run_onnx(t.bundle / "anomaly.fp32.onnx", xa)
    for name in ("window_logit", "point_logit"):
        assert np.abs(got_a[name] - ref_a[name]).max() <= 1e-4


def test_dynamic_batch_runs_batch_1_and_64(t, module, dense_path, gather_path):
    x = feeds(t.held_out["imputation"], module.input_names, 64)
    for path in (t.bundle / "imputation.fp32.onnx", dense_path, gather_path):
        full = run_onnx(path, x)["load_w_filled"]
        assert full.shape == (64, 48)
        for i in (0, 63):
            row = run_onnx(path, {k: v[i:i + 1] for k, v in x.items()})["load_w_filled"]
            np.testing.assert_allclose(row[0], full[i], rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(run_onnx(dense_path, x)["load_w_filled"], full, rtol=1e-5, atol=1e-2)


def test_dispatch_is_chosen_on_a_copy_and_nothing_is_patched(t, module, tmp_path):
    """The contrib-op export gets its own copy of the module with the "moe_op" dispatch; the
    caller's module and the MoE class are left as they were."""
    forward = MoEFeedForward.forward
    moe_op = with_dispatch(module, "moe_op")
    assert moe_op is not module and {m.dispatch for m in moe_op.modules() if isinstance(m, MoEFeedForward)} == {"moe_op"}
    assert {m.dispatch for m in module.modules() if isinstance(m, MoEFeedForward)} == {"gather"}
    export_onnx(module, tmp_path / "moe.onnx", OnnxExportConfig(dispatch="moe_op"))
    assert MoEFeedForward.forward is forward and with_dispatch(module, "sparse") is module
