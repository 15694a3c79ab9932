"""Hot update of the model bundle: a tampered bundle is refused while the previous model serves.

Uses the real tiny bundle (export.pipeline.quick_bundle), the real bundle verifier and onnxruntime.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import numpy as np
import pytest

from edge.agent.agent import Agent
from edge.agent.inference import LoadedModel, ModelHost, ModelLoadError, TaskShape, open_model
from edge.agent.meters import build_sources
from edge.agent.watch import BundleWatcher
from tests.edge.agent.helpers import Recorder, make_config


def _open(path):
    return open_model(path, backend="onnx", precision="int8", threads=1)


def _tamper(src, dst):
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    victim = dst / sorted(manifest["artifacts"])[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    return dst


def _relabel(src, dst, version):
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["model_version"] = version
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def _point(link, target):
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)  # atomic, as `ln -sfn` in a deploy script


def test_tampered_bundle_is_refused_and_old_model_keeps_serving(tiny_bundle, tmp_path):
    host = ModelHost(_open)
    assert host.try_load(tiny_bundle)
    good = host.current
    L = good.tasks["anomaly"].length
    before = host.run("anomaly", {"load_w": np.full((1, L), 300.0, np.float32)})
    assert not host.try_load(_tamper(tiny_bundle, tmp_path / "bad"))
    assert "sha256" in host.last_error or "tampered" in host.last_error
    assert host.current is good
    after = host.run("anomaly", {"load_w": np.full((1, L), 300.0, np.float32)})
    np.testing.assert_array_equal(before["window_logit"], after["window_logit"])


class _FailingRuntime:
    """Stand-in for a model that loads but fails at run time (cannot be built from a real bundle)."""

    backend_name = "failing"

    def run(self, task, inputs):
        raise RuntimeError("graph exploded")


def test_new_model_failing_at_run_time_is_rolled_back(tiny_bundle):
    good = _open(tiny_bundle)
    bad = LoadedModel(_FailingRuntime(), "bad", tiny_bundle, "fp", {"anomaly": TaskShape(1800, 48)}, ())
    models = iter([good, bad])
    host = ModelHost(lambda _path: next(models), rollback_after_errors=2)
    assert host.try_load("v1") and host.try_load("v2")
    assert host.current is bad
    for _ in range(2):
        with pytest.raises(RuntimeError):
            host.run("anomaly", {"load_w": np.zeros((1, 48), np.float32)})
    assert host.current is good and host.rollbacks == 1 and "graph exploded" in host.last_error


async def _direct(fn, *args):
    """The agent's ``infer`` (its inference thread), run inline."""
    return fn(*args)


async def _nothing() -> None:
    pass


_METER = [{"id": "h1", "kind": "virtual", "options": {"profile": "sine", "interval_s": 0.1}}]


async def test_hot_update_refuses_a_bundle_failing_its_self_check(tiny_bundle, tmp_path, caplog):
    """The watched bundle is replaced by one whose int8 ONNX gives other numbers here than when it
    was written (hashes re-made, so it verifies): with no other backend in it (the quick bundle
    has no TFLite) the self-check refuses it whole, the old model keeps serving, the refusal is
    logged and the agent's health says why."""
    from tests.export._tiny import misread_int8_model

    link = tmp_path / "current"
    _point(link, tiny_bundle)
    cfg = make_config(tmp_path / "state", 1883, _METER, model={"bundle": str(link), "backend": "auto"})
    agent = Agent(cfg, {})
    watcher = BundleWatcher(link, agent.host, _direct, _nothing)
    assert await watcher.check(initial=True)
    good = agent.host.current
    L = good.tasks["anomaly"].length
    before = agent.host.run("anomaly", {"load_w": np.full((1, L), 300.0, np.float32)})

    _point(link, misread_int8_model(tiny_bundle, tmp_path / "misread", "anomaly"))
    assert not await watcher.check()
    assert watcher.refused == 1 and agent.host.current is good and agent.host.swaps == 1
    after = agent.host.run("anomaly", {"load_w": np.full((1, L), 300.0, np.float32)})
    np.testing.assert_array_equal(before["window_logit"], after["window_logit"])
    assert any(r.levelname == "ERROR" and "reference windows" in r.getMessage() for r in caplog.records)
    health = agent.health()
    assert "computes the graph differently" in health.model.error
    assert any(w.startswith("model: ") and "onnx_int8" in w for w in health.warnings), health.warnings


def test_auto_backend_serves_tflite_when_onnx_fails_its_self_check(tmp_path):
    """With a TFLite model in the bundle (tests/export/_tiny.py's), ``auto`` serves that instead
    of an ONNX model that fails its self-check, and the agent's health says why."""
    from tests.export._tiny import misread_int8_model, tiny

    cfg = make_config(tmp_path / "state", 1883, _METER)
    agent = Agent(cfg, {}, opener=lambda p: open_model(p, backend="auto", precision="int8", threads=1))
    assert agent.host.try_load(misread_int8_model(tiny().bundle, tmp_path / "fallback", "imputation"))
    assert agent.host.current.runtime.backend == "tflite" and agent.host.last_error == ""
    warnings = agent.health().warnings
    assert any(w.startswith("model: running ai-edge-litert") and "task 'imputation'" in w
               and "reference windows" in w for w in warnings), warnings


def test_missing_bundle_refused_with_reason(tmp_path):
    with pytest.raises(ModelLoadError, match="refused"):
        _open(tmp_path / "nothing-here")


async def test_agent_hot_swaps_verified_bundles_only(tiny_bundle, mosquitto, tmp_path):
    link = tmp_path / "current"
    _point(link, tiny_bundle)
    cfg = make_config(
        tmp_path / "state", mosquitto.port,
        [{"id": "h1", "kind": "virtual", "options": {"profile": "sine", "interval_s": 0.1}}],
        model={"bundle": str(link), "watch_interval_s": 0.5, "backend": "onnx", "precision": "int8"},
        schedule={"profile_every_s": 0.5, "nilm_every_s": 0.5, "status_every_s": 0.5,
                  "min_coverage": 0.0, "profile_resolution_s": 1.0, "nilm_resolution_s": 0.5})
    rec = Recorder(mosquitto.port, ["unimeter/gw1/#"], client_id="hot-sub")
    agent = Agent(cfg, build_sources(cfg))
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 30)
        v1 = agent.host.current.version

        def statuses():
            return [m for m in rec.json("/status") if m.get("state") == "online" and "model_version" in m]

        async def until(pred, timeout_s=20.0):
            for _ in range(int(timeout_s / 0.1)):
                if pred():
                    return True
                await asyncio.sleep(0.1)
            return pred()

        assert await until(lambda: len(rec.json("/h1/anomaly")) >= 1)
        _point(link, _tamper(tiny_bundle, tmp_path / "tampered"))
        assert await until(lambda: any(s["model_error"] for s in statuses()))
        assert agent.host.current.version == v1
        n = len(rec.json("/h1/anomaly"))
        assert await until(lambda: len(rec.json("/h1/anomaly")) > n + 1)  # still serving
        assert all(m["model_version"] == v1 for m in rec.json("/h1/anomaly"))
        _point(link, _relabel(tiny_bundle, tmp_path / "v2", "v2-hot"))
        assert await until(lambda: any(s["model_version"] == "v2-hot" for s in statuses()))
        assert await until(lambda: rec.json("/h1/anomaly")[-1]["model_version"] == "v2-hot")
        assert agent.host.swaps == 2
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)
        rec.stop()
