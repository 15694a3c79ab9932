"""The layering rule of the architecture: imports point one way, and the Pi path has no torch."""

from __future__ import annotations

import ast
import re
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


DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*$")


def _dynamic_imports(path: Path) -> list[tuple[str, int, str]]:
    """Imports made at run time: (what, line, how) for ``importlib.import_module``, ``__import__``,
    ``importlib.util.spec_from_file_location`` and every ``runpy`` call. A non-literal module name
    resolves to every dotted-name string literal of the file (the tuples such names come from)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and DOTTED.match(n.value) and "." in n.value]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        if owner == "runpy" or name in ("run_path", "run_module"):
            found.append(("runpy", node.lineno, f"runpy.{name}"))
        elif name in ("import_module", "__import__", "spec_from_file_location") and node.args:
            arg = node.args[0]
            targets = [arg.value] if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else literals
            found += [(t, node.lineno, name) for t in targets]
    return found


@pytest.mark.parametrize("package", ["firmware_bridge", "edge"])
def test_no_run_time_import_points_up_the_layers(package: str) -> None:
    """importlib/runpy paths count too: the edge never loads trainer/export/torch code into its own
    process (``unimeter bench`` runs a benchmark in a subprocess)."""
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for target, lineno, how in _dynamic_imports(path):
            if how.startswith("runpy") or target.split(".")[0] in FORBIDDEN[package]:
                offenders.append(f"{path.relative_to(ROOT)}:{lineno} {how}({target!r})")
    assert not offenders, "run-time import up the layers:\n" + "\n".join(offenders)


def test_the_run_time_import_scan_finds_what_it_looks_for(tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import importlib, runpy\nMODS = ('trainer.cli', 'edge.sim')\n"
                   "def f(name):\n    importlib.import_module(name)\n    runpy.run_path('x.py')\n")
    found = {(t, how) for t, _, how in _dynamic_imports(bad)}
    assert ("trainer.cli", "import_module") in found and ("runpy", "runpy.run_path") in found


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


def test_bench_runs_a_torch_benchmark_in_its_own_process() -> None:
    """``unimeter bench train --help``: the benchmark (which imports torch) runs, the CLI process
    that started it still has no torch."""
    code = ("import sys; from edge.cli import main; rc = main(['bench', 'train', '--help']); "
            "print(rc, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "0 False", result.stdout + result.stderr
