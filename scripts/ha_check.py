"""Run a real Home Assistant against the demo's broker and report what its users would see.

Runs under the Home Assistant side environment (``.venv-homeassistant/bin/python``), started by
``scripts/ha_check.sh``; it imports nothing of unimeter (the demo runs as a subprocess of the
project's own Python). Steps:

1. a Mosquitto broker on a free loopback port;
2. Home Assistant (``hass --skip-pip``) with a fresh configuration directory, onboarded through
   its REST API (owner user, core config, analytics), the MQTT integration added with the
   config flow over REST (``/api/config/config_entries/flow``);
3. ``unimeter demo --mqtt-host 127.0.0.1 --mqtt-port <port> --meter-outage ...``: the demo's
   gateway publishes into that broker; the ZigBee meter's readings are cut off for a while;
4. meanwhile the entity states are polled (REST ``/api/states``): when the cut-off meter's entities
   turn ``unavailable``, and back;
5. the Energy dashboard's own validation (websocket ``energy/save_prefs`` with grid import and
   export and gas, then ``energy/validate``) once the recorder has compiled statistics;
6. a Markdown report on stdout: the entity table, the availability timing, the validation result
   and every WARNING/ERROR Home Assistant logged about MQTT (or anything else).

Exit code 0 when there is no MQTT warning, the energy validation has no issue for the grid import,
export and gas, and the meter went unavailable within its configured time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = "demo"
OUTAGE_METER = "zb1"
USER, PASSWORD = "owner", "owner-check-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"[ha_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------------------------

def start_mosquitto(work: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with open(work / "mosquitto.log", "wb") as err:  # the child keeps its own descriptor
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=err)
    _wait_port(port, 10, proc)
    return proc, port


def _wait_port(port: int, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port} after {timeout_s:.0f} s")


CONFIGURATION = """\
homeassistant:
  name: unimeter check
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: NL
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
websocket_api:
onboarding:
energy:
recorder:
  commit_interval: 1
logger:
  default: info
"""


def start_home_assistant(work: Path) -> tuple[subprocess.Popen, int, Path]:
    config_dir = work / "ha-config"
    config_dir.mkdir()
    port = free_port()
    (config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=port))
    hass = Path(sys.executable).with_name("hass")
    log_path = config_dir / "home-assistant.log"
    with open(work / "hass.stderr", "wb") as err:
        proc = subprocess.Popen([str(hass), "-c", str(config_dir), "--skip-pip", "--log-file",
                                 str(log_path)], stdout=subprocess.DEVNULL, stderr=err)
    _wait_port(port, 300, proc)
    return proc, port, log_path


def stop(proc: subprocess.Popen | None, timeout_s: float = 60) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- REST / websocket -----------------------------------------------------------------------------

class HomeAssistant:
    """The few REST and websocket calls of onboarding, the MQTT config flow and the energy check."""

    def __init__(self, session: aiohttp.ClientSession, port: int):
        self.s, self.base = session, f"http://127.0.0.1:{port}"
        self.client_id = f"{self.base}/"
        self.token = ""

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    async def _json(self, method: str, path: str, **kw) -> dict | list:
        async with self.s.request(method, self.base + path, **kw) as r:
            text = await r.text()
            if r.status >= 400:
                raise SystemExit(f"{method} {path}: HTTP {r.status}: {text[:500]}")
            return json.loads(text) if text else {}

    async def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                async with self.s.get(self.base + "/api/onboarding") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(1)
        raise SystemExit("Home Assistant's onboarding API did not answer")

    async def onboard(self) -> None:
        user = await self._json("POST", "/api/onboarding/users", json={
            "client_id": self.client_id, "name": "unimeter", "username": USER, "password": PASSWORD,
            "language": "en"})
        token = await self._json("POST", "/auth/token", data={
            "grant_type": "authorization_code", "code": user["auth_code"], "client_id": self.client_id})
        self.token = token["access_token"]
        await self._json("POST", "/api/onboarding/core_config", headers=self.headers)
        await self._json("POST", "/api/onboarding/analytics", headers=self.headers)
        await self._json("POST", "/api/onboarding/integration", headers=self.headers,
                         json={"client_id": self.client_id, "redirect_uri": f"{self.base}/?auth_callback=1"})

    async def add_mqtt(self, broker_port: int) -> dict:
        flow = await self._json("POST", "/api/config/config_entries/flow", headers=self.headers,
                                json={"handler": "mqtt", "show_advanced_options": False})
        for _ in range(4):
            if flow.get("type") != "form":
                break
            data = {"broker": "127.0.0.1", "port": broker_port} if flow.get("step_id") == "broker" else {}
            flow = await self._json("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                                    headers=self.headers, json=data)
        if flow.get("type") != "create_entry":
            raise SystemExit(f"MQTT config flow did not create an entry: {flow}")
        return flow

    async def states(self) -> list[dict]:
        return await self._json("GET", "/api/states", headers=self.headers)

    async def ws(self, *messages: dict) -> list[dict]:
        """Send websocket commands in order; their results."""
        out = []
        async with self.s.ws_connect(self.base + "/api/websocket") as ws:
            await ws.receive_json()  # auth_required
            await ws.send_json({"type": "auth", "access_token": self.token})
            auth = await ws.receive_json()
            if auth.get("type") != "auth_ok":
                raise SystemExit(f"websocket auth failed: {auth}")
            for i, m in enumerate(messages, start=1):
                await ws.send_json({"id": i, **m})
                while True:
                    reply = await ws.receive_json()
                    if reply.get("id") == i and reply.get("type") == "result":
                        out.append(reply)
                        break
        return out


# --- the check --------------------------------------------------------------------------------

def unimeter_states(states: list[dict]) -> dict[str, dict]:
    return {s["entity_id"]: s for s in states if f"unimeter_{GATEWAY}" in s["entity_id"]}


def entity_table(states: dict[str, dict]) -> list[str]:
    lines = ["| entity | name | state | unit | device class | state class |", "|---|---|---|---|---|---|"]
    for eid, s in sorted(states.items()):
        a = s["attributes"]
        state = str(s["state"])
        state = state if len(state) <= 40 else state[:37] + "..."
        lines.append(f"| `{eid}` | {a.get('friendly_name', '')} | {state} | "
                     f"{a.get('unit_of_measurement', '')} | {a.get('device_class', '')} | "
                     f"{a.get('state_class', '')} |")
    return lines


def log_problems(log_path: Path) -> tuple[list[str], list[str]]:
    """(MQTT-related WARNING/ERROR lines, all other WARNING/ERROR lines) of Home Assistant's log."""
    if not log_path.exists():
        return [], []
    mqtt, other = [], []
    for line in log_path.read_text(errors="replace").splitlines():
        if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line):
            (mqtt if re.search(r"mqtt|unimeter_|template", line, re.I) else other).append(line[:400])
    return mqtt, other


def run_demo(args: argparse.Namespace, broker_port: int, out: Path) -> subprocess.Popen:
    cmd = [args.python, "-m", "edge.cli", "demo", "--out", str(out), "--mqtt-host", "127.0.0.1",
           "--mqtt-port", str(broker_port), "--agent-seconds", str(args.agent_seconds),
           "--meter-outage", f"{args.outage_start_s:.0f}:{args.outage_s:.0f}"]
    cmd += ["--bundle", args.bundle] if args.bundle else ["--preset", "quick", "--no-tflite"]
    log(" ".join(cmd))
    with open(out.parent / "demo.stdout", "wb") as stdout:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.STDOUT)


def outage_window(demo_out: Path) -> tuple[float, float] | None:
    toml = demo_out / "agent.toml"
    if not toml.exists():
        return None
    m = re.search(r"outages = \[\[(\d+), (\d+)\]\]", toml.read_text())
    return (float(m.group(1)), float(m.group(2))) if m else None


def next_statistics_s(now_s: float) -> float:
    """The recorder compiles 5-minute statistics at :00, :05 ... (plus a few seconds); the Energy
    dashboard's validation needs their metadata, so it runs 30 s after the next boundary."""
    return (now_s // 300 + 1) * 300 + 30


async def watch(ha: HomeAssistant, demo: subprocess.Popen, demo_out: Path) -> dict:
    """Poll states while the demo runs: when the cut-off meter goes unavailable and comes back;
    the energy validation once statistics exist, while the meters are still publishing."""
    power = f"sensor.unimeter_{GATEWAY}_{OUTAGE_METER}_power"
    energy_entity = f"sensor.unimeter_{GATEWAY}_p1_energy"
    seen: dict[str, float] = {}
    last_states: dict[str, dict] = {}
    energy, validate_at = None, None
    while demo.poll() is None:
        states = unimeter_states(await ha.states())
        if states:
            last_states = states
        now = time.time()
        state = states.get(power, {}).get("state")
        if state not in (None, "unavailable", "unknown") and "available" not in seen:
            seen["available"] = now
        if state == "unavailable" and "available" in seen and "unavailable" not in seen:
            seen["unavailable"] = now
        if state not in (None, "unavailable", "unknown") and "unavailable" in seen and "back" not in seen:
            seen["back"] = now
        if validate_at is None and states.get(energy_entity, {}).get("state") not in (None, "unavailable",
                                                                                     "unknown"):
            validate_at = next_statistics_s(now)
            log(f"energy entities are in; validating at {time.strftime('%H:%M:%S', time.gmtime(validate_at))}")
        if energy is None and validate_at is not None and now >= validate_at:
            energy = await energy_validation(ha)
            energy["at_s"], energy["states"] = now, states
            log(f"energy/validate: {json.dumps(energy['validate'])[:300]}")
        await asyncio.sleep(1.0)
    return {"seen": seen, "states": last_states, "outage": outage_window(demo_out), "energy": energy}


def energy_prefs() -> dict:
    """Grid import and return to grid from the P1 meter, and its gas, as the Energy dashboard's
    settings page saves them (every price field present, null: no costs)."""
    no_price = {"entity_energy_price": None, "number_energy_price": None}
    return {"energy_sources": [
        {"type": "grid", "cost_adjustment_day": 0,
         "flow_from": [{"stat_energy_from": f"sensor.unimeter_{GATEWAY}_p1_energy", "stat_cost": None,
                        **no_price}],
         "flow_to": [{"stat_energy_to": f"sensor.unimeter_{GATEWAY}_p1_export", "stat_compensation": None,
                      **no_price}]},
        {"type": "gas", "stat_energy_from": f"sensor.unimeter_{GATEWAY}_p1_gas", "stat_cost": None,
         **no_price}],
        "device_consumption": []}


async def energy_validation(ha: HomeAssistant) -> dict:
    prefs = energy_prefs()
    saved, validated = await ha.ws({"type": "energy/save_prefs", **prefs}, {"type": "energy/validate"})
    return {"prefs": prefs, "saved": saved, "validate": validated.get("result")}


async def check(args: argparse.Namespace, work: Path) -> int:
    mosq = hass = demo = None
    try:
        mosq, broker_port = start_mosquitto(work)
        log(f"mosquitto on 127.0.0.1:{broker_port}")
        hass, ha_port, ha_log = start_home_assistant(work)
        log(f"Home Assistant on 127.0.0.1:{ha_port} (log {ha_log})")
        async with aiohttp.ClientSession() as session:
            ha = HomeAssistant(session, ha_port)
            await ha.wait_ready()
            await ha.onboard()
            entry = await ha.add_mqtt(broker_port)
            log(f"onboarded; MQTT integration added ({entry.get('title')})")
            demo_out = work / "demo"
            demo = run_demo(args, broker_port, demo_out)
            watched = await watch(ha, demo, demo_out)
            log(f"demo exited with {demo.returncode}")
            energy = watched["energy"] or {"saved": {}, "validate": None, "at_s": None}
            final = energy.get("states") or watched["states"]
        stop(hass)
        hass = None
        mqtt_problems, other_problems = log_problems(ha_log)
        demo_log = (demo_out / "agent.log").read_text(errors="replace") if (demo_out / "agent.log").exists() else ""
        agent_warnings = [line for line in demo_log.splitlines() if " WARNING " in line or " ERROR " in line]
        return report(args, watched, final, energy, mqtt_problems, other_problems, agent_warnings, demo.returncode)
    finally:
        stop(demo, 30)
        stop(hass)
        stop(mosq, 10)


def report(args, watched, final, energy, mqtt_problems, other_problems, agent_warnings, demo_rc) -> int:
    from homeassistant.const import __version__ as ha_version

    seen, outage = watched["seen"], watched["outage"]
    issues = energy["validate"] or {}
    source_issues = issues.get("energy_sources", [])
    n_issues = sum(len(x) for x in source_issues) + sum(len(x) for x in issues.get("device_consumption", []))
    unavailable_after = (seen["unavailable"] - outage[0]) if outage and "unavailable" in seen else None
    ok_unavailable = unavailable_after is not None and unavailable_after <= args.offline_after_s + 5
    n_sources = len(source_issues)  # one issue list per configured source (grid, gas)
    ok = (not mqtt_problems and n_issues == 0 and n_sources == 2 and energy["saved"].get("success")
          and ok_unavailable and demo_rc == 0)
    lines = [
        "# Home Assistant against the demo gateway", "",
        f"`bash scripts/ha_check.sh` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): Home Assistant "
        f"{ha_version} (Python {sys.version.split()[0]}, `.venv-homeassistant`), onboarded over REST, MQTT "
        "integration added by its config flow over REST, Mosquitto on loopback, "
        f"`unimeter demo --mqtt-host ... --agent-seconds {args.agent_seconds:.0f} --meter-outage "
        f"{args.outage_start_s:.0f}:{args.outage_s:.0f}` publishing into it.", "",
        f"**Result: {'PASS' if ok else 'FAIL'}** (demo exit code {demo_rc})", "",
        "## MQTT warnings in Home Assistant's log", "",
        f"{len(mqtt_problems)} MQTT/template warnings or errors" + (":" if mqtt_problems else "."), "",
        *[f"    {line}" for line in mqtt_problems[:50]],
        "", f"Other warnings/errors in Home Assistant's log: {len(other_problems)} (none about MQTT or "
        "unimeter; `hass --skip-pip` warns once, and onboarding starts integrations such as met, "
        "radio_browser and google_translate whose packages the side environment does not install)", "",
        *[f"    {line}" for line in other_problems[:20]],
        "", f"WARNING/ERROR lines in the agent's log: {len(agent_warnings)}", "",
        *[f"    {line}" for line in agent_warnings[:20]],
        "", "## Energy dashboard validation (websocket `energy/validate`)", "",
        "Run while the demo publishes, 30 s after the recorder's first 5-minute statistics "
        f"compile with the entities in ({time.strftime('%H:%M:%S', time.gmtime(energy['at_s'])) if energy.get('at_s') else 'never: the demo ended first'} UTC).", "",
        "Sources saved with `energy/save_prefs`: grid import `sensor.unimeter_demo_p1_energy`, "
        "return to grid `sensor.unimeter_demo_p1_export`, gas `sensor.unimeter_demo_p1_gas`.", "",
        f"save_prefs success: {energy['saved'].get('success')}; sources validated: {n_sources}; "
        f"validation issues: {n_issues}", "",
        "```json", json.dumps(issues, indent=1), "```", "",
        "## Per-meter availability", "",
    ]
    if outage:
        lines.append(f"The ZigBee meter `{OUTAGE_METER}`'s readings were cut off from "
                     f"{time.strftime('%H:%M:%S', time.gmtime(outage[0]))} to "
                     f"{time.strftime('%H:%M:%S', time.gmtime(outage[1]))} UTC; configured "
                     f"`offline_after_s` = {args.offline_after_s:.0f} s.")
        if unavailable_after is not None:
            lines.append(f"`sensor.unimeter_demo_{OUTAGE_METER}_power` became `unavailable` "
                         f"{unavailable_after:.1f} s after the cut-off (states polled every 1 s)"
                         + (f" and available again {seen['back'] - outage[1]:.1f} s after the readings "
                            "resumed." if "back" in seen else "."))
        else:
            lines.append("The meter's entities did NOT become unavailable.")
    lines += ["", f"## Entities ({len(final)}; states when the energy validation ran)", "",
              *entity_table(final), ""]
    print("\n".join(lines))
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=os.environ.get("UNIMETER_PYTHON", "python3"),
                   help="the project's Python (runs `unimeter demo`)")
    p.add_argument("--bundle", default=None, help="model bundle for the demo (default: train a quick one)")
    p.add_argument("--agent-seconds", type=float, default=480.0,
                   help="long enough to span a 5-minute statistics compile after the entities appear")
    p.add_argument("--outage-start-s", type=float, default=60.0)
    p.add_argument("--outage-s", type=float, default=45.0)
    p.add_argument("--offline-after-s", type=float, default=20.0, help="the demo's meters' offline_after_s")
    p.add_argument("--keep", default=None, help="keep the work directory here")
    args = p.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="unimeter-ha-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(check(args, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
