"""The demo's gateway: its meters, the agent config written for them, a day of seeded history (with
an under-reporting attack on the P1 meter's last day), and the real agent run as a subprocess."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.agent.meters import make_power_source
from edge.agent.store import ReadingStore
from edge.errors import ConfigError
from firmware_bridge.reading import Reading, ReadingFlag

GATEWAY_ID = "demo"
HISTORY_STEP_S = 60.0
OLD_HISTORY_STEP_S = 300.0  # readings older than RECENT_HISTORY_S are seeded every 5 min (faster)
RECENT_HISTORY_S = 26 * 3600.0
# the last hours at the NILM model's native rate (export.pipeline.NILM_RESOLUTION_S): the agent's
# first NILM window and the plot's disaggregated hours (demo_report.NILM_PLOT_HOURS) need its bins
NATIVE_HISTORY_STEP_S = 10.0
NATIVE_HISTORY_S = 3.5 * 3600.0
OFFLINE_AFTER_S = 20.0  # a meter without a reading for this long is shown unavailable
# The seeded history ends this long before the demo starts the agent: the gateway was down since (a
# restart). The agent takes the store's last reception time for a meter's availability at start-up;
# a history reaching up to the start made a meter "online" from its last seeded reading, then
# "offline" until its first live report (a ZigBee meter's comes 20-25 s later: radio start-up and
# its 5 s interval), then "online": a flap that was the gateway's restart, not the meter.
HISTORY_END_GAP_S = OFFLINE_AFTER_S + 5.0
METERS = (
    # id, kind, seed, interval_s, name
    ("p1", "virtual-dsmr", 11, 1.0, "Smart meter (P1, virtual)"),
    ("zb1", "virtual-zigbee", 12, 5.0, "ZigBee meter (virtual)"),
)
ATTACKED_METER = "p1"
# The P1 meter under-reports from ATTACK_BEFORE_S before the agent starts to ATTACK_AFTER_S after
# (scaling, Cui et al.): p'(t) = p(t) (1 + ATTACK_LAM), what a meter thief does. Over-reporting by
# +0.8 over 6 h is inside this household's own normal (its 6-h energy is above 1.67x its last 7
# days' same hours in 10 % of clean 6-h spans, above 3.2x in 1 %), so no detector held to one false
# alarm a month can flag it; 0.2x of the household's load drops under its own standby floor (its
# 6-h spans never fall below 0.23x in 40 clean days). A day of it: the demo's int8 anomaly model
# (D = 7) flags the window ending at any half hour of 4 simulated days once the theft has lasted
# 24 h, but only 75 % of them after 6 h and 86 % after 12 h (its clean windows: none), so a demo
# run at any hour shows the flag.
ATTACK_LAM = -0.8
ATTACK_BEFORE_S = 24 * 3600.0
ATTACK_AFTER_S = 2 * 3600.0
OUTAGE_METER = "zb1"  # --meter-outage cuts this one off


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
            lines += ["[meters.options.attack]", 'kind = "scaling"', f"start_s = {now_s - ATTACK_BEFORE_S:.0f}",
                      f"end_s = {now_s + ATTACK_AFTER_S:.0f}", f"lam = {ATTACK_LAM}", f"step_s = {HISTORY_STEP_S:.0f}"]
        lines.append("")
    return "\n".join(lines)


def default_history_s(history_days: int) -> float:
    """The store history the demo seeds: the model's D days of context (0 for a one-day model),
    the day before the past day the plot forecasts and that day, + 2 h."""
    return (max(history_days, 0) + 2) * 86400.0 + 2 * 3600.0


def history_times(now_s: float, history_s: float) -> np.ndarray:
    """Reading times of the seeded history: every ``NATIVE_HISTORY_STEP_S`` over the last
    ``NATIVE_HISTORY_S`` (NILM at its native rate), every ``HISTORY_STEP_S`` before that over the last
    ``RECENT_HISTORY_S`` (what the plots show in detail), every ``OLD_HISTORY_STEP_S`` before; up to
    ``HISTORY_END_GAP_S`` before ``now_s``."""
    start_s = now_s - history_s
    recent_s = now_s - min(history_s, RECENT_HISTORY_S)
    native_s = now_s - min(history_s, NATIVE_HISTORY_S)
    return np.concatenate([np.arange(start_s, recent_s, OLD_HISTORY_STEP_S),
                           np.arange(recent_s, native_s, HISTORY_STEP_S),
                           np.arange(native_s, now_s - HISTORY_END_GAP_S, NATIVE_HISTORY_STEP_S)])


def seed_history(cfg, now_s: float, history_s: float) -> dict[str, int]:
    """Write ``history_s`` of readings per meter (``history_times``) into the agent's store (not
    published)."""
    store = ReadingStore(cfg.store_path, synchronous=cfg.store.synchronous)
    counts = {}
    try:
        for meter in cfg.meters:
            power_source = make_power_source(meter)
            ts = history_times(now_s, history_s)
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
