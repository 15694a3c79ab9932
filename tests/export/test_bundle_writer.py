"""The bundle writer: per task the fp32 MoE-op ONNX, the QMoE int8 ONNX, the gather-form
fallbacks; the manifest follows the task contract; a failed export leaves no half bundle."""

from __future__ import annotations

import onnx
import pytest

from edge.bundle import load_bundle
from edge.task_io import TASK_IO, UNITS
from export.bundle_writer import BundleConfig, write_bundle
from export.errors import ExportError
from export.onnx_export import MoeShape, sparsity_report
from tests.export._tiny import feeds
from tests.export.conftest import assert_gates_float


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
    assert_gates_float(path, cfg.n_layers)
    # thresholded logits (anomaly): heads float, so only the experts are int8
    anomaly = onnx.load(str(t.bundle / "anomaly.int8.onnx"))
    ops = [n.op_type for n in anomaly.graph.node]
    assert ops.count("QMoE") == cfg.n_layers and "MatMulInteger" not in ops


def test_bundle_fp32_is_one_contrib_moe_node_per_layer(t, module):
    model = onnx.load(str(t.bundle / "imputation.fp32.onnx"))
    moe_nodes = [n for n in model.graph.node if n.domain == "com.microsoft" and n.op_type == "MoE"]
    assert len(moe_nodes) == module.model.model_cfg.n_layers
    for node in moe_nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["k"] == module.model.model_cfg.top_k and attrs["activation_type"] == b"relu"
        assert attrs["normalize_routing_weights"] == 1


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



def test_bundle_carries_reference_windows_for_every_model(t):
    """Per task a hashed npz with 4 check windows and every model's outputs on them (what the
    gateway's runtime re-runs at load: tests/edge/test_runtime.py)."""
    manifest = load_bundle(t.bundle).manifest
    for task, entry in manifest["tasks"].items():
        reference = entry["reference"]
        assert reference == {"file": f"{task}.reference.npz", "windows": 4, "kinds": sorted(entry["artifacts"])}
        assert manifest["artifacts"][reference["file"]]["kind"] == "reference"


def test_manifest_names_and_units_are_the_task_contract(t):
    bundle = load_bundle(t.bundle)
    for task, spec in bundle.tasks.items():
        io = TASK_IO[task]
        assert tuple(x.name for x in spec.inputs) == io.input_names
        assert tuple(x.name for x in spec.outputs) == io.output_names
        assert all(x.unit == UNITS[x.name] for x in (*spec.inputs, *spec.outputs))


def test_a_failed_export_leaves_no_bundle_behind(t, tmp_path):
    """The second task fails after the first was exported: nothing of either is left."""
    # the int8 gather form: one ONNX export for the first task (the forms are tested above)
    cfg = BundleConfig(include_tflite=False, include_fp32=False, fp32_moe_op=False, int8_moe_op=False,
                       check_windows=8)
    tasks = {"anomaly": t.checkpoints["anomaly"], "imputation": t.checkpoints["anomaly"]}
    with pytest.raises(ExportError, match="holds task 'anomaly', not 'imputation'"):
        write_bundle(tasks, tmp_path / "b", model_version="broken", cfg=cfg)
    assert list(tmp_path.iterdir()) == []


def test_calibration_is_fitted_on_the_exported_model_and_signed_with_the_manifest(t, tmp_path):
    """The writer's calibrate hook sees the verified bundle (it runs the exported int8 model), its
    figures land in the task's manifest entry, and the signature covers them."""
    import numpy as np

    from edge.calibration import fit_threshold
    from edge.runtime import InferenceRuntime
    from edge.signing import BundleTrust, generate_keypair, load_private_key

    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    clean = t.held_out["anomaly"].arrays
    windows = clean["load_w"][clean["window_label"] < 0.5][:30]
    seen = {}

    def calibrate(bundle):
        logits = InferenceRuntime(bundle).run("anomaly", {"load_w": windows})["window_logit"].ravel()
        seen["logits"] = logits
        return {"anomaly": fit_threshold(logits, np.arange(len(logits)) // 3).to_dict()}

    # the int8 gather form: one ONNX export per bundle (the hook sees whichever form is exported)
    cfg = BundleConfig(include_tflite=False, include_fp32=False, fp32_moe_op=False, int8_moe_op=False,
                       check_windows=8)
    out = write_bundle({"anomaly": t.checkpoints["anomaly"]}, tmp_path / "b", model_version="cal", cfg=cfg,
                       signing_key=load_private_key(tmp_path / "k.key"), calibrate=calibrate)
    bundle = load_bundle(out, trust=BundleTrust.from_config([str(tmp_path / "k.pub")], "refuse"))
    assert bundle.signature.startswith("valid")
    cal = bundle.task("anomaly").calibration
    assert cal["threshold"] == pytest.approx(fit_threshold(seen["logits"], np.arange(30) // 3).threshold)
    assert cal["n_days"] == 10 and bundle.task("anomaly").input_spec["steps_per_day"] == 48
    with pytest.raises(ExportError, match="tasks \\['forecast'\\]"):
        write_bundle({"anomaly": t.checkpoints["anomaly"]}, tmp_path / "c", model_version="cal", cfg=cfg,
                     calibrate=lambda bundle: {"forecast": {}})
    assert not (tmp_path / "c").exists()
