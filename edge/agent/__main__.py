"""``python -m edge.agent [--config X | check-config | health]``: the agent without the other CLI plugins.

Same as ``unimeter agent ...`` but loads only the agent's own modules (fast start on the Pi, and
no workstation layers imported when both are installed).
"""

import argparse
import sys

from edge.agent.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.agent")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["agent", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
