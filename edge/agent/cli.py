"""``unimeter agent``: run the gateway agent, check its config, or report its health.

    unimeter agent --config agent.toml                 run (systemd: Type=notify)
    unimeter agent check-config --config agent.toml    validate, print the effective config
    unimeter agent health --config agent.toml [--max-age-s 120]   exit 0 if the agent is healthy

Exit codes: 0 ok (the agent stopped cleanly; health: healthy), 1 unhealthy (health) or an
unexpected internal error (logged with its traceback), 2 bad config (the message names the key;
systemd does not restart), 3 the store cannot be opened even afresh, or a meter source cannot be
built (one log line; systemd does not restart). A damaged store is not an exit: it is moved aside
and the agent starts a fresh one (edge.agent.store_files.open_store).

``agent health`` reads ``health.json`` beside the store (edge.agent.health): healthy when the
running agent wrote it within 30 s, reports no problem, and the newest stored reading is younger
than ``--max-age-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path

from edge.agent.config import AgentConfig, ConfigError, load_config

log = logging.getLogger("edge.agent")


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=argparse.SUPPRESS, help="agent TOML file")
    p = subparsers.add_parser("agent", parents=[common], help="run the gateway agent (meters -> model -> MQTT)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=cmd_run, config=None)
    sub = p.add_subparsers(dest="agent_command", metavar="ACTION")
    sub.add_parser("run", parents=[common], help="run the agent (default)").set_defaults(func=cmd_run)
    sub.add_parser("check-config", parents=[common], help="validate the config and print it (no secrets)",
                   ).set_defaults(func=cmd_check_config)
    h = sub.add_parser("health", parents=[common],
                       help="exit 0 if the agent runs without problems and the newest reading is fresh")
    h.add_argument("--max-age-s", type=float, default=120.0, help="oldest acceptable last reading (s)")
    h.add_argument("--store", default=None, help="store path (default: from the config)")
    h.set_defaults(func=cmd_health)


def _load(args: argparse.Namespace) -> AgentConfig | None:
    if not args.config:
        print("unimeter agent: --config is required", file=sys.stderr)
        return None
    try:
        return load_config(args.config)
    except ConfigError as e:
        print(f"unimeter agent: invalid config {args.config}: {e}", file=sys.stderr)
        return None


def _redacted(cfg: AgentConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["mqtt"]["password"] = "***" if cfg.mqtt.password else ""
    return d


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg is None:
        return 2
    from edge.agent.guards import meter_limits

    print(json.dumps(_redacted(cfg), indent=2, default=str))
    for m in cfg.meters:  # the plausibility limits in force (edge.agent.guards)
        print(f"meter {m.id} ({m.kind}): {meter_limits(m.kind, m.options, m.limits).describe()}",
              file=sys.stderr)
    _check_bundle(cfg)
    print(f"config OK: gateway {cfg.gateway.id}, {len(cfg.meters)} meters, store {cfg.store_path}",
          file=sys.stderr)
    return 0


def _check_bundle(cfg: AgentConfig) -> None:
    """Verify ``model.bundle`` as the agent would at start (signature policy, sha256, runtimes).

    A refused bundle is a warning with the reason, not an error: the agent starts without a model and
    loads one once a bundle it accepts is there (the unit runs check-config before every start).
    """
    if not cfg.model.bundle:
        print("model.bundle is empty: the agent runs without inference", file=sys.stderr)
        return
    from edge.agent.agent import bundle_trust
    from edge.bundle import BundleError, load_bundle

    try:
        bundle = load_bundle(cfg.model.bundle, trust=bundle_trust(cfg.model))
    except BundleError as e:
        print(f"warning: model.bundle: the agent would refuse {cfg.model.bundle} and run without a model "
              f"until a bundle it accepts is there: {e}", file=sys.stderr)
        return
    print(f"model.bundle: {bundle.path} accepted ({bundle.model_version}, tasks {', '.join(bundle.tasks)}, "
          f"signature {bundle.signature})", file=sys.stderr)


def cmd_health(args: argparse.Namespace) -> int:
    from edge.agent.health import HealthFileError, assess, health_path, read_health
    from edge.agent.store import StoreError
    from edge.agent.store_files import last_reading_age_s

    store = args.store
    if store is None:
        cfg = _load(args)
        if cfg is None:
            return 2
        store = cfg.store_path
    problems: list[str] = []
    warnings: list[str] = []
    try:
        data = read_health(health_path(store))
        problems += assess(data)
        warnings = [str(w) for w in data.get("warnings", [])]
    except HealthFileError as e:
        problems.append(str(e))
    if problems and problems[0].startswith("health file is"):
        problems[0] += f" ({_free_space(store)})"
    try:
        age_s = last_reading_age_s(store)
    except StoreError as e:
        age_s = None
        problems.append(str(e))
    if age_s is None:
        problems.append("no reading stored yet")
    elif age_s > args.max_age_s:
        problems.append(f"last reading {age_s:.1f} s ago (limit {args.max_age_s:.0f} s)")
    if problems:
        print("unhealthy: " + "\n  ".join(problems + [f"warning: {w}" for w in warnings]))
        return 1
    print(f"healthy: last reading {age_s:.1f} s ago (limit {args.max_age_s:.0f} s)")
    for w in warnings:
        print(f"  warning: {w}")
    return 0


def _free_space(path) -> str:
    try:
        st = os.statvfs(Path(path).parent)
    except OSError as e:
        return f"cannot check its disk: {e.strerror}"
    return f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB free on its disk"


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg is None:
        return 2
    logging.getLogger().setLevel(cfg.gateway.log_level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run_agent(cfg))


async def run_agent(cfg: AgentConfig) -> int:
    from edge.agent.agent import Agent
    from edge.agent.meters import SourceBuildError, build_sources
    from edge.agent.store import StoreError

    try:
        sources = build_sources(cfg)
    except SourceBuildError as e:
        log.error("cannot start the meter sources: %s", e)
        return 3
    agent = Agent(cfg, sources)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop)
    try:
        return await agent.run()
    except StoreError as e:  # not even a fresh store could be opened: a person has to look
        log.error("cannot start: %s (exit 3; systemd will not restart until the cause is fixed)", e)
        return 3
    except Exception:
        log.critical("the agent failed unexpectedly (exit 1)", exc_info=True)
        return 1
