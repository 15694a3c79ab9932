"""The exported ONNX graph keeps the MoE sparse (proved by walking the graph), matches PyTorch,
and the int8 model keeps the routing and the task metric."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export.bundle_writer import scaled_error, torch_outputs
from export.onnx_export import (
    MoeShape,
    OnnxExportConfig,
    export_onnx,
    gate_node_names,
    sparsity_report,
)
from export.quantize import (
    QuantizeConfig,
    quantize_moe_op_int8,
    quantize_onnx_int8,
    routing_agreement,
)
from tests.export._tiny import feeds, tiny
from trainer.checkpoint import load_task_model
from trainer.distill import task_metric
from trainer.tasks import export_module


@pytest.fixture(scope="module")
def t():
    return tiny()


@pytest.fixture(scope="module")
def module(t):
    return export_module(load_task_model(t.checkpoints["imputation"])).eval()


@pytest.fixture(scope="module")
def dense_path(t, module, tmp_path_factory):
    return export_onnx(module, tmp_path_factory.mktemp("dense") / "dense.onnx", OnnxExportConfig(dispatch="dense"))


@pytest.fixture(scope="module")
def gather_path(t, module, tmp_path_factory):
    """The gather-form fp32 export (the int8 and TFLite models are made from it)."""
    return export_onnx(module, tmp_path_factory.mktemp("gather") / "gather.onnx", OnnxExportConfig())


def _run(path, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, x), strict=True))


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


def _assert_gates_float(path, n_layers: int) -> None:
    model = onnx.load(str(path))
    gates = gate_node_names(path)
    assert len(gates) == n_layers
    by_name = {n.name: n for n in model.graph.node}
    inits = {i.name: i for i in model.graph.initializer}
    for name in gates:
        node = by_name[name]
        assert node.op_type in ("MatMul", "Gemm"), f"gate {name} was quantized to {node.op_type}"
        assert inits[node.input[1]].data_type == onnx.TensorProto.FLOAT


def test_int8_gather_form_stays_sparse_and_gate_stays_float(t, module, gather_path, tmp_path):
    """The int8 gather form (what gelu students ship) is walked like the fp32 one."""
    moe = MoeShape.of(module)
    path = quantize_onnx_int8(gather_path, tmp_path / "gather.int8.onnx")
    one = feeds(t.held_out["imputation"], module.input_names, 1)
    report = sparsity_report(path, moe, one, module.model.model_cfg.n_patches)
    assert report.is_sparse and report.n_topk == module.model.model_cfg.n_layers
    assert "MatMulInteger" in [n.op_type for n in onnx.load(str(path)).graph.node]  # something was quantized
    _assert_gates_float(path, module.model.model_cfg.n_layers)


def test_bundle_int8_is_qmoe_with_8bit_experts_and_float_gates(t, module, dense_path):
    """The bundle's int8 ONNX: one QMoE node per layer (k of N_e experts per token, uint8 expert
    tables read by nothing else), gates float, the heads dynamic int8."""
    moe, cfg = MoeShape.of(module), module.model.model_cfg
    path = t.bundle / "imputation.int8.onnx"
    model = onnx.load(str(path))
    qmoe = [n for n in model.graph.node if n.domain == "com.microsoft" and n.op_type == "QMoE"]
    assert len(qmoe) == cfg.n_layers and not any(n.op_type in ("MoE", "TopK") for n in model.graph.node)
    inits = {i.name: i for i in model.graph.initializer}
    for node in qmoe:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["k"] == cfg.top_k and attrs["expert_weight_bits"] == 8
        for name in (node.input[2], node.input[5]):
            assert inits[name].data_type == onnx.TensorProto.UINT8 and inits[name].dims[0] == cfg.n_experts
    one = feeds(t.held_out["imputation"], module.input_names, 1)
    report = sparsity_report(path, moe, one, cfg.n_patches)
    dense = sparsity_report(dense_path, moe, one, cfg.n_patches)
    assert report.is_sparse and len(report.moe_nodes) == cfg.n_layers and report.moe_table_leaks == []
    assert report.expert_macs_per_token / dense.expert_macs_per_token == pytest.approx(cfg.top_k / cfg.n_experts)
    assert "MatMulInteger" in [n.op_type for n in model.graph.node]  # the regression head
    _assert_gates_float(path, cfg.n_layers)
    # thresholded logits (anomaly): heads float, so only the experts are int8
    anomaly = onnx.load(str(t.bundle / "anomaly.int8.onnx"))
    ops = [n.op_type for n in anomaly.graph.node]
    assert ops.count("QMoE") == cfg.n_layers and "MatMulInteger" not in ops


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
        assert scaled_error(_run(path, x), _run(moe_fp32, x)) < 0.05
    assert quantized["experts"] == 0 < quantized["heads"] < quantized["all"]
    with pytest.raises(ValueError, match="moe_int8_scope"):
        quantize_moe_op_int8(moe_fp32, tmp_path / "x.onnx", QuantizeConfig(moe_int8_scope="some"))


def test_bundle_fp32_is_one_contrib_moe_node_per_layer(t, module):
    model = onnx.load(str(t.bundle / "imputation.fp32.onnx"))
    moe_nodes = [n for n in model.graph.node if n.domain == "com.microsoft" and n.op_type == "MoE"]
    assert len(moe_nodes) == module.model.model_cfg.n_layers
    for node in moe_nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["k"] == module.model.model_cfg.top_k and attrs["activation_type"] == b"relu"
        assert attrs["normalize_routing_weights"] == 1


def test_onnx_fp32_matches_pytorch(t, module, gather_path):
    """<= 1e-4 max abs error on logits and on outputs in W relative to their scale (a kW-sized
    output carries 1e-4 W of float32 rounding by itself); both fp32 dispatches."""
    x = feeds(t.held_out["imputation"], module.input_names, 64)
    ref = torch_outputs(module, x)
    for path in (t.bundle / "imputation.fp32.onnx", gather_path):
        assert scaled_error(_run(path, x), ref) <= 1e-4
    anomaly = export_module(load_task_model(t.checkpoints["anomaly"])).eval()
    xa = feeds(t.held_out["anomaly"], anomaly.input_names, 64)
    ref_a, got_a = torch_outputs(anomaly, xa), _run(t.bundle / "anomaly.fp32.onnx", xa)
    for name in ("window_logit", "point_logit"):
        assert np.abs(got_a[name] - ref_a[name]).max() <= 1e-4


def test_dynamic_batch_runs_batch_1_and_64(t, module, dense_path, gather_path):
    x = feeds(t.held_out["imputation"], module.input_names, 64)
    for path in (t.bundle / "imputation.fp32.onnx", dense_path, gather_path):
        full = _run(path, x)["load_w_filled"]
        assert full.shape == (64, 48)
        for i in (0, 63):
            row = _run(path, {k: v[i:i + 1] for k, v in x.items()})["load_w_filled"]
            np.testing.assert_allclose(row[0], full[i], rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(_run(dense_path, x)["load_w_filled"], full, rtol=1e-5, atol=1e-2)


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
        m32 = task_metric(task, _run(fp32, x), data.arrays)
        m8 = task_metric(task, _run(int8, x), data.arrays)
        if task == "imputation":
            assert abs(m8["mae_w"] - m32["mae_w"]) <= 0.05 * m32["mae_w"]
        else:
            assert abs(m8["window_f1"] - m32["window_f1"]) <= 0.05


def test_bundle_int8_gather_form_when_asked_needs_no_contrib_kernel(t, tmp_path):
    """int8_moe_op=False (what a gelu student gets): the int8 ONNX is the gather form, which any
    onnxruntime >= the bundle minimum runs, so the manifest sets no per-artifact requirement."""
    from edge.bundle import load_bundle
    from export.bundle_writer import GATHER_DISPATCH, BundleConfig, write_bundle

    cfg = BundleConfig(include_tflite=False, include_fp32=False, int8_moe_op=False, check_windows=8)
    bundle = load_bundle(write_bundle({"anomaly": t.checkpoints["anomaly"]}, tmp_path / "b",
                                      model_version="gather-int8", cfg=cfg))
    entry = bundle.manifest["tasks"]["anomaly"]
    assert entry["topk"]["dispatch"] == {"onnx_int8": GATHER_DISPATCH}
    assert "artifact_requirements" not in entry
    ops = [n.op_type for n in onnx.load(str(bundle.tasks["anomaly"].artifacts["onnx_int8"])).graph.node]
    assert "TopK" in ops and "QMoE" not in ops
    assert entry["verification"]["onnx_int8_routing_agreement"] >= 0.99
