"""Deployment files: the systemd unit, the arm64 image and the pinned edge requirements."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _unit_directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (REPO / "deploy" / "unimeter-agent.service").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_systemd_unit_hardening_and_lifecycle():
    d = _unit_directives()
    assert d["Type"] == ["notify"] and d["Restart"] == ["on-failure"]
    assert int(d["WatchdogSec"][0]) >= 10
    assert d["DynamicUser"] == ["yes"] and d["NoNewPrivileges"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"] and d["StateDirectory"] == ["unimeter"]
    assert d["DevicePolicy"] == ["closed"]
    assert set(d["DeviceAllow"]) == {"char-ttyUSB rw", "char-ttyACM rw"}
    assert d["SupplementaryGroups"] == ["dialout"]
    assert "agent --config /etc/unimeter/agent.toml" in d["ExecStart"][0]
    assert d["KillSignal"] == ["SIGTERM"]


def test_arm64_image_is_multistage_nonroot_with_volume_and_healthcheck():
    text = (REPO / "Dockerfile.arm64").read_text()
    froms = re.findall(r"^FROM --platform=linux/arm64 \$\{PYTHON_IMAGE\} AS (\w+)", text, re.M)
    assert froms == ["build", "runtime"]
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    assert re.search(r"^USER unimeter", text, re.M)
    assert 'VOLUME ["/var/lib/unimeter"]' in text
    assert re.search(r'HEALTHCHECK .*\n?.*"agent", "health"', text)
    assert "--only-binary=:all:" in text and "requirements-edge.txt" in text


def test_pinned_edge_requirements_have_no_workstation_packages():
    pins = [line for line in (REPO / "deploy" / "requirements-edge.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    names = {p.split("==")[0] for p in pins}
    assert all("==" in p for p in pins)
    assert {"onnxruntime", "ai-edge-litert", "paho-mqtt", "numpy", "zigpy"} <= names
    assert not names & {"torch", "onnx", "litert-torch", "jax", "matplotlib", "pyarrow"}
    wheels = (REPO / "bench" / "results" / "aarch64_wheels.md").read_text()
    assert "**none**" not in wheels and "ai_edge_litert" in wheels


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    import shutil
    import subprocess

    analyze = shutil.which("systemd-analyze")
    unimeter = shutil.which("unimeter")
    assert analyze and unimeter, "systemd-analyze (systemd) and the unimeter console script are needed"
    unit = tmp_path / "unimeter-agent.service"
    unit.write_text((REPO / "deploy" / "unimeter-agent.service").read_text()
                    .replace("/usr/local/bin/unimeter", unimeter))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if "unimeter-agent" in line]
    assert proc.returncode == 0 and not problems, problems
