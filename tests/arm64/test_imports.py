"""The import set of the arm64 image: every pinned edge package and every module of the Pi's code
imports on aarch64, torch is absent, and whatever does not import needs a workstation-only extra."""

from __future__ import annotations

import json
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.scripts.helpers import REPO

# Runs inside the image: imports the top-level modules of the named distributions and every
# module of the given packages; prints what failed and why as JSON.
PROBE = r"""
import importlib, importlib.metadata as md, json, pkgutil, platform, re, sys
wanted, packages = json.loads(sys.argv[1]), json.loads(sys.argv[2])

def top_levels(dist):
    text = dist.read_text("top_level.txt")
    if text:
        return sorted(set(text.split()))
    names = set()
    for f in dist.files or ():
        first = f.parts[0]
        if first.endswith((".dist-info", ".data")) or first in ("..", "__pycache__", "bin"):
            continue
        if len(f.parts) > 1 or f.suffix in (".py", ".so"):
            names.add(first.split(".")[0])
    return sorted(names)

report = {"machine": platform.machine(), "python": platform.python_version(), "dists": {},
          "failed": {}, "modules": 0}
by_name = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d for d in md.distributions()}
for name in wanted:
    dist = by_name.get(name)
    if dist is None:
        report["failed"][name] = ["not installed", name]
        continue
    report["dists"][name] = dist.version
    for top in top_levels(dist):
        try:
            importlib.import_module(top)
        except Exception as e:
            report["failed"][f"{name}:{top}"] = [type(e).__name__, getattr(e, "name", None) or str(e)]
for package in packages:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        try:
            importlib.import_module(info.name)
            report["modules"] += 1
        except ModuleNotFoundError as e:
            report["failed"][info.name] = ["ModuleNotFoundError", e.name]
        except Exception as e:
            report["failed"][info.name] = [type(e).__name__, str(e)]
report["torch_imported"] = "torch" in sys.modules
report["torch_findable"] = importlib.util.find_spec("torch") is not None
print(json.dumps(report))
"""


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "deploy/requirements-edge.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _workstation_only_imports(pins: dict[str, str]) -> set[str]:
    """Import names of the optional extras other than ``edge`` that the image does not install
    (data files and plots, training, export, the broker fallback, ZigBee radio libraries, dev)."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    dists = {canonicalize_name(Requirement(r).name) for name, reqs in extras.items() if name != "edge"
             for r in reqs} - set(pins) - {"unimeter"}
    names = set()
    for module, providers in metadata.packages_distributions().items():
        if any(canonicalize_name(p) in dists for p in providers):
            names.add(module)
    return names | {canonicalize_name(d).replace("-", "_") for d in dists}


def test_every_pinned_package_and_edge_module_imports_on_aarch64_without_torch(arm_root):
    pins = _pins()
    out = arm_root.run(["python", "-c", PROBE, json.dumps(sorted(pins)), json.dumps(["edge", "firmware_bridge"])],
                       env={"PYTHONDONTWRITEBYTECODE": "1"}, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["machine"] == "aarch64" and report["python"].startswith("3.11.")
    assert report["dists"] == pins  # exactly the pinned versions, nothing missing
    assert report["modules"] > 50
    assert not report["torch_imported"] and not report["torch_findable"]

    allowed = _workstation_only_imports(pins)
    unexpected = {module: why for module, why in report["failed"].items()
                  if not (why[0] == "ModuleNotFoundError" and str(why[1]).split(".")[0] in allowed)}
    assert not unexpected, f"modules that do not import on aarch64: {unexpected}"
    # the agent's own modules never need a workstation package
    agent_side = {m for m in report["failed"] if m.startswith(("edge.agent", "edge.runtime", "edge.bundle",
                                                               "firmware_bridge"))}
    assert not agent_side, {m: report["failed"][m] for m in agent_side}
