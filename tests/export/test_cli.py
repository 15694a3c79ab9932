"""``unimeter export`` and the ``demo`` subcommand registration (real export, no TFLite here:
the TFLite path is covered once per session by the shared tiny bundle)."""

from __future__ import annotations

import json

import pytest

from edge.bundle import load_bundle
from edge.cli import build_parser, main
from tests.export._tiny import tiny


@pytest.fixture(scope="module")
def t():
    return tiny()


def test_export_command_writes_a_verified_signed_bundle(t, tmp_path, capsys):
    from edge.signing import BundleTrust, generate_keypair

    out = tmp_path / "bundle"
    kid = generate_keypair(tmp_path / "sign.key", tmp_path / "sign.pub")
    rc = main(["export", "--checkpoint", f"anomaly={t.checkpoints['anomaly']}", "--out", str(out),
               "--no-tflite", "--no-fp32", "--model-version", "9.9.9", "--sign", str(tmp_path / "sign.key")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "1 task(s)" in printed and "anomaly.int8.onnx" in printed and "(signed" in printed
    bundle = load_bundle(out, trust=BundleTrust.from_config([str(tmp_path / "sign.pub")]))
    assert bundle.signature == f"valid (key {kid})"
    assert bundle.model_version == "9.9.9" and set(bundle.tasks) == {"anomaly"}
    assert set(bundle.tasks["anomaly"].artifacts) == {"onnx_int8"}  # --no-fp32 --no-tflite
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tasks"]["anomaly"]["topk"]["gate_quantized"] is False
    assert manifest["tasks"]["anomaly"]["verification"]["onnx_fp32_scaled_error"] <= 1e-4
    # an existing bundle is not replaced without --overwrite, and stays intact
    rc = main(["export", "--checkpoint", str(t.checkpoints["anomaly"]), "--out", str(out), "--no-tflite"])
    assert rc == 1 and "--overwrite" in capsys.readouterr().err
    assert load_bundle(out).model_version == "9.9.9"


def test_export_refuses_a_wrong_task_label(t, tmp_path, capsys):
    assert main(["export", "--checkpoint", f"anomaly={t.checkpoints['imputation']}", "--out", str(tmp_path / "b")]) == 2
    assert "unimeter export:" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_export_reports_a_missing_checkpoint(tmp_path, capsys):
    rc = main(["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "b")])
    assert rc == 1 and "no checkpoint at" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_demo_subcommand_is_registered():
    """``unimeter demo`` exists whether or not export/demo.py (the lead's) is present yet; when
    it is missing, running it says so instead of failing at start-up."""
    import argparse
    import importlib.util

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"export", "demo"} <= set(sub.choices)
    if importlib.util.find_spec("export.demo") is None:
        assert main(["demo"]) == 2
