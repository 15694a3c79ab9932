"""The layering rule of the architecture: imports point one way, and the Pi path has no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> top-level modules it must never import
FORBIDDEN = {
    "firmware_bridge": {"edge", "trainer", "export", "torch"},
    "edge": {"trainer", "export", "torch"},
    "trainer": {"export"},
}


def _imported_top_levels(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_points_up_the_layers(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module, lineno in _imported_top_levels(path):
            if module in FORBIDDEN[package]:
                offenders.append(f"{path.relative_to(ROOT)}:{lineno} imports {module}")
    assert not offenders, "layering violated:\n" + "\n".join(offenders)


BLOCKER = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'trainer', 'export'}:
            raise ImportError(f'blocked import of {name} on the edge path')
sys.meta_path.insert(0, Block())
import edge, firmware_bridge
failed = []
for pkg in (firmware_bridge, edge):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):
        try:
            importlib.import_module(info.name)
        except ImportError as e:
            if 'blocked import' in str(e):
                failed.append(f'{info.name}: {e}')
print('\\n'.join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_edge_module_imports_without_torch() -> None:
    """Import every module of the Pi path with torch, trainer and export made unimportable."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"edge path needs torch/trainer/export:\n{result.stdout}{result.stderr}"


def test_building_the_cli_imports_no_torch() -> None:
    """`unimeter agent` on the Pi (and `unimeter --help` anywhere) must not pay for torch."""
    code = (
        "import sys; from edge.cli import build_parser; build_parser(); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, "building the CLI imported torch" + result.stderr
