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
    args = ap.parse_args()
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
