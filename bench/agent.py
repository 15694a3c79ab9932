"""Agent benchmark: sustained readings/s on one core with inference on, latency, peak RSS.

    python bench/agent.py --bundle PATH          # or --quick-bundle (trains a tiny one), --no-model

The whole agent (event loop, SQLite thread, inference thread, paho thread) runs in this process,
pinned to one CPU core; a real Mosquitto runs as a separate process. Meters are in-memory sources
(no serial I/O), so the numbers are the agent's own cost: commit to SQLite (WAL, synchronous as
configured), resampling, outbox, MQTT QoS 1 publish and delete on PUBACK, and the model schedules
(set much faster than in production so inference load is present throughout).

Phase 1 (saturation): readings offered as fast as the agent accepts them -> max readings/s.
Phase 2 (sustained): readings offered at --rate for --duration s -> throughput kept, latency from a
reading's arrival to its PUBACK (p50/p99), backlog at the end. Peak RSS of the process over both.
Targets: >= 2,000 readings/s, p99 < 200 ms, RSS <= 150 MB.

    python bench/agent.py --nilm --bundle PATH   # NILM at the meter's native rate (issue 14)

NILM phase (``--nilm``, results in ``agent_nilm.*``): ``--meters`` meters each replay a simulated
household's 1 s trace (the DSMR P1 rate) from 18:00: the hour before at once (the agent's NILM
window fills), then one reading per second in real time for ``--duration`` s, NILM every
``--nilm-every`` s. Measured: the agent process's CPU share of one core per meter (everything:
SQLite, resampling to the model's rate, NILM, MQTT), the NILM step alone (graph + decision, thread
CPU time, on the same bundle), and the latency from a reading to the appliance event it causes, as
a subscriber receives it: arrival minus the event's ``start_s`` (started) or ``end_s`` (finished),
the time of the reading where the use starts or ends (uses that start or end in the live part;
the replayed hour arrives at once). It includes the decision lag the bundle's calibration asks
for, the 10 s bin and the schedule period.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.agent.agent import Agent  # noqa: E402
from edge.agent.config import parse_config  # noqa: E402
from firmware_bridge.reading import Reading  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGETS = {"readings_per_s": 2000.0, "latency_p99_ms": 200.0, "peak_rss_mb": 150.0}


class BurstSource:
    """Readings for one meter at ``rate_hz`` (0: as fast as the consumer takes them), in 10 ms bursts."""

    def __init__(self, meter_id: str, rate_hz: float, seed: int):
        self.meter_id, self.rate_hz = meter_id, rate_hz
        self.phase = seed * 0.37
        self.offered = 0

    async def readings(self):
        tick_s = 0.01
        carry, last_s = 0.0, time.monotonic()
        while True:
            if self.rate_hz <= 0:
                n = 20
            else:  # by elapsed time: the offered rate holds even when sleeps run long
                now = time.monotonic()
                carry += self.rate_hz * (now - last_s)
                last_s = now
                n, carry = int(carry), carry - int(carry)
            for _ in range(n):
                now_s = time.time()
                p = 500.0 + 300.0 * np.sin(now_s / 600.0 + self.phase)
                self.offered += 1
                yield Reading(self.meter_id, now_s, now_s, float(p), import_wh=1e6 + self.offered, source="bench")
            await asyncio.sleep(tick_s if self.rate_hz > 0 else 0)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


async def run_phase(cfg, n_meters: int, rate_total: float, duration_s: float, bundle: str) -> dict:
    rate = rate_total / n_meters if rate_total > 0 else 0.0
    sources = {f"b{i:03d}": BurstSource(f"b{i:03d}", rate, i) for i in range(n_meters)}
    agent = Agent(cfg, sources, shutdown_flush_s=10.0)
    task = asyncio.create_task(agent.run())
    await agent.ready.wait()
    if bundle and agent.host.current is None:
        raise SystemExit(f"the bundle was refused: {agent.host.last_error}")
    await asyncio.sleep(2.0)  # warm-up
    c0, p0, t0 = agent.stats.committed, agent.stats.published, time.monotonic()
    agent.stats.latencies_s.clear()
    agent.stats.commit_latencies_s.clear()
    await asyncio.sleep(duration_s)
    c1, p1, t1 = agent.stats.committed, agent.stats.published, time.monotonic()
    lat = np.asarray(agent.stats.latencies_s)
    clat = np.asarray(agent.stats.commit_latencies_s)
    backlog = agent.store.outbox_rows
    inference_runs = {k: len(v) for k, v in agent.last_results.items()}
    agent.request_stop()
    await task
    return {
        "offered_per_s": rate_total or None,
        "committed_per_s": (c1 - c0) / (t1 - t0),
        "published_messages_per_s": (p1 - p0) / (t1 - t0),
        "latency_p50_ms": float(np.percentile(lat, 50) * 1e3) if lat.size else None,
        "latency_p99_ms": float(np.percentile(lat, 99) * 1e3) if lat.size else None,
        "latency_max_ms": float(lat.max() * 1e3) if lat.size else None,
        "commit_latency_p50_ms": float(np.percentile(clat, 50) * 1e3) if clat.size else None,
        "commit_latency_p99_ms": float(np.percentile(clat, 99) * 1e3) if clat.size else None,
        "outbox_backlog_at_end": backlog,
        "meters_with_inference_results": len(inference_runs),
        "model": agent.host.current.version if agent.host.current else None,
        "latencies_ms": (lat * 1e3).tolist(),
    }


def make_config(state_dir: Path, port: int, bundle: str, synchronous: str, per_message: int):
    return parse_config({
        "gateway": {"id": "bench", "state_dir": str(state_dir), "log_level": "warning"},
        "mqtt": {"host": "127.0.0.1", "port": port, "discovery": True, "max_inflight": 500,
                 "max_readings_per_message": per_message},
        "store": {"synchronous": synchronous, "batch_interval_s": 0.02, "batch_max": 2000,
                  "outbox_max_rows": 10**7},
        "model": {"bundle": bundle, "threads": 1},
        "schedule": {"profile_every_s": 5.0, "nilm_every_s": 2.0, "forecast_every_s": 10.0,
                     "quality_every_s": 5.0, "status_every_s": 5.0, "min_coverage": 0.0},
        "meters": [{"id": "placeholder", "kind": "virtual"}],
    })


def write_results(res: dict, args: argparse.Namespace, command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    lat = res["sustained"].pop("latencies_ms")
    res["saturation"].pop("latencies_ms")
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=2))
    s, sat = res["sustained"], res["saturation"]
    ok = res["meets_targets"]
    rows = [
        ("max readings/s (saturation, committed)", f"{sat['committed_per_s']:.0f}", ">= 2000", ok["readings_per_s"]),
        (f"sustained readings/s at {args.rate:.0f}/s offered (committed, then published)",
         f"{s['committed_per_s']:.0f}", ">= 2000", ok["readings_per_s"]),
        ("MQTT messages/s in the sustained phase (PUBACKed)", f"{s['published_messages_per_s']:.0f}", "", ""),
        ("latency p50 / p99 reading -> committed (ms)",
         f"{s['commit_latency_p50_ms']:.1f} / {s['commit_latency_p99_ms']:.1f}", "", ""),
        ("latency p50 reading -> PUBACK (ms)", f"{s['latency_p50_ms']:.1f}", "", ""),
        ("latency p99 reading -> PUBACK (ms)", f"{s['latency_p99_ms']:.1f}", "< 200", ok["latency_p99_ms"]),
        ("outbox backlog at end of sustained phase", f"{s['outbox_backlog_at_end']}", "", ""),
        ("peak RSS (MB)", f"{res['peak_rss_mb']:.1f}", "<= 150", ok["peak_rss_mb"]),
    ]
    md = ["# Agent benchmark", "", f"Command: `{command}`", "",
          f"One core (CPU {res['cpu']}), {args.meters} meters, model: {s['model'] or 'none'} "
          f"(backend {res['backend']}), store synchronous={args.synchronous}, "
          f"batch_interval_s=0.02, max_readings_per_message={args.per_message}, real Mosquitto; "
          f"{res['host']}.", "",
          f"Bundle: `{res['bundle'] or 'none'}` (model {s['model'] or 'none'}; `--quick-bundle` makes one with "
          "`export.pipeline.quick_bundle(out_dir, seed=0)`). Inference schedules: profile every 5 s, NILM "
          "every 2 s, forecast every 10 s, for every meter (production: 30 min / 60 s / daily).", "",
          "| metric | value | target | met |", "|---|---|---|---|"]
    md += [f"| {a} | {b} | {c} | {'' if d == '' else ('yes' if d else 'NO')} |" for a, b, c, d in rows]
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        x = np.sort(np.asarray(lat))
        ax.plot(x, np.arange(1, len(x) + 1) / len(x))
        ax.axvline(200, color="r", ls="--", label="p99 target 200 ms")
        ax.set_xscale("log")
        ax.set_xlabel("reading -> PUBACK latency (ms)")
        ax.set_ylabel("fraction of readings")
        ax.set_title(f"agent at {args.rate:.0f} readings/s, one core")
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / f"{args.name}.png", dpi=120)
    except ImportError:
        pass


# --- NILM at the meter's native rate (--nilm) ---------------------------------------------------

NILM_START_S = 18 * 3600  # replay from 18:00 UTC of the simulated day: cooking and evening TV
WARM_S = 3590  # the hour before, within the guard's 1 h a meter's clock may be behind


class TraceSource:
    """One meter replaying a simulated 1 s household trace from ``start`` (index): the ``warm_s``
    samples before it at once, then one reading per second in real time (timestamps = now)."""

    def __init__(self, meter_id: str, power_w: np.ndarray, start: int, warm_s: int):
        self.meter_id, self.power_w, self.start, self.warm_s = meter_id, power_w, start, warm_s
        self.t0 = 0.0
        self.import_wh = 1e6

    def _reading(self, ts_s: float, k: int) -> Reading:
        p = float(self.power_w[k % len(self.power_w)])
        self.import_wh += max(p, 0.0) / 3600.0
        return Reading(self.meter_id, ts_s, time.time(), p, import_wh=self.import_wh, source="bench")

    async def readings(self):
        self.t0 = t0 = time.time()
        for j in range(self.warm_s):
            yield self._reading(t0 - self.warm_s + j, self.start - self.warm_s + j)
            if j % 500 == 0:
                await asyncio.sleep(0)
        k = 0
        while True:
            await asyncio.sleep(max(0.0, t0 + k - time.time()))
            yield self._reading(time.time(), self.start + k)
            k += 1


def nilm_step_cpu_s(bundle: str, rounds: int = 50) -> float:
    """Thread CPU seconds of one NILM step on one meter's window (int8 graph + decision)."""
    from edge.agent.inference import open_model
    from edge.nilm_output import decide
    from edge.task_io import APPLIANCE_W, LOAD_W, ON_LOGIT

    model = open_model(bundle, "onnx", "int8", 1)
    shape = model.tasks["nilm"]
    load = (400 + 300 * np.sin(np.arange(shape.length) / 50.0)).astype(np.float32)
    t0 = time.thread_time()
    for _ in range(rounds):
        out = model.runtime.run("nilm", {LOAD_W: load[None]})
        decide(out[ON_LOGIT][0], out[APPLIANCE_W][0], load, model.appliances, model.nilm_calibration)
    return (time.thread_time() - t0) / rounds


async def run_nilm_phase(cfg, traces: list, duration_s: float, port: int) -> dict:
    import paho.mqtt.client as mqtt

    arrivals: list[tuple[float, dict]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-events")
    sub.on_message = lambda _c, _u, msg: arrivals.append((time.time(), json.loads(msg.payload)))
    sub.connect("127.0.0.1", port)
    sub.subscribe("unimeter/bench/+/event/#", qos=1)
    sub.loop_start()
    sources = {f"n{i:03d}": TraceSource(f"n{i:03d}", tr.power_w, NILM_START_S, WARM_S)
               for i, tr in enumerate(traces)}
    agent = Agent(cfg, sources, shutdown_flush_s=10.0)
    task = asyncio.create_task(agent.run())
    await agent.ready.wait()
    if agent.host.current is None:
        raise SystemExit(f"the bundle was refused: {agent.host.last_error}")
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(duration_s)
    cpu_s, wall_s = time.process_time() - cpu0, time.monotonic() - t0
    agent.request_stop()
    await task
    sub.loop_stop()
    sub.disconnect()
    live_s = max(src.t0 for src in sources.values())  # readings before it were replayed at once
    lat = np.array([t - ref for t, p in arrivals
                    if (ref := p["end_s"] if p["event_type"] == "finished" else p["start_s"]) >= live_s])
    kinds = {}
    for _, p in arrivals:
        key = f"{p['appliance']} {p['event_type']}"
        kinds[key] = kinds.get(key, 0) + 1
    return {"meters": len(traces), "duration_s": round(wall_s, 1),
            "agent_cpu_share_per_meter": cpu_s / wall_s / len(traces), "events_received": len(arrivals),
            "events": int(lat.size),
            "events_by_kind": kinds,
            "event_latency_p50_s": float(np.percentile(lat, 50)) if lat.size else None,
            "event_latency_p99_s": float(np.percentile(lat, 99)) if lat.size else None,
            "event_latency_max_s": float(lat.max()) if lat.size else None,
            "resolution_s": agent.host.current.tasks["nilm"].resolution_s,
            "window": agent.host.current.tasks["nilm"].length,
            "decision_lag_s": agent.host.current.nilm_calibration.decision_lag_s}


def nilm_main(args, bundle: str) -> int:
    from edge.sim import simulate_fleet
    from export.broker import LocalBroker

    traces = list(simulate_fleet(args.meters, 1, 1, seed=11, start="2024-03-04"))
    step_s = nilm_step_cpu_s(bundle)
    os.sched_setaffinity(0, {args.cpu})
    with LocalBroker(kind="mosquitto") as broker, tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config({
            "gateway": {"id": "bench", "state_dir": str(Path(tmp) / "nilm"), "log_level": "warning"},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "discovery": False},
            "model": {"bundle": bundle, "threads": 1},
            "schedule": {"profile_every_s": 3600.0, "nilm_every_s": args.nilm_every, "forecast_every_s": 86400.0,
                         "quality_every_s": 60.0, "status_every_s": 60.0},
            "meters": [{"id": "placeholder", "kind": "virtual"}],
        })
        res = asyncio.run(run_nilm_phase(cfg, traces, args.duration, broker.port))
    res.update(nilm_step_cpu_s=step_s, nilm_every_s=args.nilm_every,
               nilm_cpu_share_per_meter=step_s / args.nilm_every, bundle=bundle,
               host=f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
               load_average=os.getloadavg()[0])
    res["event_rules_s"] = event_rules(bundle)
    res["command"] = "python bench/agent.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = nilm_markdown(res, args.cpu)
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)
    return 0


def event_rules(bundle: str) -> dict[str, list[float]]:
    """{appliance: [shortest use s, merge gap s]} of the bundle's calibration: a use is reported
    started once it has run its shortest use, finished once it has been off for its merge gap."""
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    apps = manifest["tasks"]["nilm"].get("calibration", {}).get("appliances", {})
    return {k: [v.get("min_on_s") or 0.0, v.get("merge_gap_s") or 0.0] for k, v in apps.items()}


def nilm_markdown(res: dict, cpu: int) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.1f}"
    rules = ", ".join(f"{k} {a:.0f} / {b:.0f} s" for k, (a, b) in res.get("event_rules_s", {}).items())
    md = ["# Agent benchmark: NILM at the meter's native rate", "", f"Command: `{res['command']}`", "",
          f"{res['meters']} meters at 1 reading/s (simulated 1 s household traces from 18:00, the hour before "
          f"loaded first), NILM every {res['nilm_every_s']:g} s on {res['window']} samples of "
          f"{res['resolution_s']:g} s, one core (CPU {cpu}), real Mosquitto, {res['duration_s']} s; "
          f"{res['host']}, load average {res['load_average']:.1f}. Bundle `{res['bundle']}` "
          "(the model `bench/nilm.py` trained and scored).", "",
          "| metric | value |", "|---|---|",
          f"| NILM step (int8 graph + decision), CPU s per meter and round | {res['nilm_step_cpu_s'] * 1e3:.2f} ms |",
          f"| NILM CPU share of one core per meter (step / {res['nilm_every_s']:g} s) | "
          f"{100 * res['nilm_cpu_share_per_meter']:.3f} % |",
          f"| whole agent CPU share of one core per meter (SQLite, resampling, NILM, MQTT) | "
          f"{100 * res['agent_cpu_share_per_meter']:.2f} % |",
          f"| appliance events received (all / of uses that started or ended live) | "
          f"{res['events_received']} / {res['events']} ({res['events_by_kind']}) |",
          f"| reading -> event latency p50 / p99 / max (s) | {fmt(res['event_latency_p50_s'])} / "
          f"{fmt(res['event_latency_p99_s'])} / {fmt(res['event_latency_max_s'])} |",
          f"| of which the calibrated decision lag (s) | {res['decision_lag_s']:g} |", "",
          "The latency is mostly the event rules, by design: a use is reported *started* once it has run "
          "the appliance's calibrated shortest use (shorter blips are no event) and *finished* once it has "
          "been off for its merge gap (an oven's thermostat pause is not the end); then the 10 s bin closes "
          f"and the next NILM round runs. Shortest use / merge gap: {rules}.", ""]
    return "\n".join(md)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="", help="model bundle directory")
    ap.add_argument("--quick-bundle", action="store_true", help="train a tiny bundle first (export.pipeline)")
    ap.add_argument("--no-model", action="store_true", help="run without inference")
    ap.add_argument("--meters", type=int, default=20)
    ap.add_argument("--rate", type=float, default=2000.0, help="offered readings/s in the sustained phase")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--saturation-duration", type=float, default=10.0)
    ap.add_argument("--synchronous", choices=("normal", "full"), default="full")
    ap.add_argument("--cpu", type=int, default=0, help="CPU core to pin the agent to")
    ap.add_argument("--name", default="agent", help="results file stem under bench/results/")
    ap.add_argument("--per-message", type=int, default=50,
                    help="mqtt.max_readings_per_message (1: one MQTT message per reading)")
    ap.add_argument("--nilm", action="store_true", help="the NILM phase (1 Hz meters, events; see above)")
    ap.add_argument("--nilm-every", type=float, default=10.0, help="NILM schedule of the --nilm phase (s)")
    args = ap.parse_args()
    if args.nilm and args.name == "agent":
        args.name = "agent_nilm"
    if args.nilm and args.meters == 20 and args.duration == 20.0:
        args.meters, args.duration = 10, 600.0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from export.broker import LocalBroker

    bundle = args.bundle
    if args.quick_bundle and not args.no_model:  # in a subprocess: torch must not count in our RSS
        import subprocess

        out = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
        code = f"from pathlib import Path; from export.pipeline import quick_bundle; print(quick_bundle(Path({str(out)!r}), seed=0))"
        bundle = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                cwd=ROOT).stdout.strip().splitlines()[-1]
    if not bundle and not args.no_model:
        ap.error("give --bundle PATH, --quick-bundle or --no-model")
    if args.no_model:
        bundle = ""
    if args.nilm:
        if not bundle:
            ap.error("--nilm needs a bundle with a NILM model")
        return nilm_main(args, bundle)
    os.sched_setaffinity(0, {args.cpu})  # the agent and all its threads on one core
    with LocalBroker(kind="mosquitto") as broker, tempfile.TemporaryDirectory() as tmp:
        res: dict = {"cpu": args.cpu, "host": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"}
        cfg = make_config(Path(tmp) / "sat", broker.port, bundle, args.synchronous, args.per_message)
        res["saturation"] = asyncio.run(run_phase(cfg, args.meters, 0.0, args.saturation_duration, bundle))
        res["peak_rss_mb_after_saturation"] = rss_mb()
        cfg = make_config(Path(tmp) / "sus", broker.port, bundle, args.synchronous, args.per_message)
        res["sustained"] = asyncio.run(run_phase(cfg, args.meters, args.rate, args.duration, bundle))
    res["backend"] = "onnxruntime" if bundle else "none"
    res["bundle"] = bundle
    res["peak_rss_mb"] = rss_mb()
    s = res["sustained"]
    res["meets_targets"] = {
        "readings_per_s": res["saturation"]["committed_per_s"] >= TARGETS["readings_per_s"]
        and s["committed_per_s"] >= 0.97 * args.rate
        and s["outbox_backlog_at_end"] * args.per_message < args.rate,  # under 1 s behind
        "latency_p99_ms": (s["latency_p99_ms"] or 1e9) < TARGETS["latency_p99_ms"],
        "peak_rss_mb": res["peak_rss_mb"] <= TARGETS["peak_rss_mb"],
    }
    command = "python bench/agent.py " + " ".join(sys.argv[1:])
    write_results(res, args, command)
    print((RESULTS / f"{args.name}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
