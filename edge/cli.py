"""The ``unimeter`` console script.

Each layer contributes subcommands through a ``register`` function. The edge layer's own
modules are listed here (``register(subparsers)``); the layers above it (``trainer``, ``export``)
are discovered through the ``unimeter.cli`` entry-point group, so ``edge/`` never imports them and
the Pi install (no torch) still runs ``unimeter agent``. A plugin whose import fails is reported
when its command is used, not at start-up.

Entry points are registered in layer order (:data:`LAYER_ORDER`: ``train`` before ``export``) and
receive ``register(subparsers, groups)``: a :class:`CommandGroups` in which a layer opens its
command group (``trainer`` opens ``train``) so that a layer above can add a command to it
(``export`` adds ``unimeter train all``, which ends in an export and so cannot live in trainer/).

A ``UnimeterError`` that reaches ``main`` is printed as one line (``unimeter <command>: <what is
wrong>``, the traceback only with ``-vv``) and the command exits with the error's ``exit_code``
(1 failure, 2 input or configuration to fix). Commands with documented exit codes of their own
(``unimeter agent``: 2 bad config, 3 store or sources failed) return them before that.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from edge.errors import UnimeterError

# Subcommand modules of the edge layer, each exposing ``register(subparsers)``.
EDGE_COMMAND_MODULES = (
    "edge.sim.cli",
    "edge.data.cli",
    "edge.signal.cli",
    "edge.agent.cli",
    "edge.bundle_cli",
    "edge.bench_cli",
)
ENTRY_POINT_GROUP = "unimeter.cli"
# Entry points of the layers above edge/, in the order they register (lower layer first).
LAYER_ORDER = ("train", "export")


class CommandGroups:
    """Command groups a layer opens for the layers above it: ``open("train", sub)`` with the
    subparsers of ``unimeter train``; ``get("train")`` gives them to a later layer (None when the
    layer that opens the group is not installed or failed to import)."""

    def __init__(self) -> None:
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def open(self, name: str, subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
        if name in self._groups:
            raise ValueError(f"command group {name!r} is opened twice")
        self._groups[name] = subparsers
        return subparsers

    def get(self, name: str) -> argparse._SubParsersAction | None:
        return self._groups.get(name)


def _layer_rank(name: str) -> tuple[int, str]:
    return (LAYER_ORDER.index(name) if name in LAYER_ORDER else len(LAYER_ORDER), name)


def _missing_layer_command(name: str, error: Exception) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        print(
            f"unimeter {name}: this command needs the '{name}' layer, which failed to import: "
            f"{error}\nInstall it with: pip install 'unimeter[{name}]'",
            file=sys.stderr,
        )
        return 2

    return run


def _load_registrars() -> list[tuple[str, Callable | Exception]]:
    """Edge modules first, then the entry points in layer order (see :data:`LAYER_ORDER`)."""
    registrars: list[tuple[str, Callable | Exception]] = []
    for module_name in EDGE_COMMAND_MODULES:
        try:
            registrars.append((module_name, importlib.import_module(module_name).register))
        except ImportError as e:  # a module not written yet, or a missing optional dependency
            registrars.append((module_name, e))
    layers: dict[str, object] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        layers.setdefault(ep.name, ep)
    for name in sorted(layers, key=_layer_rank):
        try:
            registrars.append((name, layers[name].load()))
        except ImportError as e:
            registrars.append((name, e))
    return registrars


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unimeter",
        description="Smart-meter MoE model: simulate, train, export, and run the gateway agent.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups = CommandGroups()
    for name, registrar in _load_registrars():
        if isinstance(registrar, Exception):
            short = name.rsplit(".", 1)[-1] if name.startswith("edge.") else name
            if name.startswith("edge."):
                logging.getLogger(__name__).debug("edge command module %s unavailable: %s", name, registrar)
                continue
            sub = subparsers.add_parser(short, help=f"(unavailable: {registrar})")
            sub.set_defaults(func=_missing_layer_command(short, registrar))
            continue
        if name.startswith("edge."):
            registrar(subparsers)
        else:
            registrar(subparsers, groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except UnimeterError as e:
        logging.getLogger(__name__).debug("unimeter %s failed", args.command, exc_info=True)
        print(f"unimeter {args.command}: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
