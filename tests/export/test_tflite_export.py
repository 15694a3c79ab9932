"""The TFLite int8 model (litert-torch + ai-edge-quantizer weight_only_wi8_afp32, gate not
quantized) runs in ai-edge-litert's interpreter and matches PyTorch within a stated tolerance."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from export.bundle_writer import scaled_error, torch_outputs
from tests.export._tiny import feeds, tiny
from trainer.checkpoint import load_task_model
from trainer.tasks import export_module

# weight-only int8 (per-channel) against float PyTorch: 5% of the output scale on this tiny model
TFLITE_INT8_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def t():
    return tiny()


def _runner(path):
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    return interpreter, interpreter.get_signature_runner()


@pytest.mark.parametrize("task", ["imputation", "anomaly"])
def test_tflite_int8_matches_pytorch(t, task):
    import json

    module = export_module(load_task_model(t.checkpoints[task])).eval()
    io = json.loads((t.bundle / "manifest.json").read_text())["tasks"][task]["input_spec"]["tflite_io"]
    _, run = _runner(t.bundle / f"{task}.int8.tflite")
    x = feeds(t.held_out[task], module.input_names, 8)
    ref = torch_outputs(module, x)
    rows = [run(**{io["inputs"][k]: v[i:i + 1] for k, v in x.items()}) for i in range(8)]
    got = {name: np.concatenate([r[io["outputs"][name]] for r in rows]) for name in module.output_names}
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in ref.items()}
    assert scaled_error(got, ref) <= TFLITE_INT8_TOLERANCE


def test_tflite_gate_is_float_and_experts_are_int8(t):
    interpreter, _ = _runner(t.bundle / "imputation.int8.tflite")
    details = interpreter.get_tensor_details()
    # gate weights [N_e, d_model] (tensor names are shortened, gate tensors keep a marker)
    gate = [d for d in details if d["name"].startswith("gate_w_g/") and tuple(d["shape"]) == (4, 8)]
    assert gate, "gate weights not found by name"
    assert all(d["dtype"] == np.float32 for d in gate)
    assert any(d["dtype"] == np.int8 for d in details)  # the other weights were quantized


def test_tflite_graph_has_top_k(t):
    interpreter, _ = _runner(t.bundle / "imputation.int8.tflite")
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "TOPK_V2" in ops
    assert "GATHER" in ops or "EMBEDDING_LOOKUP" in ops


def test_tflite_conversion_leaves_stdout_to_the_command(t, tmp_path, capsys):
    """litert-torch's stage timings go to stderr: `unimeter train all` prints its result on stdout."""
    from export.tflite_export import export_tflite

    path = export_tflite(export_module(load_task_model(t.checkpoints["anomaly"])), tmp_path / "a.tflite")
    out = capsys.readouterr()
    assert path.stat().st_size > 0 and out.out == ""
    assert "LiteRT-Torch Convert" in out.err  # the timings are still shown
