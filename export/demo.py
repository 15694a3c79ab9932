"""``unimeter demo``: the whole product end to end on the built-in default.

1. simulate a fleet, pretrain both backbones, fine-tune the four tasks, distill, export a bundle
   (``export.pipeline``; or reuse one with ``--bundle``);
2. start a local MQTT broker (Mosquitto when installed, else amqtt) and a subscriber, or use an
   existing broker (``--mqtt-host``: e.g. the Mosquitto add-on of your Home Assistant, which then
   shows the demo's gateway and meters through MQTT discovery);
3. seed the gateway store with a day of meter history (a gateway that has been running), with a
   false-data-injection attack (scaling, Cui et al.) on the P1 meter's last hours;
4. run the real agent (``unimeter agent --config``, a subprocess) on a virtual DSMR P1 meter
   on a pty and a virtual ZigBee meter on zigpy's virtual radio for ``--agent-seconds``;
5. print a summary table and write ``summary.json``, ``demo.png`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.agent.config import load_config
from edge.agent.meters import make_power_source
from edge.agent.store import ReadingStore
from edge.errors import ConfigError
from export.broker import LocalBroker
from firmware_bridge.reading import Reading, ReadingFlag

log = logging.getLogger(__name__)

GATEWAY_ID = "demo"
HISTORY_STEP_S = 60.0
METERS = (
    # id, kind, seed, interval_s, name
    ("p1", "virtual-dsmr", 11, 1.0, "Smart meter (P1, virtual)"),
    ("zb1", "virtual-zigbee", 12, 5.0, "ZigBee meter (virtual)"),
)
ATTACKED_METER = "p1"
OUTAGE_METER = "zb1"  # --meter-outage cuts this one off
OFFLINE_AFTER_S = 20.0  # a meter without a reading for this long is shown unavailable
NILM_PLOT_HOURS = 3.0  # the disaggregated stack in demo.png covers this much of the end


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", help="output directory (default: demo-out)")
    p.add_argument("--preset", default="demo", choices=("quick", "demo", "full"),
                   help="training size (demo: a few minutes on 2 cores)")
    p.add_argument("--bundle", default=None, help="use this model bundle instead of training one")
    p.add_argument("--agent-seconds", type=float, default=150.0,
                   help="how long the agent runs, counted from when it is up (online on the broker)")
    p.add_argument("--history-hours", type=float, default=26.0,
                   help="meter history written to the gateway store before the agent starts")
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


# --------------------------------------------------------------------------------------------
# MQTT subscriber


def _epoch_s(iso: str) -> float:
    """UTC epoch seconds of an ISO 8601 time as the agent writes it; -inf if it is not one."""
    try:
        return dt.datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return float("-inf")


@dataclass
class Collector:
    """Subscribes to everything the gateway publishes and keeps it (thread-safe)."""
    broker: BrokerSettings
    messages: list[tuple[float, str, dict | str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Collector:
        import paho.mqtt.client as mqtt

        b = self.broker
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="unimeter-demo-sub")
        if b.username:
            self._client.username_pw_set(b.username, b.password or None)
        if b.tls:
            import ssl

            self._client.tls_set(ca_certs=b.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
            self._client.tls_insecure_set(b.tls_insecure)
        topics = [(f"unimeter/{GATEWAY_ID}/#", 1), ("homeassistant/#", 1)]
        self._client.on_connect = lambda c, *_a: c.subscribe(topics)
        self._client.on_message = self._on_message
        self._client.connect(b.host, b.port)
        self._client.loop_start()
        return self

    def _on_message(self, _client, _userdata, msg) -> None:
        if msg.topic.startswith("homeassistant/") and f"/unimeter_{GATEWAY_ID}" not in msg.topic:
            return  # another device's discovery config on a shared broker
        try:
            body: dict | str = json.loads(msg.payload) if msg.payload else ""
        except ValueError:
            body = msg.payload.decode(errors="replace")
        with self._lock:
            self.messages.append((time.time(), msg.topic, body))

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def gateway_online_since(self, since_s: float) -> bool:
        """The gateway said it is online at or after ``since_s`` (UTC epoch seconds; a status an
        earlier run left retained on a shared broker is older)."""
        status = f"unimeter/{GATEWAY_ID}/status"
        with self._lock:
            said = [b.get("ts", "") for _t, topic, b in self.messages
                    if topic == status and isinstance(b, dict) and b.get("state") == "online"]
        return any(_epoch_s(ts) >= since_s for ts in said)

    def by_kind(self) -> dict[str, dict[str, list[dict]]]:
        """meter -> kind -> payloads, for unimeter/<gateway>/<meter>/<kind> topics."""
        out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        with self._lock:
            for _t, topic, body in self.messages:
                parts = topic.split("/")
                if parts[0] == "unimeter" and len(parts) == 4 and isinstance(body, dict):
                    out[parts[2]][parts[3]].append(body)
        return out

    def availability(self, meter_id: str) -> list[tuple[float, str]]:
        """(received at, "online"/"offline") of a meter's availability topic."""
        topic = f"unimeter/{GATEWAY_ID}/{meter_id}/availability"
        with self._lock:
            return [(t, str(b)) for t, tp, b in self.messages if tp == topic]

    def discovery_topics(self) -> list[str]:
        with self._lock:
            return sorted({t for _ts, t, b in self.messages if t.startswith("homeassistant/") and b})


# --------------------------------------------------------------------------------------------
# Agent configuration and history


PASSWORD_ENV = "UNIMETER_MQTT_PASSWORD"


@dataclass(frozen=True)
class BrokerSettings:
    """Where the demo publishes: a local broker it started, or an existing one."""
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = field(default="", repr=False)
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    tls_insecure: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BrokerSettings:
        password = os.environ.get(PASSWORD_ENV, "")
        if args.mqtt_password_file:
            lines = Path(args.mqtt_password_file).read_text().splitlines()
            password = lines[0] if lines else ""
        if password and not args.mqtt_user:
            raise ConfigError("a password is given but no --mqtt-user")
        port = args.mqtt_port or (8883 if args.mqtt_tls else 1883)
        return cls(args.mqtt_host, port, args.mqtt_user, password, args.mqtt_password_file,
                   args.mqtt_tls, args.mqtt_ca_file, args.mqtt_tls_insecure)

    def config_lines(self) -> list[str]:
        """The agent's [mqtt] section (the password itself never goes into the file)."""
        lines = ["[mqtt]", f"host = {json.dumps(self.host)}", f"port = {self.port}",
                 f"tls = {str(self.tls).lower()}", "discovery = true"]
        if self.username:
            lines.append(f"username = {json.dumps(self.username)}")
        if self.password_file:
            lines.append(f"password_file = {json.dumps(str(Path(self.password_file).resolve()))}")
        elif self.password:
            lines.append(f'password_env = "{PASSWORD_ENV}"')
        if self.ca_file:
            lines.append(f"ca_file = {json.dumps(str(Path(self.ca_file).resolve()))}")
        if self.tls_insecure:
            lines.append("tls_insecure = true")
        return lines


def agent_config_text(out: Path, broker: BrokerSettings | int, bundle: Path, now_s: float, history_s: float,
                      outage: tuple[float, float] | None = None) -> str:
    """The demo agent's TOML; ``outage`` = (start_s, end_s), seconds after the agent starts reading
    its meters, cuts the ZigBee meter off meanwhile."""
    if isinstance(broker, int):
        broker = BrokerSettings(port=broker)
    lines = [
        "# Written by `unimeter demo`: virtual meters, fast schedules.",
        "[gateway]", f'id = "{GATEWAY_ID}"', f'state_dir = "{out / "state"}"', 'log_level = "info"', "",
        *broker.config_lines(), "",
        "[model]", f'bundle = "{bundle}"', 'backend = "auto"', 'precision = "int8"', "threads = 1", "",
        "[schedule]", "profile_every_s = 30", "nilm_every_s = 15", "forecast_every_s = 45",
        "quality_every_s = 20", "report_every_s = 60", "status_every_s = 15", "",
    ]
    for meter_id, kind, seed, interval_s, name in METERS:
        lines += ["[[meters]]", f'id = "{meter_id}"', f'name = "{name}"', f'kind = "{kind}"',
                  f"offline_after_s = {OFFLINE_AFTER_S:.0f}",
                  "[meters.options]", f"seed = {seed}", f"interval_s = {interval_s}",
                  f"start_s = {now_s - history_s:.0f}"]
        if outage is not None and meter_id == OUTAGE_METER:
            lines.append(f"outages_after_start = [[{outage[0]:g}, {outage[1]:g}]]")
        if meter_id == ATTACKED_METER:
            lines += ["[meters.options.attack]", 'kind = "scaling"', f"start_s = {now_s - 6 * 3600:.0f}",
                      f"end_s = {now_s + 2 * 3600:.0f}", "lam = 0.8", f"step_s = {HISTORY_STEP_S:.0f}"]
        lines.append("")
    return "\n".join(lines)


def seed_history(cfg, now_s: float, history_s: float) -> dict[str, int]:
    """Write ``history_s`` of 1-min readings per meter into the agent's store (not published)."""
    store = ReadingStore(cfg.store_path, synchronous=cfg.store.synchronous)
    counts = {}
    try:
        for meter in cfg.meters:
            power_source = make_power_source(meter)
            ts = np.arange(now_s - history_s, now_s - 5.0, HISTORY_STEP_S)
            readings = []
            for t in ts:
                v = power_source(float(t))
                readings.append(Reading(meter.id, float(t), float(t), float(v["power_w"]),
                                        reactive_var=v.get("reactive_var"), import_wh=v.get("import_wh"),
                                        export_wh=v.get("export_wh"), voltage_v=v.get("voltage_v"),
                                        current_a=v.get("current_a"), source="history",
                                        flags=ReadingFlag.SIMULATED))
            store.commit_readings(readings)
            counts[meter.id] = len(readings)
    finally:
        store.close()
    return counts


def run_agent_process(config_path: Path, seconds: float, log_path: Path,
                      is_up: Callable[[], bool] | None = None, start_ceiling_s: float = 300.0) -> int:
    """The real CLI in a subprocess; SIGTERM ``seconds`` after ``is_up()`` first holds (the agent
    online; a slow start-up does not eat the run), or after ``start_ceiling_s`` without it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "agent", "--config", str(config_path)],
                                stdout=log_file, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + start_ceiling_s
        while is_up is not None and not is_up() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        _progress_wait(proc, seconds)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return proc.returncode


def _progress_wait(proc: subprocess.Popen, seconds: float) -> None:
    from tqdm import tqdm

    with tqdm(total=int(seconds), desc="agent running", unit="s",
              mininterval=1.0 if sys.stderr.isatty() else 15.0) as bar:
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            bar.update(min(int(time.monotonic() - t0), int(seconds)) - bar.n)


# --------------------------------------------------------------------------------------------
# Summary, plots and report


def summarise(collector: Collector, history: dict[str, int]) -> dict:
    kinds = collector.by_kind()
    meters = {}
    for meter_id, *_rest in METERS:
        got = kinds.get(meter_id, {})
        seqs = sorted({int(b["seq"]) for b in got.get("reading", []) if "seq" in b})
        live = [s for s in seqs if s > history.get(meter_id, 0)]
        gaps = int(sum(b - a - 1 for a, b in zip(live, live[1:], strict=False) if b > a + 1))
        anomaly = got.get("anomaly", [])
        appliances = got.get("appliances", [])
        forecast = got.get("forecast", [])
        on_now = [n for n, s in (appliances[-1].get("appliances", {}) if appliances else {}).items()
                  if s.get("on")]
        meters[meter_id] = {
            "messages": {k: len(v) for k, v in got.items()},
            "live_readings": len(live),
            "seq_gaps": gaps,
            "anomaly_flags": sum(bool(b.get("anomaly")) for b in anomaly),
            "anomaly_last_score": anomaly[-1].get("score") if anomaly else None,
            "appliances_on": on_now,
            "forecast_next_hour_w": forecast[-1].get("hour_ahead_w") if forecast else None,
            "reports": [b.get("text") or b.get("report") for b in got.get("report", [])][-1:],
            "availability": [state for _t, state in collector.availability(meter_id)],
        }
    return {"meters": meters, "discovery_configs": len(collector.discovery_topics()),
            "messages_total": len(collector.messages)}


def print_summary(summary: dict, stage_seconds: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if stage_seconds:
        t = Table(title="Workstation pipeline")
        t.add_column("stage")
        t.add_column("seconds", justify="right")
        for k, v in stage_seconds.items():
            t.add_row(k, f"{v:.1f}")
        console.print(t)
    t = Table(title=f"Gateway '{GATEWAY_ID}' over MQTT ({summary['messages_total']} messages, "
                    f"{summary['discovery_configs']} Home Assistant discovery configs)")
    for col in ("meter", "live readings", "seq gaps", "anomaly flags", "last score", "appliances on",
                "next hour (W)"):
        t.add_column(col)
    for meter_id, m in summary["meters"].items():
        t.add_row(meter_id, str(m["live_readings"]), str(m["seq_gaps"]), str(m["anomaly_flags"]),
                  str(m["anomaly_last_score"]), ", ".join(m["appliances_on"]) or "-",
                  str(m["forecast_next_hour_w"]))
    console.print(t)


def _plot_anomaly_scores(ax, anomalies: list[dict], now_s: float):
    """Each anomaly message's window score at its window's end, on a right-hand 0-1 axis, with
    the threshold dashed and flagged windows filled; returns the line for the legend."""
    cx = ax.twinx()
    end_h = np.array([(b.get("window_end_s", b["window_start_s"]) - now_s) / 3600 for b in anomalies])
    score = np.array([b["score"] for b in anomalies], float)
    flagged = np.array([bool(b["anomaly"]) for b in anomalies])
    (line,) = cx.plot(end_h, score, color="C3", lw=1, marker=".", ms=4)
    cx.scatter(end_h[flagged], score[flagged], color="C3", s=22, zorder=3)
    cx.axhline(float(anomalies[-1].get("threshold", 0.5)), color="C3", ls="--", lw=0.8, alpha=0.6)
    cx.set_ylim(0, 1)
    cx.set_ylabel("anomaly score", color="C3")
    return line


@dataclass
class Disaggregated:
    """The last hours of one meter as the agent's NILM decides them: ``ts_s`` [T] bin starts,
    ``load_w`` [T] the aggregate the model saw (W, gaps filled), ``power_w`` [A, T] per appliance
    (W, 0 when off, the sum never above ``load_w``)."""

    names: tuple[str, ...]
    ts_s: np.ndarray
    load_w: np.ndarray
    power_w: np.ndarray


def disaggregate_history(model, store: ReadingStore, meter_id: str, now_s: float, hours: float
                         ) -> Disaggregated | None:
    """Consecutive NILM windows over the last ``hours`` of the store (``edge.agent.inference``'s
    model and ``edge.nilm_output.decide`` with the bundle's calibration: what the agent publishes,
    sample by sample). None when the store holds less than one window."""
    from edge.agent.gapfill import fill_window
    from edge.nilm_output import decide
    from edge.task_io import APPLIANCE_W, LOAD_W, ON_LOGIT

    shape = model.tasks["nilm"]
    res, n = shape.resolution_s, shape.length
    n_windows = int(hours * 3600 // (res * n))
    last = int(now_s // res)  # the bin in progress is left out
    first = last - n_windows * n
    if n_windows < 1:
        return None
    mean_w = np.full(n_windows * n, np.nan)
    for k, total, count in store.bins(meter_id, res, first * res):
        if first <= k < last and count:
            mean_w[int(k) - first] = total / count
    if np.isnan(mean_w).mean() > 0.5:
        return None
    names, loads, powers = tuple(model.appliances), [], []
    for w in range(n_windows):
        start_s = (first + w * n) * res
        load = fill_window(mean_w[w * n:(w + 1) * n], start_s, res).filled_w.astype(np.float32)
        out = model.runtime.run("nilm", {LOAD_W: load[None]})
        d = decide(out[ON_LOGIT][0], out[APPLIANCE_W][0], load, names, model.nilm_calibration)
        loads.append(load)
        powers.append(d.power_w)
    return Disaggregated(names, (first + np.arange(n_windows * n)) * res, np.concatenate(loads),
                         np.concatenate(powers, axis=1))


def true_appliance_power(meter, nilm: Disaggregated) -> np.ndarray | None:
    """The simulator's truth behind a virtual household meter, as bin means at the NILM bins:
    [A + 1, T] for the model's appliances and the rest of the house ("other")."""
    from edge.agent.meters import household_power_source

    if meter is None or meter.options.get("profile", "household") != "household":
        return None
    source = household_power_source(int(meter.options["seed"]), float(meter.options["start_s"]), meter.options)
    res = float(nilm.ts_s[1] - nilm.ts_s[0]) if len(nilm.ts_s) > 1 else 60.0
    out = np.zeros((len(nilm.names) + 1, len(nilm.ts_s)))
    day_s = 86400
    for day in np.unique(nilm.ts_s // day_s):
        trace = source.trace(int(day))
        sel = np.nonzero(nilm.ts_s // day_s == day)[0]
        idx = ((nilm.ts_s[sel] - day * day_s) // trace.resolution_s).astype(int)
        step = max(int(res // trace.resolution_s), 1)
        cols = np.clip(idx[:, None] + np.arange(step)[None, :], 0, len(trace) - 1)  # [T_day, step]
        total = np.asarray(trace.power_w, np.float64)[cols].mean(axis=1)
        for a, name in enumerate(nilm.names):
            if name in trace.appliances:
                out[a, sel] = np.asarray(trace.appliances[name].power_w, np.float64)[cols].mean(axis=1)
        out[-1, sel] = np.maximum(total - out[:-1, sel].sum(axis=0), 0.0)
    return out


def plot_stack(ax, ts_s: np.ndarray, power_w: np.ndarray, names, total_w: np.ndarray, now_s: float,
               title: str) -> None:
    """Appliance powers stacked under the aggregate (black line), hours from the demo start."""
    from edge.agent.entities import appliance_name

    hours = (ts_s - now_s) / 3600
    colors = [f"C{i % 10}" for i in range(len(names))]
    if names and names[-1] == "other":
        colors[-1] = "0.85"
    ax.stackplot(hours, power_w, labels=[appliance_name(n) for n in names], colors=colors, step="post")
    ax.step(hours, total_w, where="post", color="k", lw=0.8, label="aggregate")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("hours from demo start")
    ax.set_ylabel("power (W)")
    ax.legend(loc="upper left", fontsize=7, ncol=2)


def plot_demo(store_path: Path, collector: Collector, png: Path, now_s: float, bundle: Path | None = None,
              meters=()) -> Path:
    """Per meter: the measured load with forecast and anomaly scores, and the last
    ``NILM_PLOT_HOURS`` disaggregated (model) beside the simulator's truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.agent.inference import open_model

    kinds = collector.by_kind()
    model = open_model(bundle, "onnx", "int8", 1) if bundle is not None else None
    model = model if model is not None and model.has("nilm") else None
    meter_by_id = {m.id: m for m in meters}
    store = ReadingStore(store_path)
    fig, axes = plt.subplots(len(METERS), 3, figsize=(20, 4.4 * len(METERS)),
                             gridspec_kw={"width_ratios": [3, 2, 2]}, squeeze=False)
    try:
        for row, (meter_id, _kind, _seed, _iv, name) in enumerate(METERS):
            ax = axes[row][0]
            bins = store.bins(meter_id, 1800.0, now_s - 2 * 86400)
            if bins:
                k, s, c = (np.array(v, float) for v in zip(*bins, strict=True))
                ax.step((k * 1800 - now_s) / 3600, s / np.maximum(c, 1), where="post",
                        label="measured (30-min mean)", color="C0")
            fc = kinds.get(meter_id, {}).get("forecast", [])
            if fc:
                day = np.array(fc[-1]["day_ahead_w"], float)
                start_h = (fc[-1]["start_s"] - now_s) / 3600
                ax.step(start_h + np.arange(len(day)) * 0.5, day, where="post", color="C1",
                        label="day-ahead forecast (int8 student)")
            if meter_id == ATTACKED_METER:
                ax.axvspan(-6, 2, color="red", alpha=0.08, label="injected scaling attack")
            anomalies = kinds.get(meter_id, {}).get("anomaly", [])
            for b in anomalies:
                for t in b.get("anomalous_points_ts_s", []):
                    ax.axvline((t - now_s) / 3600, color="red", alpha=0.15, lw=1)
            ax.set_title(f"{meter_id}: {name}")
            ax.set_xlabel("hours from demo start")
            ax.set_ylabel("power (W)")
            handles, labels = ax.get_legend_handles_labels()
            if anomalies:
                handles.append(_plot_anomaly_scores(ax, anomalies, now_s))
                labels.append("anomaly score of the day ending here (right axis)")
            ax.legend(handles, labels, loc="upper left", fontsize=8)
            nilm = disaggregate_history(model, store, meter_id, now_s, NILM_PLOT_HOURS) if model else None
            if nilm is not None:
                truth = true_appliance_power(meter_by_id.get(meter_id), nilm)
                plot_stack(axes[row][1], nilm.ts_s, nilm.power_w, nilm.names, nilm.load_w, now_s,
                           "NILM (int8 model, the agent's decision rules)")
                if truth is not None:
                    note = "; the readings are scaled by the attack" if meter_id == ATTACKED_METER else ""
                    plot_stack(axes[row][2], nilm.ts_s, truth, nilm.names + ("other",),
                               truth.sum(axis=0), now_s, f"ground truth (simulator{note})")
            for bx in axes[row][1:]:
                if not bx.has_data():
                    bx.set_axis_off()
    finally:
        store.close()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def write_report(path: Path, summary: dict, pipeline: dict | None, agent_rc: int) -> Path:
    lines = ["# unimeter demo report", ""]
    if pipeline:
        lines += ["## Training (teacher vs distilled student, held-out validation)", "",
                  "| task | metric | teacher | student |", "|---|---|---|---|"]
        for task, rep in pipeline.get("distill_reports", {}).items():
            for metric, value in rep.get("teacher", {}).items():
                s = rep.get("student", {}).get(metric)
                lines.append(f"| {task} | {metric} | {value:.4g} | {s:.4g} |" if s is not None else
                             f"| {task} | {metric} | {value:.4g} | - |")
        lines.append("")
    lines += [f"## Gateway (agent exit code {agent_rc})", ""]
    for meter_id, m in summary["meters"].items():
        lines.append(f"- **{meter_id}**: {m['live_readings']} live readings (seq gaps: {m['seq_gaps']}), "
                     f"messages {m['messages']}, anomaly flags {m['anomaly_flags']}, appliances on now: "
                     f"{', '.join(m['appliances_on']) or 'none'}")
        for text in m["reports"]:
            if text:
                lines += ["", f"  > {text}"]
    lines.append("")
    path.write_text("\n".join(lines))
    return path


# --------------------------------------------------------------------------------------------


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

        cfg = PipelineConfig.preset(args.preset, out / "train", seed=args.seed,
                                    include_tflite=not args.no_tflite)
        result = run_pipeline(cfg)
        bundle, stage_seconds, pipeline_summary = result.bundle_dir, result.stage_seconds, result.summary()
    now_s = time.time()
    history_s = args.history_hours * 3600.0
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
    summary.update(agent_exit_code=agent_rc, bundle=str(bundle), broker=broker_used,
                   history_readings=history, stage_seconds=stage_seconds,
                   wall_seconds=round(time.perf_counter() - t_start, 1))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    plot_demo(store_file, collector, out / "demo.png", now_s, bundle, cfg.meters)
    write_report(out / "report.md", summary, pipeline_summary, agent_rc)
    print_summary(summary, stage_seconds)
    print(f"wrote {out / 'summary.json'}, {out / 'demo.png'}, {out / 'report.md'} "
          f"({summary['wall_seconds']} s)")
    return 0 if agent_rc == 0 else 1
