"""edge.runtime.InferenceRuntime on a real exported bundle: real onnxruntime and ai-edge-litert
interpreters, contract names and shapes, backend choice, and input validation."""

from __future__ import annotations

import numpy as np
import pytest

from edge.bundle import load_bundle, read_reference
from edge.runtime import (
    SELF_CHECK_TOLERANCE,
    BackendUnavailableError,
    InferenceRuntime,
    InputError,
    SelfCheckError,
    scaled_error,
)


@pytest.fixture(scope="module")
def tiny():
    from tests.export._tiny import tiny as build

    return build()


@pytest.fixture(scope="module")
def bundle(tiny):
    return load_bundle(tiny.bundle)


@pytest.fixture(scope="module")
def windows(tiny):
    data = tiny.held_out["imputation"].arrays
    return {"load_w": data["load_w"][:16].astype(np.float32), "observed": data["observed"][:16].astype(np.float32)}


def test_auto_backend_is_onnxruntime_and_says_its_version(bundle):
    import onnxruntime

    rt = InferenceRuntime(bundle)
    assert rt.backend == "onnx"
    assert rt.backend_name == f"onnxruntime {onnxruntime.__version__}"
    assert set(rt.tasks) == {"imputation", "anomaly"}


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_onnx_outputs_follow_the_contract(bundle, windows, precision):
    rt = InferenceRuntime(bundle, backend="onnx", precision=precision)
    out = rt.run("imputation", windows)
    assert set(out) == {"load_w_filled"} and out["load_w_filled"].shape == (16, 48)
    observed = windows["observed"] > 0.5
    # observed points pass through; missing ones are filled with plausible (positive) power
    np.testing.assert_allclose(out["load_w_filled"][observed], windows["load_w"][observed], rtol=1e-5, atol=1e-2)
    assert (out["load_w_filled"][~observed] > 0).mean() > 0.9
    anomaly = rt.run("anomaly", {"load_w": windows["load_w"]})
    assert anomaly["window_logit"].shape == (16, 1) and anomaly["point_logit"].shape == (16, 48)


def test_int8_and_fp32_agree_closely(bundle, windows):
    a = InferenceRuntime(bundle, backend="onnx", precision="fp32").run("imputation", windows)["load_w_filled"]
    b = InferenceRuntime(bundle, backend="onnx", precision="int8").run("imputation", windows)["load_w_filled"]
    assert np.abs(a - b).max() / np.abs(a).max() < 0.05


def test_tflite_backend_runs_in_ai_edge_litert_and_matches_onnx(bundle, windows):
    from importlib.metadata import version

    rt = InferenceRuntime(bundle, backend="tflite", precision="int8")
    assert rt.backend_name == f"ai-edge-litert {version('ai-edge-litert')}"
    tfl = rt.run("imputation", windows)["load_w_filled"]  # batch 16 on a batch-1 graph: chunked
    onnx = InferenceRuntime(bundle, backend="onnx", precision="fp32").run("imputation", windows)["load_w_filled"]
    assert tfl.shape == (16, 48)
    # weight-only int8 TFLite against fp32 ONNX: within 5% of the output scale
    assert np.abs(tfl - onnx).max() / np.abs(onnx).max() < 0.05
    one = rt.run("imputation", {k: v[3:4] for k, v in windows.items()})["load_w_filled"]
    np.testing.assert_allclose(one[0], tfl[3], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-4), ("int8", 0.1)])
def test_batches_of_any_size_give_the_same_rows(bundle, windows, precision, atol):
    """fp32: identical per row. int8: dynamic quantization picks the activation scale per call,
    so a row's logits move slightly with the rest of the batch (bounded here)."""
    rt = InferenceRuntime(bundle, precision=precision)
    full = rt.run("anomaly", {"load_w": windows["load_w"]})["point_logit"]
    for i in (0, 7, 15):
        row = rt.run("anomaly", {"load_w": windows["load_w"][i:i + 1]})["point_logit"]
        np.testing.assert_allclose(row[0], full[i], rtol=1e-4, atol=atol)


def test_input_validation_errors_say_what_is_wrong(bundle, windows):
    rt = InferenceRuntime(bundle)
    with pytest.raises(InputError, match=r"missing \['observed'\]"):
        rt.run("imputation", {"load_w": windows["load_w"]})
    with pytest.raises(InputError, match=r"unknown \['power'\]"):
        rt.run("anomaly", {"load_w": windows["load_w"], "power": windows["load_w"]})
    with pytest.raises(InputError, match=r"shape \('B', 48\), got \(16, 47\)"):
        rt.run("anomaly", {"load_w": windows["load_w"][:, :47]})
    with pytest.raises(InputError, match="shape"):
        rt.run("anomaly", {"load_w": windows["load_w"][0]})
    bad = windows["load_w"].copy()
    bad[2, 5] = np.nan
    with pytest.raises(InputError, match="1 NaN/inf"):
        rt.run("anomaly", {"load_w": bad})
    with pytest.raises(InputError, match="disagree on batch size"):
        rt.run("imputation", {"load_w": windows["load_w"], "observed": windows["observed"][:3]})
    with pytest.raises(InputError, match="empty batch"):
        rt.run("anomaly", {"load_w": windows["load_w"][:0]})
    assert isinstance(InputError("x"), ValueError)


def test_unavailable_backend_and_bad_arguments(bundle):
    with pytest.raises(BackendUnavailableError, match="no tflite_fp32 model"):
        InferenceRuntime(bundle, backend="tflite", precision="fp32")
    with pytest.raises(ValueError, match="backend"):
        InferenceRuntime(bundle, backend="gpu")
    with pytest.raises(ValueError, match="precision"):
        InferenceRuntime(bundle, precision="int4")
    with pytest.raises(ValueError, match="threads"):
        InferenceRuntime(bundle, threads=0)


def test_runtime_accepts_a_path_and_warms_up(tiny):
    rt = InferenceRuntime(str(tiny.bundle), threads=1)
    rt.warmup()
    assert rt.spec("anomaly").outputs[0].name == "window_logit"
    assert rt.spec("anomaly").outputs[1].unit == "logit"


def test_onnxruntime_too_old_for_the_contrib_kernels_falls_back_to_tflite(tiny, tmp_path, windows):
    """The int8 ONNX uses com.microsoft.QMoE, so its manifest entry names a minimum onnxruntime.
    Raise that minimum past the installed version (the manifest is not hashed, the models are):
    auto picks TFLite and says why not ONNX; an explicit onnx backend is refused."""
    import json
    import shutil

    root = tmp_path / "bundle"
    shutil.copytree(tiny.bundle, root)
    manifest = json.loads((root / "manifest.json").read_text())
    needs = manifest["tasks"]["imputation"]["artifact_requirements"]
    assert needs["onnx_int8"]["onnxruntime"]  # written by the bundle writer for the QMoE model
    needs["onnx_int8"]["onnxruntime"] = "99.0"
    (root / "manifest.json").write_text(json.dumps(manifest))
    rt = InferenceRuntime(root)
    assert rt.backend == "tflite"
    assert rt.run("imputation", windows)["load_w_filled"].shape == (16, 48)
    with pytest.raises(BackendUnavailableError, match=r"onnx_int8 model needs onnxruntime >= 99\.0"):
        InferenceRuntime(root, backend="onnx")


def test_every_model_reproduces_its_reference_windows_at_load(bundle):
    """The writer stored each model's outputs on a few windows; the runtime re-runs the ones it
    is about to use when it is built (on this machine: the same numbers)."""
    for backend, precision in (("onnx", "int8"), ("onnx", "fp32"), ("tflite", "int8")):
        rt = InferenceRuntime(bundle, backend=backend, precision=precision)
        assert rt.self_checked == ("imputation", "anomaly") and rt.fallback_reason == ""
        for task in rt.tasks:
            reference = read_reference(rt.spec(task))
            got = rt.run(task, reference.inputs)
            assert scaled_error(got, reference.outputs[f"{backend}_{precision}"]) <= 1e-6


def test_a_model_that_computes_differently_is_never_used(tiny, tmp_path, windows, caplog):
    """auto falls back to TFLite and says why (logged as an error, kept in ``fallback_reason``);
    an explicit onnx backend is refused. Without the self-check the same model runs silently."""
    from tests.export._tiny import misread_int8_model

    root = misread_int8_model(tiny.bundle, tmp_path / "bundle", "imputation")
    rt = InferenceRuntime(root)
    assert rt.backend == "tflite" and rt.backend_name.startswith("ai-edge-litert")
    assert "task 'imputation': the onnx_int8 model's outputs on the bundle's 4 reference windows" in rt.fallback_reason
    assert any(r.levelname == "ERROR" and "computes the graph differently" in r.getMessage() for r in caplog.records)
    assert rt.run("imputation", windows)["load_w_filled"].shape == (16, 48)
    with pytest.raises(SelfCheckError, match=f"tolerance {SELF_CHECK_TOLERANCE:g}"):
        InferenceRuntime(root, backend="onnx")
    unchecked = InferenceRuntime(root, backend="onnx", self_check=False)
    reference = read_reference(unchecked.spec("imputation"))
    wrong = unchecked.run("imputation", reference.inputs)
    assert scaled_error(wrong, reference.outputs["onnx_int8"]) > 100 * SELF_CHECK_TOLERANCE


_FALLBACK_SCRIPT = """
import json, sys
import numpy as np
from edge.runtime import InferenceRuntime
rt = InferenceRuntime(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], rt.run("imputation", {k: x[k] for k in ("load_w", "observed")})["load_w_filled"])
print(json.dumps({"backend": rt.backend, "name": rt.backend_name}))
"""


def test_tflite_runtime_fallback_in_its_own_environment(tiny, windows, tmp_path):
    """Where only tflite-runtime 2.14 is installed (numpy<2, no onnxruntime, no ai-edge-litert), as
    on older Pi images: auto picks it, says so, and gives the same numbers as ai-edge-litert on the
    same TFLite model. It runs in the side venv scripts/setup.sh builds (the two interpreters
    need different numpy majors, so they cannot share one environment)."""
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    python = root / ".venv-tflite-runtime" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run scripts/setup.sh (it builds the tflite-runtime venv)")
    np.savez(tmp_path / "x.npz", **windows)
    proc = subprocess.run(
        [str(python), "-c", _FALLBACK_SCRIPT, str(tiny.bundle), str(tmp_path / "x.npz"), str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    chosen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert chosen == {"backend": "tflite", "name": "tflite-runtime 2.14.0"}, chosen
    litert = InferenceRuntime(tiny.bundle, backend="tflite").run("imputation", windows)["load_w_filled"]
    assert InferenceRuntime(tiny.bundle, backend="tflite").backend_name.startswith("ai-edge-litert")
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), litert, rtol=1e-4, atol=1e-2)
