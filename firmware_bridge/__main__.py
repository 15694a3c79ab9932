"""``python -m firmware_bridge KIND [key=value ...]``: print a meter's readings as JSON lines.

For checking a P1 cable, an RS485 adapter or a ZigBee stick before configuring the agent:

    python -m firmware_bridge dsmr port=/dev/ttyUSB0 version=5
    python -m firmware_bridge modbus port=/dev/ttyUSB0 model=sdm630 unit_id=2
    python -m firmware_bridge virtual-dsmr interval_s=1 --count 5

Values are parsed as JSON when they can be (numbers, true/false), else taken as strings. The
virtual kinds use a built-in 1 kW sine load. Link events and final stats go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys

from firmware_bridge.errors import ConfigError, UnimeterError
from firmware_bridge.sources import (
    KIND_ALIASES,
    SOURCE_KINDS,
    VIRTUAL_KINDS,
    build_source,
    canonical_kind,
)


def demo_power_source(ts_s: float) -> dict[str, float]:
    """1 kW +- 500 W over a 60 s period: something visibly alive for a virtual meter."""
    return {"power_w": 1000.0 + 500.0 * math.sin(2 * math.pi * ts_s / 60.0), "voltage_v": 230.0}


def _parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"option {pair!r} is not key=value")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


async def _run(kind: str, options: dict, count: int | None) -> int:
    if canonical_kind(kind) in VIRTUAL_KINDS:
        options.setdefault("power_source", demo_power_source)
    source = build_source(kind, on_event=lambda e: print(f"# {e}", file=sys.stderr), **options)
    n = 0
    async with contextlib.aclosing(source.readings()) as stream:
        async for reading in stream:
            print(json.dumps(reading.to_dict()), flush=True)
            n += 1
            if count is not None and n >= count:
                break
    print(f"# stats {json.dumps(source.stats.as_dict())}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_bridge", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=(*SOURCE_KINDS, *KIND_ALIASES))
    parser.add_argument("options", nargs="*", help="key=value options of the kind")
    parser.add_argument("--count", type=int, default=None, help="stop after this many readings")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_run(args.kind, _parse_options(args.options), args.count))
    except UnimeterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
