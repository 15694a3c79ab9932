"""edge.bundle: the loader verifies format, fields, hashes and runtime versions, and refuses
anything else with a BundleError that says what is wrong.

Most tests build a small bundle by hand (plain files and a manifest: the loader checks bytes,
not model semantics); one loads the real exported tiny bundle.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from edge.bundle import (
    FORMAT_NAME,
    FORMAT_VERSION,
    BundleError,
    BundleFormatError,
    BundleIntegrityError,
    BundleMissingArtifactError,
    BundleRuntimeError,
    load_bundle,
    parse_version,
    read_reference,
)


def _entry(path: Path) -> dict:
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}


def make_bundle(root: Path, **manifest_overrides) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "imputation.int8.onnx").write_bytes(b"not really onnx, but hashed" * 10)
    (root / "imputation.fp32.onnx").write_bytes(b"fp32 bytes" * 20)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_version": "1.2.3",
        "created_at": "2026-01-01T00:00:00+00:00",
        "appliances": ["kettle", "fridge"],
        "min_runtime_versions": {"onnxruntime": "1.16.0"},
        "tasks": {
            "imputation": {
                "inputs": [{"name": "load_w", "shape": [None, 48], "unit": "W"},
                           {"name": "observed", "shape": [None, 48]}],
                "outputs": [{"name": "load_w_filled", "shape": [None, 48], "unit": "W"}],
                "input_spec": {"resolution_s": 1800, "L": 48, "P": 12, "normalisation": {"kind": "instance"}},
                "topk": {"n_experts": 8, "k": 2, "n_moe_layers": 4},
                "artifacts": {"onnx_int8": "imputation.int8.onnx", "onnx_fp32": "imputation.fp32.onnx"},
            }
        },
        "artifacts": {name: _entry(root / name) for name in ("imputation.int8.onnx", "imputation.fp32.onnx")},
    }
    manifest.update(manifest_overrides)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _edit_manifest(root: Path, edit) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_valid_bundle_loads_with_its_spec(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b"))
    assert b.model_version == "1.2.3" and b.format_version == FORMAT_VERSION
    assert b.appliances == ("kettle", "fridge")
    spec = b.task("imputation")
    assert [t.name for t in spec.inputs] == ["load_w", "observed"]
    assert spec.inputs[0].shape == (None, 48) and spec.inputs[0].unit == "W"
    assert spec.input_spec["L"] == 48 and spec.topk["k"] == 2
    assert spec.artifacts["onnx_int8"] == (tmp_path / "b" / "imputation.int8.onnx").resolve()


def test_tampered_artifact_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b")
    data = bytearray((root / "imputation.int8.onnx").read_bytes())
    data[5] ^= 0x01  # same size, one bit flipped
    (root / "imputation.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=r"imputation\.int8\.onnx.*tampered"):
        load_bundle(root)


def test_truncated_artifact_is_refused_by_size(tmp_path):
    root = make_bundle(tmp_path / "b")
    (root / "imputation.fp32.onnx").write_bytes(b"short")
    with pytest.raises(BundleIntegrityError, match="size"):
        load_bundle(root)


def test_missing_artifact_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b")
    (root / "imputation.fp32.onnx").unlink()
    with pytest.raises(BundleMissingArtifactError, match=r"imputation\.fp32\.onnx.*missing"):
        load_bundle(root)


def test_unsupported_format_version_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b", format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleFormatError, match="unsupported bundle format version"):
        load_bundle(root)


@pytest.mark.parametrize("field", ["model_version", "artifacts", "min_runtime_versions", "tasks"])
def test_missing_required_field_is_refused(tmp_path, field):
    root = make_bundle(tmp_path / "b")
    _edit_manifest(root, lambda m: m.pop(field))
    with pytest.raises(BundleFormatError, match=field):
        load_bundle(root)


def test_task_artifact_without_hash_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b")
    (root / "extra.onnx").write_bytes(b"unlisted")
    _edit_manifest(root, lambda m: m["tasks"]["imputation"]["artifacts"].update(onnx_fp32="extra.onnx"))
    with pytest.raises(BundleFormatError, match="no sha256"):
        load_bundle(root)


def test_input_spec_must_be_complete(tmp_path):
    root = make_bundle(tmp_path / "b")
    _edit_manifest(root, lambda m: m["tasks"]["imputation"]["input_spec"].pop("resolution_s"))
    with pytest.raises(BundleFormatError, match="resolution_s"):
        load_bundle(root)


def test_reference_file_without_hash_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b")
    (root / "imputation.reference.npz").write_bytes(b"npz")
    _edit_manifest(root, lambda m: m["tasks"]["imputation"].update(reference={"file": "imputation.reference.npz"}))
    with pytest.raises(BundleFormatError, match="reference file 'imputation.reference.npz' has no sha256"):
        load_bundle(root)


def test_reference_that_does_not_fit_the_task_is_refused(tmp_path):
    import numpy as np

    root = make_bundle(tmp_path / "b")
    ref = root / "imputation.reference.npz"
    np.savez(ref, **{"input/load_w": np.zeros((2, 48), np.float32)})  # "observed" missing

    def add(m):
        m["tasks"]["imputation"]["reference"] = {"file": ref.name}
        m["artifacts"][ref.name] = _entry(ref)

    _edit_manifest(root, add)
    spec = load_bundle(root).tasks["imputation"]
    with pytest.raises(BundleFormatError, match="do not match the task's inputs"):
        read_reference(spec)
    ref.write_bytes(b"not an npz")
    _edit_manifest(root, lambda m: m["artifacts"].update({ref.name: _entry(ref)}))
    with pytest.raises(BundleFormatError, match="not a reference npz"):
        read_reference(load_bundle(root).tasks["imputation"])


def test_path_escape_in_artifact_name_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b")
    _edit_manifest(root, lambda m: m["artifacts"].update({"../x.onnx": {"sha256": "0" * 64}}))
    with pytest.raises(BundleFormatError, match="plain file name"):
        load_bundle(root)


def test_runtime_too_old_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b", min_runtime_versions={"onnxruntime": "99.0"})
    with pytest.raises(BundleRuntimeError, match="minimum versions"):
        load_bundle(root)
    assert load_bundle(root, check_runtimes=False).model_version == "1.2.3"


@pytest.mark.parametrize("content, match", [(None, "no manifest.json"), ("{not json", "not valid JSON"),
                                            ('["a list"]', "JSON object")])
def test_bad_manifest_is_refused(tmp_path, content, match):
    root = tmp_path / "b"
    root.mkdir()
    if content is not None:
        (root / "manifest.json").write_text(content)
    with pytest.raises(BundleFormatError, match=match):
        load_bundle(root)


def test_not_a_directory_and_unknown_task(tmp_path):
    with pytest.raises(BundleFormatError, match="not a bundle directory"):
        load_bundle(tmp_path / "nothing")
    b = load_bundle(make_bundle(tmp_path / "b"))
    with pytest.raises(BundleError, match="no task 'forecast'"):
        b.task("forecast")


def test_parse_version():
    assert parse_version("1.31.1") == (1, 31, 1)
    assert parse_version("2.13.0+cpu") == (2, 13, 0)
    assert parse_version("2.14.0rc1") == (2, 14, 0)
    assert parse_version("1.31.1") > parse_version("1.9")


def test_real_exported_bundle_loads_and_refuses_tampering(tmp_path):
    from tests.export._tiny import tiny

    real = tiny().bundle
    b = load_bundle(real)
    assert set(b.tasks) == {"imputation", "anomaly"}
    assert b.manifest["total_bytes"] <= 1_000_000
    for spec in b.tasks.values():
        assert {"onnx_fp32", "onnx_int8", "tflite_int8"} <= set(spec.artifacts)
        reference = read_reference(spec)  # hashed like the models (the loader verified it)
        assert reference.windows == 4 and set(reference.inputs) == {t.name for t in spec.inputs}
        assert set(reference.outputs) == set(spec.artifacts)
    copy = shutil.copytree(real, tmp_path / "copy")
    model = copy / "anomaly.int8.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="anomaly.int8.tflite"):
        load_bundle(copy)


def test_graph_io_that_breaks_the_task_contract_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b")
    _edit_manifest(root, lambda m: m["tasks"]["imputation"]["outputs"][0].update(name="filled_w"))
    with pytest.raises(BundleFormatError, match="not the task's contract"):
        load_bundle(root)
    other = make_bundle(tmp_path / "c")
    _edit_manifest(other, lambda m: m["tasks"].update(weather=m["tasks"].pop("imputation")))
    with pytest.raises(BundleFormatError, match="unknown task"):
        load_bundle(other)
