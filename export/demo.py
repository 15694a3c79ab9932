"""``unimeter demo``: the whole product end to end on the built-in default.

1. simulate a fleet, pretrain both backbones, fine-tune the four tasks, distill, export a bundle
   (``export.pipeline``'s demo preset: the profile model sees each window's 7 days before it; or
   reuse one with ``--bundle``);
2. start a local MQTT broker (Mosquitto when installed, else amqtt) and a subscriber, or use an
   existing broker (``--mqtt-host``: e.g. the Mosquitto add-on of your Home Assistant, which then
   shows the demo's gateway and meters through MQTT discovery);
3. seed the gateway store with meter history (a gateway that has been running: the model's D
   days of context and two more), with a false-data-injection attack (scaling by 1 - 0.8, Cui et
   al.: the meter under-reports) on the P1 meter's last day;
4. run the real agent (``unimeter agent --config``, a subprocess) on a virtual DSMR P1 meter
   on a pty and a virtual ZigBee meter on zigpy's virtual radio for ``--agent-seconds``;
5. print a summary table and the anomaly check (the attacked meter flagged, no other), write
   ``summary.json``, ``demo.png`` and ``report.md``; the plot
   shows, per meter, the day-ahead forecast the bundle makes for the last whole day (from the
   days before it, ``export.backtest``) against what the meter measured that day.

The stages live in ``demo_gateway`` (2-4: config, history, the agent process), ``demo_collector``
(the subscriber) and ``demo_report`` (5); this module parses the options and runs them in order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path

from edge.agent.config import load_config
from edge.errors import ConfigError
from export.broker import LocalBroker
from export.demo_collector import Collector
from export.demo_gateway import (
    BrokerSettings,
    agent_config_text,
    default_history_s,
    run_agent_process,
    seed_history,
)
from export.demo_report import past_day_forecasts, plot_demo, print_summary, summarise, write_report

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", help="output directory (default: demo-out)")
    p.add_argument("--preset", default="demo", choices=("quick", "demo", "full"),
                   help="training size (demo: a few minutes on 2 cores)")
    p.add_argument("--bundle", default=None, help="use this model bundle instead of training one")
    p.add_argument("--agent-seconds", type=float, default=120.0,
                   help="how long the agent runs, counted from when it is up (online on the broker)")
    p.add_argument("--history-hours", type=float, default=None,
                   help="meter history written to the gateway store before the agent starts (default: "
                        "the model's days of context + 2 days + 2 h)")
    p.add_argument("--history-days", type=int, default=None,
                   help="days of context the trained model sees (default: the preset's)")
    p.add_argument("--broker", default="auto", choices=("auto", "mosquitto", "amqtt"),
                   help="local broker to start (ignored with --mqtt-host)")
    g = p.add_argument_group("existing broker", "publish into a broker that is already running, e.g. "
                             "the Mosquitto add-on of a Home Assistant (its MQTT integration shows the "
                             "demo's devices); the password comes from $UNIMETER_MQTT_PASSWORD or a file")
    g.add_argument("--mqtt-host", default=None, help="broker host (default: start a local broker)")
    g.add_argument("--mqtt-port", type=int, default=None, help="broker port (1883, or 8883 with --mqtt-tls)")
    g.add_argument("--mqtt-user", default="", help="user name")
    g.add_argument("--mqtt-password-file", default="", help="file whose first line is the password")
    g.add_argument("--mqtt-tls", action="store_true", help="connect with TLS")
    g.add_argument("--mqtt-ca-file", default="", help="CA certificate of the broker (TLS)")
    g.add_argument("--mqtt-tls-insecure", action="store_true",
                   help="TLS without host name check (self-signed test brokers only)")
    p.add_argument("--meter-outage", default=None, metavar="START_S:DURATION_S",
                   help="cut the ZigBee meter's readings off START_S seconds after the agent starts, "
                        "for DURATION_S seconds (shows per-meter availability)")
    p.add_argument("--no-tflite", action="store_true", help="skip the TFLite export (faster)")
    p.add_argument("--seed", type=int, default=0)


def bundle_history_days(bundle: Path) -> int:
    """The most history days a task of the bundle takes (0: one-day models)."""
    from edge.bundle import load_bundle

    return max((t.history_days for t in load_bundle(bundle).tasks.values()), default=0)


def _parse_outage(text: str | None) -> tuple[float, float] | None:
    """``"60:90"`` -> (60, 150): the ZigBee meter is cut off from 60 s to 150 s after the agent
    starts reading it."""
    if not text:
        return None
    try:
        start_s, duration_s = (float(x) for x in text.split(":"))
    except ValueError as e:
        raise ConfigError(f"--meter-outage expects START_S:DURATION_S, got {text!r}") from e
    if start_s < 0 or duration_s <= 0:
        raise ConfigError(f"--meter-outage needs START_S >= 0 and DURATION_S > 0, got {text!r}")
    return start_s, start_s + duration_s


def run(args: argparse.Namespace) -> int:

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    pipeline_summary = None
    if args.bundle:
        bundle = Path(args.bundle).resolve()
    else:
        from export.pipeline import PipelineConfig, run_pipeline

        overrides = {} if args.history_days is None else {"history_days": args.history_days}
        cfg = PipelineConfig.preset(args.preset, out / "train", seed=args.seed,
                                    include_tflite=not args.no_tflite, **overrides)
        result = run_pipeline(cfg)
        bundle, stage_seconds, pipeline_summary = result.bundle_dir, result.stage_seconds, result.summary()
    now_s = time.time()
    history_s = (args.history_hours * 3600.0 if args.history_hours is not None
                 else default_history_s(bundle_history_days(bundle)))
    outage = _parse_outage(args.meter_outage)
    with contextlib.ExitStack() as stack:
        if args.mqtt_host:
            settings, broker_used = BrokerSettings.from_args(args), f"existing broker {args.mqtt_host}"
        else:
            broker = stack.enter_context(LocalBroker(kind=args.broker))
            settings, broker_used = BrokerSettings(port=broker.port), broker.kind_used
        print(f"broker: {broker_used} on {settings.host}:{settings.port}")
        config_path = out / "agent.toml"
        config_path.write_text(agent_config_text(out, settings, bundle, now_s, history_s, outage))
        cfg = load_config(config_path)
        store_file = Path(cfg.store_path)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store_file}{suffix}").unlink(missing_ok=True)
        store_file.parent.mkdir(parents=True, exist_ok=True)
        history = seed_history(cfg, now_s, history_s)
        collector = Collector(settings).start()
        spawned_s = time.time()
        agent_rc = run_agent_process(config_path, args.agent_seconds, out / "agent.log",
                                     is_up=lambda: collector.gateway_online_since(spawned_s))
        time.sleep(1.0)
        collector.stop()
    summary = summarise(collector, history)
    past = past_day_forecasts(bundle, store_file, now_s)
    summary.update(agent_exit_code=agent_rc, bundle=str(bundle), broker=broker_used,
                   history_readings=history, history_days_model=bundle_history_days(bundle),
                   past_day_forecast={k: v.summary() for k, v in past.items()}, stage_seconds=stage_seconds,
                   wall_seconds=round(time.perf_counter() - t_start, 1))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    plot_demo(store_file, collector, out / "demo.png", now_s, bundle, cfg.meters, past)
    write_report(out / "report.md", summary, pipeline_summary, agent_rc)
    print_summary(summary, stage_seconds)
    print(f"wrote {out / 'summary.json'}, {out / 'demo.png'}, {out / 'report.md'} "
          f"({summary['wall_seconds']} s)")
    return 0 if agent_rc == 0 else 1
