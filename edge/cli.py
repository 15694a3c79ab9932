"""The ``unimeter`` console script.

Each layer contributes subcommands through a ``register(subparsers)`` function. The edge layer's
own modules are listed here; the layers above it (``trainer``, ``export``) are discovered through
the ``unimeter.cli`` entry-point group, so ``edge/`` never imports them and the Pi install (no
torch) still runs ``unimeter agent``. A plugin whose import fails is reported when its command is
used, not at start-up.

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
    registrars: list[tuple[str, Callable | Exception]] = []
    for module_name in EDGE_COMMAND_MODULES:
        try:
            registrars.append((module_name, importlib.import_module(module_name).register))
        except ImportError as e:  # a module not written yet, or a missing optional dependency
            registrars.append((module_name, e))
    seen = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        try:
            registrars.append((ep.name, ep.load()))
        except ImportError as e:
            registrars.append((ep.name, e))
    return registrars


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unimeter",
        description="Smart-meter MoE model: simulate, train, export, and run the gateway agent.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, registrar in _load_registrars():
        if isinstance(registrar, Exception):
            short = name.rsplit(".", 1)[-1] if name.startswith("edge.") else name
            if name.startswith("edge."):
                logging.getLogger(__name__).debug("edge command module %s unavailable: %s", name, registrar)
                continue
            sub = subparsers.add_parser(short, help=f"(unavailable: {registrar})")
            sub.set_defaults(func=_missing_layer_command(short, registrar))
            continue
        registrar(subparsers)
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
