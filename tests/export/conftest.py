"""Shared by the export tests: the tiny trained model (tests/export/_tiny.py), its contract
module, its dense and gather-form ONNX exports (once per session: the tests only read them), and
ONNX Runtime / graph helpers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge.bundle import load_bundle
from export.onnx_export import OnnxExportConfig, export_onnx, gate_node_names
from tests.export._tiny import tiny
from trainer.checkpoint import load_task_model
from trainer.tasks import export_module


@pytest.fixture(scope="session")
def t():
    return tiny()


@pytest.fixture(scope="session")
def module(t):
    return export_module(load_task_model(t.checkpoints["imputation"])).eval()


@pytest.fixture(scope="session")
def dense_path(t, module, tmp_path_factory):
    return export_onnx(module, tmp_path_factory.mktemp("dense") / "dense.onnx", OnnxExportConfig(dispatch="dense"))


@pytest.fixture(scope="session")
def gather_path(t, module, tmp_path_factory):
    """The gather-form fp32 export (the int8 and TFLite models are made from it)."""
    return export_onnx(module, tmp_path_factory.mktemp("gather") / "gather.onnx", OnnxExportConfig())


@pytest.fixture(scope="session")
def moe_op_path(t):
    """The MoE-op fp32 export of ``module``: the shared bundle's fp32 imputation model (the bundle
    writer exports it with ``dispatch="moe_op"``; the tests only read it)."""
    from export.bundle_writer import MOE_OP_DISPATCH

    entry = load_bundle(t.bundle).manifest["tasks"]["imputation"]
    assert entry["topk"]["dispatch"]["onnx_fp32"] == MOE_OP_DISPATCH, entry["topk"]["dispatch"]
    return t.bundle / "imputation.fp32.onnx"


def run_onnx(path, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, x), strict=True))




def assert_gates_float(path, n_layers: int) -> None:
    model = onnx.load(str(path))
    gates = gate_node_names(path)
    assert len(gates) == n_layers
    by_name = {n.name: n for n in model.graph.node}
    inits = {i.name: i for i in model.graph.initializer}
    for name in gates:
        node = by_name[name]
        assert node.op_type in ("MatMul", "Gemm"), f"gate {name} was quantized to {node.op_type}"
        assert inits[node.input[1]].data_type == onnx.TensorProto.FLOAT
