"""Packaging: the Pi install brings no torch, and the console script is wired."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_torch_is_pinned_wherever_it_is_named() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    for name, reqs in extras.items():
        for req in reqs:
            if req.replace(" ", "").startswith("torch") and not req.startswith("torchao"):
                assert "==" in req, f"extra {name!r} names an unpinned torch: {req!r}"


def test_edge_extra_resolves_without_torch(tmp_path: Path) -> None:
    """Resolve `unimeter[edge]` against the package index, as a Pi would, and read pip's report."""
    report = tmp_path / "report.json"
    cmd = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--report", str(report), f"{ROOT}[edge]",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "onnxruntime" in names and "paho-mqtt" in names, sorted(names)
    heavy = names & {"torch", "jax", "jaxlib", "tensorflow", "litert-torch"}
    assert not heavy, f"the edge install would pull {sorted(heavy)}"


def test_console_script_lists_every_layer() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "--help"], cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for command in ("simulate", "agent", "train", "export", "demo", "bench"):
        assert command in out.stdout, f"`unimeter {command}` missing from --help:\n{out.stdout}"
    assert "unavailable" not in out.stdout, out.stdout
