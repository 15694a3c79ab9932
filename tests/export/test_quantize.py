"""int8 models: the gather form quantized by the stock quantizer stays sparse, the QMoE rewrite
quantizes what its scope says, and both keep the fp32 routing and the task metric."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.bundle_writer import scaled_error
from export.errors import ExportError
from export.onnx_export import MoeShape, OnnxExportConfig, export_onnx, sparsity_report
from export.quantize import (
    QuantizeConfig,
    integer_matmul_overflows,
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


def test_qmoe_scopes_keep_routing_and_quantize_what_they_say(t, module, moe_op_path, tmp_path):
    """experts: no dynamic int8 MatMul at all; heads: only after the last MoE layer; all: every
    MatMul but the gates. Routing agreement with fp32 stays >= 99% in each."""
    x = feeds(t.held_out["imputation"], module.input_names, 64)
    moe_fp32 = moe_op_path
    quantized = {}
    for scope in ("experts", "heads", "all"):
        path = quantize_moe_op_int8(moe_fp32, tmp_path / f"{scope}.onnx", QuantizeConfig(moe_int8_scope=scope))
        quantized[scope] = sum(n.op_type == "MatMulInteger" for n in onnx.load(str(path)).graph.node)
        assert routing_agreement(moe_fp32, path, x) >= 0.99
        assert scaled_error(run_onnx(path, x), run_onnx(moe_fp32, x)) < 0.05
    assert quantized["experts"] == 0 < quantized["heads"] < quantized["all"]
    with pytest.raises(ValueError, match="moe_int8_scope"):
        quantize_moe_op_int8(moe_fp32, tmp_path / "x.onnx", QuantizeConfig(moe_int8_scope="some"))


def test_int8_routing_agreement_and_task_metrics(t, gather_path, tmp_path):
    """Routing: >= 99% of (window, token, layer) top-k sets identical to fp32 on held-out windows.
    Metrics on this tiny model: imputation MAE within 5% relative, anomaly window F1 within 0.05
    (the benchmark reports the student's real figures)."""
    for task in ("imputation", "anomaly"):
        data = t.held_out[task]
        spec_inputs = ("load_w", "observed") if task == "imputation" else ("load_w",)
        x = feeds(data, spec_inputs)
        fp32, int8 = t.bundle / f"{task}.fp32.onnx", t.bundle / f"{task}.int8.onnx"
        gather = gather_path if task == "imputation" else export_onnx(  # gather_path: imputation's
            export_module(load_task_model(t.checkpoints[task])).eval(), tmp_path / f"{task}.onnx",
            OnnxExportConfig(dispatch="sparse"))
        assert routing_agreement(gather, int8, x) >= 0.99
        m32 = task_metric(task, run_onnx(fp32, x), data.arrays)
        m8 = task_metric(task, run_onnx(int8, x), data.arrays)
        if task == "imputation":
            assert abs(m8["mae_w"] - m32["mae_w"]) <= 0.05 * m32["mae_w"]
        else:
            assert abs(m8["window_f1"] - m32["window_f1"]) <= 0.05


def _run_exact_x86(path, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``path`` run with onnxruntime's x86 precision mode (int8 weights rewritten to uint8 where the
    CPU's u8 x s8 kernel could saturate; a no-op on other CPUs and on uint8 weights)."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.x64quantprecision", "1")
    s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, x), strict=True))


def test_int8_matmuls_compute_the_same_on_every_cpu(t, module, gather_path, moe_op_path, tmp_path):
    """The dynamic int8 MatMuls take uint8 weights: nothing any CPU's kernel can saturate, so the
    default session and onnxruntime's exact x86 mode give the same numbers (on an AVX2 host
    without VNNI, int8 weights made 8.5% of a MatMul's outputs wrong and kept 81% of the routes)."""
    x = feeds(t.held_out["imputation"], module.input_names, 64)
    paths = [quantize_onnx_int8(gather_path, tmp_path / "gather.int8.onnx"),
             quantize_moe_op_int8(moe_op_path, tmp_path / "all.onnx", QuantizeConfig(moe_int8_scope="all"))]
    for path in paths:
        model = onnx.load(str(path))
        inits = {i.name: i for i in model.graph.initializer}
        weights = [inits[n.input[1]] for n in model.graph.node if n.op_type == "MatMulInteger"]
        assert weights and all(w.data_type == TensorProto.UINT8 for w in weights)
        assert integer_matmul_overflows(model) == []
        default, exact = run_onnx(path, x), _run_exact_x86(path, x)
        for name in default:
            np.testing.assert_array_equal(default[name], exact[name])


def _matmul_integer(weight: np.ndarray, rows: int = 1) -> onnx.ModelProto:
    node = helper.make_node("MatMulInteger", ["a", "w"], ["y"], name="mm")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("a", TensorProto.UINT8, [rows, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [rows, weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph)


def test_int8_weights_that_could_saturate_are_found():
    """Full-range int8 weights are flagged; 7-bit int8 and uint8 weights are exact everywhere."""
    full = np.array([[127, -128], [5, 0]], np.int8)
    assert integer_matmul_overflows(_matmul_integer(full)) == ["mm: w"]
    assert integer_matmul_overflows(_matmul_integer(np.array([[64, -64], [1, 0]], np.int8))) == []
    assert integer_matmul_overflows(_matmul_integer(np.array([[65, 0], [1, 0]], np.int8))) == ["mm: w"]
    assert integer_matmul_overflows(_matmul_integer(np.array([[255, 0], [1, 2]], np.uint8))) == []


def test_int8_weights_in_the_exact_range_are_exact_here():
    """The bound ``integer_matmul_overflows`` uses, run through onnxruntime on this CPU: uint8
    activations at 255 against int8 weights at +-64 (every pair sum at +-32,640) give the exact
    integer product."""
    rng = np.random.default_rng(0)
    weight = rng.choice(np.array([-64, 64], np.int8), size=(64, 16))
    activation = np.full((4, 64), 255, np.uint8)
    activation[1:] = rng.integers(0, 256, (3, 64), dtype=np.uint8)
    session = ort.InferenceSession(_matmul_integer(weight, rows=4).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    got = session.run(["y"], {"a": activation})[0]
    np.testing.assert_array_equal(got, activation.astype(np.int64) @ weight.astype(np.int64))


# int8 (uint8-weight) outputs against fp32's, scaled error (export.bundle_writer.scaled_error): the
# bound the QMoE scopes keep too (tests/export/test_onnx_export.py)
INT8_SCALED_ERROR_MAX = 0.05


def test_int8_weights_that_could_saturate_are_refused_by_quantization(gather_path, tmp_path):
    """Full-range int8 weights (``weight_type="int8"``) are refused with the MatMuls named and the
    way out, and the refused model is not left behind; 7-bit int8 (``reduce_range``) is exact on
    every CPU and passes."""
    out = tmp_path / "int8.onnx"
    with pytest.raises(ExportError, match=r"int8 weights saturate onnxruntime's x86 kernels on CPUs "
                                          r"without VNNI: \[.*MatMul.*\]; quantize with uint8 weights"):
        quantize_onnx_int8(gather_path, out, QuantizeConfig(weight_type="int8"))
    assert not out.exists()
    seven_bit = quantize_onnx_int8(gather_path, tmp_path / "int7.onnx",
                                   QuantizeConfig(weight_type="int8", reduce_range=True))
    model = onnx.load(str(seven_bit))
    inits = {i.name: i for i in model.graph.initializer}
    assert {inits[n.input[1]].data_type for n in model.graph.node if n.op_type == "MatMulInteger"} == {TensorProto.INT8}
    assert integer_matmul_overflows(model) == []
    with pytest.raises(ValueError, match="weight_type"):
        quantize_onnx_int8(gather_path, tmp_path / "x.onnx", QuantizeConfig(weight_type="int4"))


def test_uint8_weights_give_the_fp32_outputs_on_this_cpu(t, module, gather_path, tmp_path):
    """The default int8 gather form (uint8 weights) run by onnxruntime on this CPU stays within
    ``INT8_SCALED_ERROR_MAX`` of the fp32 model on held-out windows, and its MatMuls are exact
    (onnxruntime's exact x86 mode gives the same numbers)."""
    x = feeds(t.held_out["imputation"], module.input_names, 64)
    path = quantize_onnx_int8(gather_path, tmp_path / "uint8.onnx")
    int8 = run_onnx(path, x)
    assert 0 < scaled_error(int8, run_onnx(gather_path, x)) <= INT8_SCALED_ERROR_MAX
    exact = _run_exact_x86(path, x)
    assert all(np.array_equal(int8[name], exact[name]) for name in exact)
