"""int8 models: the gather form quantized by the stock quantizer stays sparse, the QMoE rewrite
quantizes what its scope says, and both keep the fp32 routing and the task metric."""

from __future__ import annotations

import onnx
import pytest

from export.bundle_writer import scaled_error
from export.onnx_export import MoeShape, OnnxExportConfig, export_onnx, sparsity_report
from export.quantize import (
    QuantizeConfig,
    quantize_moe_op_int8,
    quantize_onnx_int8,
    routing_agreement,
)
from tests.export._tiny import feeds
from tests.export.conftest import assert_gates_float, run_onnx
from trainer.checkpoint import load_task_model
from trainer.distill import task_metric
from trainer.tasks import export_module


def test_int8_gather_form_stays_sparse_and_gate_stays_float(t, module, gather_path, tmp_path):
    """The int8 gather form (what gelu students ship) is walked like the fp32 one."""
    moe = MoeShape.of(module)
    path = quantize_onnx_int8(gather_path, tmp_path / "gather.int8.onnx")
    one = feeds(t.held_out["imputation"], module.input_names, 1)
    report = sparsity_report(path, moe, one, module.model.model_cfg.n_patches)
    assert report.is_sparse and report.n_topk == module.model.model_cfg.n_layers
    assert "MatMulInteger" in [n.op_type for n in onnx.load(str(path)).graph.node]  # something was quantized
    assert_gates_float(path, module.model.model_cfg.n_layers)


def test_qmoe_scopes_keep_routing_and_quantize_what_they_say(t, module, tmp_path):
    """experts: no dynamic int8 MatMul at all; heads: only after the last MoE layer; all: every
    MatMul but the gates. Routing agreement with fp32 stays >= 99% in each."""
    x = feeds(t.held_out["imputation"], module.input_names, 64)
    moe_fp32 = export_onnx(module, tmp_path / "moe.onnx", OnnxExportConfig(dispatch="moe_op"))
    quantized = {}
    for scope in ("experts", "heads", "all"):
        path = quantize_moe_op_int8(moe_fp32, tmp_path / f"{scope}.onnx", QuantizeConfig(moe_int8_scope=scope))
        quantized[scope] = sum(n.op_type == "MatMulInteger" for n in onnx.load(str(path)).graph.node)
        assert routing_agreement(moe_fp32, path, x) >= 0.99
        assert scaled_error(run_onnx(path, x), run_onnx(moe_fp32, x)) < 0.05
    assert quantized["experts"] == 0 < quantized["heads"] < quantized["all"]
    with pytest.raises(ValueError, match="moe_int8_scope"):
        quantize_moe_op_int8(moe_fp32, tmp_path / "x.onnx", QuantizeConfig(moe_int8_scope="some"))


def test_int8_routing_agreement_and_task_metrics(t, tmp_path):
    """Routing: >= 99% of (window, token, layer) top-k sets identical to fp32 on held-out windows.
    Metrics on this tiny model: imputation MAE within 5% relative, anomaly window F1 within 0.05
    (the benchmark reports the student's real figures)."""
    for task in ("imputation", "anomaly"):
        data = t.held_out[task]
        spec_inputs = ("load_w", "observed") if task == "imputation" else ("load_w",)
        x = feeds(data, spec_inputs)
        fp32, int8 = t.bundle / f"{task}.fp32.onnx", t.bundle / f"{task}.int8.onnx"
        module = export_module(load_task_model(t.checkpoints[task])).eval()
        gather = export_onnx(module, tmp_path / f"{task}.onnx", OnnxExportConfig(dispatch="sparse"))
        assert routing_agreement(gather, int8, x) >= 0.99
        m32 = task_metric(task, run_onnx(fp32, x), data.arrays)
        m8 = task_metric(task, run_onnx(int8, x), data.arrays)
        if task == "imputation":
            assert abs(m8["mae_w"] - m32["mae_w"]) <= 0.05 * m32["mae_w"]
        else:
            assert abs(m8["window_f1"] - m32["window_f1"]) <= 0.05
