"""The hot-update watcher with a public key configured: only bundles signed by that key go live.

Real tiny bundle, real onnxruntime, real ed25519 keys; the bundle path is a symlink switched
atomically, as in deploy/README.md.
"""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from edge.agent.agent import Agent
from edge.agent.config import ConfigError, parse_config
from edge.agent.meters import build_sources
from edge.signing import generate_keypair, load_private_key, sign_bundle
from tests.edge.agent.helpers import make_config
from tests.edge.agent.test_hot_update import _point


def _copy(src, dst, key=None, version=None, resolution_s=None):
    shutil.copytree(src, dst)
    if version or resolution_s:
        manifest = json.loads((dst / "manifest.json").read_text())
        if version:
            manifest["model_version"] = version
        if resolution_s:
            for task in manifest["tasks"].values():
                task["input_spec"]["resolution_s"] = resolution_s
        (dst / "manifest.json").write_text(json.dumps(manifest))
    if key is not None:
        sign_bundle(dst, key)
    return dst


async def _until(pred, timeout_s=20.0):
    for _ in range(int(timeout_s / 0.1)):
        if pred():
            return True
        await asyncio.sleep(0.1)
    return pred()


async def test_only_bundles_signed_by_the_configured_key_are_swapped_in(tiny_bundle, mosquitto, tmp_path):
    generate_keypair(tmp_path / "sign.key", tmp_path / "sign.pub")
    key = load_private_key(tmp_path / "sign.key")
    v1 = _copy(tiny_bundle, tmp_path / "v1", key, version="v1-signed")
    link = tmp_path / "current"
    _point(link, v1)
    cfg = make_config(
        tmp_path / "state", mosquitto.port,
        [{"id": "h1", "kind": "virtual", "options": {"profile": "sine", "interval_s": 0.2}}],
        model={"bundle": str(link), "watch_interval_s": 0.3, "backend": "onnx", "precision": "int8",
               "public_key_file": str(tmp_path / "sign.pub")})
    agent = Agent(cfg, build_sources(cfg))
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 60)
        assert agent.host.current.version == "v1-signed"
        assert agent.health().model.signature.startswith("valid (key ")
        # a signed bundle whose manifest was edited afterwards (resolution_s 1800 -> 60)
        signed_then_edited = _copy(v1, tmp_path / "edited", resolution_s=60)
        _point(link, signed_then_edited)
        assert await _until(lambda: "manifest was changed after signing" in (agent.host.last_error or ""))
        assert agent.host.current.version == "v1-signed" and agent.host.swaps == 1
        assert agent.health().model.error and any("model:" in w for w in agent.health().warnings)
        _point(link, _copy(tiny_bundle, tmp_path / "unsigned", version="v2-unsigned"))
        assert await _until(lambda: "refuses unsigned bundles" in (agent.host.last_error or ""))
        assert agent.host.current.version == "v1-signed"
        _point(link, _copy(tiny_bundle, tmp_path / "v3", key, version="v3-signed"))
        assert await _until(lambda: agent.host.current.version == "v3-signed")
        assert agent.host.swaps == 2 and not agent.host.last_error
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)


def test_signing_config_is_checked(tmp_path):
    meters = [{"id": "m1", "kind": "virtual"}]
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"unsigned_bundles": "refuse"}, "meters": meters})
    assert err.value.key == "model.unsigned_bundles"
    (tmp_path / "bad.pub").write_text("not a key")
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"public_key_file": str(tmp_path / "bad.pub")}, "meters": meters})
    assert err.value.key == "model.public_key_file" and "not a PEM public key" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"unsigned_bundles": "sometimes"}, "meters": meters})
    assert err.value.key == "model.unsigned_bundles"
