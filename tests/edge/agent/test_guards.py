"""The reading guard in the running agent, with a real Mosquitto and a real SQLite store: bad
values, counter glitches and resets, meter clock jumps, and the recorded Modbus and ZigBee cases
through the real sources (the DSMR cases over a pty). Every published reading message is checked."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable

import pytest

from edge.agent.__main__ import main
from edge.agent.agent import Agent
from edge.agent.config import ConfigError, parse_config
from edge.agent.health import health_path, read_health
from edge.agent.meters import build_sources
from edge.agent.store import ReadingStore
from firmware_bridge.reading import Reading, ReadingFlag
from firmware_bridge.zigbee.source import ZigbeeConfig, ZigbeeSource
from firmware_bridge.zigbee.virtual_meter import ReplayZigbeeDevice
from tests.edge.agent.helpers import Recorder, make_config
from tests.firmware_bridge.meter_cases import PUBLISHED_PREFIX, find_cases, split_telegrams

FAST = {"quality_every_s": 0.5, "status_every_s": 0.5, "report_every_s": 3600.0,
        "profile_every_s": 3600.0, "forecast_every_s": 3600.0, "nilm_every_s": 3600.0}


class ScriptedSource:
    """A meter that sends prepared readings: ``make(i, now_s) -> Reading`` every ``interval_s``,
    ``count`` times, then stays connected and silent."""

    def __init__(self, meter_id: str, make: Callable[[int, float], Reading], count: int,
                 interval_s: float = 0.05) -> None:
        self.meter_id, self.make, self.count, self.interval_s = meter_id, make, count, interval_s
        self.sent = 0

    async def readings(self):
        while self.sent < self.count:
            yield self.make(self.sent, time.time())
            self.sent += 1
            await asyncio.sleep(self.interval_s)
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def running(agent: Agent):
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 30)
        yield agent
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)


async def wait_until(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the agent")
        await asyncio.sleep(0.05)


def _readings_by_seq(rec: Recorder, meter: str) -> list[dict]:
    return sorted({m["seq"]: m for m in rec.json(f"/{meter}/reading")}.values(), key=lambda m: m["seq"])


def _numbers(obj) -> list[float]:
    """Every number anywhere in a JSON payload."""
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v)]
    if isinstance(obj, list):
        return [n for v in obj for n in _numbers(v)]
    return [obj] if isinstance(obj, int | float) and not isinstance(obj, bool) else []


def assert_energy_never_decreases_unless_reset(messages: list[dict]) -> None:
    """On every published reading: energy_kwh only goes down on a reading flagged COUNTER_RESET."""
    last = None
    for m in messages:
        e = m.get("energy_kwh")
        if e is None:
            continue
        assert math.isfinite(e) and e < 1e7, m
        if last is not None and e < last:
            assert m["flags"] & ReadingFlag.COUNTER_RESET, f"energy decreased without a reset: {m}"
        last = e


async def test_implausible_readings_are_flagged_withheld_and_counted(mosquitto, tmp_path):
    powers = [500.0, -5000.0, 600.0, 1e308, 700.0, math.nan, 800.0]
    meters = [{"id": "m1", "kind": "virtual", "limits": {"export": False, "phases": 1, "main_fuse_a": 25}}]
    cfg = make_config(tmp_path / "state", mosquitto.port, meters, schedule=FAST)
    source = ScriptedSource("m1", lambda i, now: Reading("m1", now, now, powers[i], voltage_v=230.0),
                            len(powers))
    rec = Recorder(mosquitto.port, ["unimeter/#"], client_id="guard-implausible")
    try:
        async with running(Agent(cfg, {"m1": source})):
            await wait_until(lambda: len(_readings_by_seq(rec, "m1")) == len(powers))
            await wait_until(lambda: any(s.get("health", {}).get("readings_guarded", {}).get("implausible") == 2
                                         for s in rec.json("/gw1/status")))
            await wait_until(lambda: any(q["guard"]["implausible"] == 2 for q in rec.json("/m1/quality")))
            await wait_until(lambda: read_health(health_path(cfg.store_path))["readings_guarded"]
                             .get("implausible") == 2, 15)
            health = read_health(health_path(cfg.store_path))
    finally:
        rec.stop()
    assert health["readings_guarded"]["invalid_values"] == 1
    assert any(w.startswith("meter m1: 1 values without a value (invalid/NaN), 2 implausible values withheld")
               for w in health["warnings"]), health["warnings"]
    published = _readings_by_seq(rec, "m1")
    assert [m["power_w"] for m in published] == [500.0, None, 600.0, None, 700.0, None, 800.0]
    for m in rec.json("/m1/reading"):  # every message, duplicates included: under no key at all
        assert not {-5000.0, 1e308} & {v for v in _numbers(m)}, m
    flags = [ReadingFlag(m["flags"]) for m in published]
    assert ReadingFlag.IMPLAUSIBLE in flags[1] and ReadingFlag.IMPLAUSIBLE in flags[3]
    assert ReadingFlag.INVALID_VALUE in flags[5]
    quality = [q for q in rec.json("/m1/quality") if q["guard"]["implausible"] == 2][-1]
    assert quality["guard"]["implausible_by_field"] == {"power_w": 2}
    assert quality["guard"]["invalid_values"] == 1
    store = ReadingStore(cfg.store_path)  # withheld, not lost: the store keeps what was sent
    kept = [s.reading for s in store.readings_since("m1", 0)]
    store.close()
    assert [r.extra.get("power_w_withheld") for r in kept[:4]] == [None, -5000.0, None, 1e308]


async def test_counter_glitch_is_withheld_and_a_reset_is_flagged(mosquitto, tmp_path):
    counters = [1000.0, 1010.0, 9e6, 1020.0, 1030.0, 5.0, 15.0, 25.0, 35.0, 45.0]
    cfg = make_config(tmp_path / "state", mosquitto.port, [{"id": "m1", "kind": "virtual"}], schedule=FAST)
    source = ScriptedSource("m1", lambda i, now: Reading("m1", now, now, 300.0, import_wh=counters[i]),
                            len(counters))
    rec = Recorder(mosquitto.port, ["unimeter/#"], client_id="guard-counters")
    try:
        async with running(Agent(cfg, {"m1": source})):
            await wait_until(lambda: len(_readings_by_seq(rec, "m1")) == len(counters))
            await wait_until(lambda: any(q["guard"]["counter_resets"] == 1 for q in rec.json("/m1/quality")))
    finally:
        rec.stop()
    published = _readings_by_seq(rec, "m1")
    assert [m.get("energy_kwh") for m in published] == [1.0, 1.01, None, 1.02, 1.03,
                                                         None, None, 0.025, 0.035, 0.045]
    assert_energy_never_decreases_unless_reset(published)
    assert_energy_never_decreases_unless_reset(rec.json("/m1/reading"))
    assert ReadingFlag.COUNTER_GLITCH in ReadingFlag(published[2]["flags"])
    assert ReadingFlag.COUNTER_RESET in ReadingFlag(published[7]["flags"])
    guard = [q for q in rec.json("/m1/quality") if q["guard"]["counter_resets"] == 1][-1]["guard"]
    assert guard["counter_glitches"] == 1 and guard["counter_withheld"] == 3


async def test_the_last_published_counter_survives_a_restart(mosquitto, tmp_path):
    cfg = make_config(tmp_path / "state", mosquitto.port, [{"id": "m1", "kind": "virtual"}], schedule=FAST)
    first = ScriptedSource("m1", lambda i, now: Reading("m1", now, now, 300.0, import_wh=180_100.0 + 100 * i), 2)
    async with running(Agent(cfg, {"m1": first})):
        await wait_until(lambda: first.sent == 2)
        await asyncio.sleep(0.3)
    values = [5_000_000.0, 180_400.0]  # the first poll after the restart is a glitch
    second = ScriptedSource("m1", lambda i, now: Reading("m1", now, now, 300.0, import_wh=values[i]), 2)
    rec = Recorder(mosquitto.port, ["unimeter/gw1/m1/reading"], client_id="guard-restart")
    try:
        async with running(Agent(cfg, {"m1": second})):
            await wait_until(lambda: any(m["seq"] == 4 for m in rec.json("/m1/reading")))
    finally:
        rec.stop()
    published = _readings_by_seq(rec, "m1")
    assert [m.get("energy_kwh") for m in published if m["seq"] >= 3] == [None, 180.4]


@pytest.mark.parametrize("case", [c for c in find_cases("modbus")], ids=lambda c: c.name)
async def test_agent_replaying_a_modbus_case_over_a_pty_never_publishes_less_energy(case, mosquitto, tmp_path):
    from firmware_bridge.modbus.virtual_meter import ReplayModbusMeter

    meter = ReplayModbusMeter.from_case(case.json("polls.json"))
    n_polls = len(meter.polls)
    async with meter:
        meters = [{"id": "sdm", "kind": "modbus",
                   "options": {"port": meter.port, "model": meter.model, "unit_id": meter.unit_id,
                               "poll_interval_s": 0.2, "timeout_s": 3.0, "retries": 0}}]
        cfg = make_config(tmp_path / "state", mosquitto.port, meters, schedule=FAST)
        rec = Recorder(mosquitto.port, ["unimeter/#"], client_id="guard-modbus")
        try:
            async with running(Agent(cfg, build_sources(cfg))):
                await wait_until(lambda: len(_readings_by_seq(rec, "sdm")) >= n_polls)
                await asyncio.sleep(0.5)  # polls after the recording fail: nothing more is published
        finally:
            rec.stop()
    published = _readings_by_seq(rec, "sdm")
    assert len(published) == n_polls
    assert_energy_never_decreases_unless_reset(rec.json("/sdm/reading"))  # every message
    expected = case.expected.get("published_energy_kwh")
    if expected is not None:
        assert [m.get("energy_kwh") for m in published] == pytest.approx(expected, abs=5e-4)
    assert not any(ReadingFlag(m["flags"]) & ReadingFlag.COUNTER_RESET for m in published)


def _live_dsmr_cases() -> list:
    """DSMR cases that name published values and whose telegrams carry a meter clock (an M-Bus
    capture is judged against it, so the case replays the same at any date)."""
    from firmware_bridge.dsmr.parser import parse_telegram

    out = []
    for case in find_cases("dsmr"):
        if not any(k.startswith(PUBLISHED_PREFIX) for k in case.expected):
            continue
        chunks = split_telegrams(case.bytes("telegram.bin"))
        if all(parse_telegram(c).timestamp is not None for c in chunks):
            out.append(pytest.param(case, id=case.name))
    return out


@pytest.mark.parametrize("case", _live_dsmr_cases())
async def test_agent_replaying_a_dsmr_case_over_a_pty_publishes_the_cases_values(case, mosquitto, tmp_path):
    """The telegrams written to a pty one by one, read by the agent's P1 reader: every published
    M-Bus value is one the case expects (never a withheld one), no counter goes down, the last
    message holds the case's last values, and sub-meters are named by their device type."""
    from firmware_bridge.pty_link import PtyDevice

    chunks = split_telegrams(case.bytes("telegram.bin"))
    expected = {k.removeprefix(PUBLISHED_PREFIX): v for k, v in case.expected.items()
                if k.startswith(PUBLISHED_PREFIX)}
    device = PtyDevice("ttyP1")
    device.plug()
    meters = [{"id": "p1", "kind": "dsmr",
               "options": {"port": device.path, "version": str(case.expected["dsmr_version"])}}]
    cfg = make_config(tmp_path / "state", mosquitto.port, meters, schedule=FAST)
    rec = Recorder(mosquitto.port, ["unimeter/#"], client_id="guard-dsmr")
    try:
        async with running(Agent(cfg, build_sources(cfg))):
            for chunk in chunks:
                await asyncio.sleep(0.1)  # one telegram at a time, as a meter sends them
                assert device.write(chunk) == len(chunk)
            await wait_until(lambda: _readings_by_seq(rec, "p1")
                             and _readings_by_seq(rec, "p1")[-1]["seq"] >= len(chunks))
    finally:
        rec.stop()
        device.remove()
    messages = rec.json("/p1/reading")
    assert_energy_never_decreases_unless_reset(messages)
    last = _readings_by_seq(rec, "p1")[-1]
    for key, values in expected.items():
        allowed = {round(v, 4) for v in values if v is not None}
        got = [m[key] for m in messages if m.get(key) is not None]
        assert {round(v, 4) for v in got} <= allowed, f"{key}: published {got}, case allows {allowed}"
        assert got == sorted(got) or key.endswith("_w"), f"{key} went down: {got}"
        if values[-1] is not None:
            assert last.get(key) == pytest.approx(values[-1], abs=1e-4), (key, last)
    assert not any(ReadingFlag(m["flags"]) & ReadingFlag.COUNTER_RESET for m in messages)


@pytest.mark.parametrize("case", [c for c in find_cases("zigbee")], ids=lambda c: c.name)
async def test_agent_replaying_a_zigbee_case_publishes_no_energy_for_an_invalid_report(
        case, mosquitto, tmp_path):
    device = ReplayZigbeeDevice.from_case(case.json("reports.json"))
    source = ZigbeeSource(ZigbeeConfig(radio="virtual", virtual_devices=[device], meters={device.ieee: "zb"}))
    cfg = make_config(tmp_path / "state", mosquitto.port,
                      [{"id": "zb", "kind": "zigbee", "options": {"radio": "virtual"}}], schedule=FAST)
    expected = case.expected["readings"]
    rec = Recorder(mosquitto.port, ["unimeter/#"], client_id="guard-zigbee")
    try:
        async with running(Agent(cfg, {"zb": source})):
            await wait_until(lambda: device.ieee in source.configured)
            for n in range(1, len(device.reports) + 1):
                device.send_next()
                await wait_until(lambda n=n: len(_readings_by_seq(rec, "zb")) >= min(n, len(expected)))
    finally:
        rec.stop()
    published = _readings_by_seq(rec, "zb")
    assert len(published) == len(expected)
    for message, want in zip(published, expected, strict=True):
        if "import_wh" in want and want["import_wh"] is None:
            assert message.get("energy_kwh") is None and message["import_wh"] is None, message
        elif "import_wh" in want:
            assert message["energy_kwh"] == pytest.approx(want["import_wh"] / 1000.0, abs=1e-4)
    assert_energy_never_decreases_unless_reset(rec.json("/zb/reading"))
    limit = case.expected.get("published_energy_kwh_max")
    if limit is not None:
        assert all(m.get("energy_kwh") is None or m["energy_kwh"] <= limit + 1e-9
                   for m in rec.json("/zb/reading"))


def _seed_power(store_path, meter_id: str, t_from: float, t_to: float, step_s: float = 1.0) -> None:
    store = ReadingStore(store_path, synchronous="normal")
    t, readings = t_from, []
    while t < t_to:
        readings.append(Reading(meter_id, t, t, 400.0 + 300.0 * math.sin(t / 30.0), source="history"))
        t += step_s
    store.commit_readings(readings)
    store.close()


async def test_a_meter_clock_jump_is_flagged_kept_out_of_the_windows_and_nilm_goes_on(
        tiny_bundle, mosquitto, tmp_path):
    """Two readings dated a day ahead: flagged, stored at the receive time, out of the NILM window;
    appliance detection goes on, also after a restart (the store's warm start skips them)."""
    schedule = {**FAST, "nilm_resolution_s": 1.0, "nilm_every_s": 1.0, "quality_every_s": 1.0}
    cfg = make_config(tmp_path / "state", mosquitto.port, [{"id": "m1", "kind": "virtual"}],
                      model={"bundle": str(tiny_bundle), "backend": "onnx", "precision": "int8"},
                      schedule=schedule)
    now = time.time()
    _seed_power(cfg.store_path, "m1", now - 180.0, now)
    day_s = 86_400.0

    def make(i: int, t: float) -> Reading:
        ts = t + day_s if i in (10, 11) else t  # the meter clock jumps a day ahead, twice
        return Reading("m1", ts, t, 400.0 + 300.0 * math.sin(t / 30.0))

    first = ScriptedSource("m1", make, count=10**6, interval_s=0.2)
    rec = Recorder(mosquitto.port, ["unimeter/gw1/m1/#"], client_id="guard-clock")

    def nilm_after(t_s: float) -> list[dict]:
        return [m for m in rec.json("/m1/appliances") if m["ts_s"] > t_s]

    try:
        async with running(Agent(cfg, {"m1": first})):
            await wait_until(lambda: first.sent > 12, 30)
            jumped_s = time.time()
            await wait_until(lambda: len(nilm_after(jumped_s)) >= 3, 30)  # detection goes on
            await wait_until(lambda: any(q["guard"]["clock_skewed"] == 2 for q in rec.json("/m1/quality")))
        restart_s = time.time()
        second = ScriptedSource("m1", make, count=0)  # after the restart: only what the store holds
        async with running(Agent(cfg, {"m1": second})):
            await wait_until(lambda: len(nilm_after(restart_s)) >= 2, 30)
    finally:
        rec.stop()
    for m in rec.json("/m1/appliances"):  # never a window a day ahead
        assert m["window_end_s"] < time.time() + 60, m
    skewed = [m for m in rec.json("/m1/reading") if m["flags"] & ReadingFlag.CLOCK_SKEW]
    assert {m["seq"] for m in skewed} and len({m["seq"] for m in skewed}) == 2
    assert all(abs(m["ts_s"] - m["received_s"]) < 1.0 for m in skewed)  # stored at the receive time
    quality = [q for q in rec.json("/m1/quality") if q["guard"]["clock_skewed"] == 2][-1]
    assert quality["clock_offset_s"] is not None and abs(quality["clock_offset_s"]) < 60
    store = ReadingStore(cfg.store_path)
    kept = [s.reading for s in store.readings_since("m1", 0) if s.reading.flags & ReadingFlag.CLOCK_SKEW]
    store.close()
    assert len(kept) == 2 and all(r.extra["meter_ts_s"] - r.received_s == pytest.approx(day_s, abs=1.0)
                                  for r in kept)


@pytest.mark.parametrize(("limits", "key", "message"), [
    ({"main_fuse_a": -25}, "meters[0].limits.main_fuse_a", "must be a number > 0 (A), got -25"),
    ({"phases": 4}, "meters[0].limits.phases", "must be 1, 2 or 3, got 4"),
    ({"export": "sometimes"}, "meters[0].limits.export", "must be true or false"),
    ({"counter_confirm_readings": 0}, "meters[0].limits.counter_confirm_readings", "1..100"),
    ({"fuse": 25}, "meters[0].limits.fuse", "unknown key (known: clock_max_ahead_s"),
])
def test_bad_limits_are_refused_naming_the_key(limits, key, message):
    with pytest.raises(ConfigError) as err:
        parse_config({"meters": [{"id": "m1", "kind": "dsmr", "options": {"port": "/dev/null"},
                                  "limits": limits}]})
    assert err.value.key == key and message in str(err.value)


def test_check_config_prints_the_limits_in_force(tmp_path, capsys):
    toml = tmp_path / "agent.toml"
    toml.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n[[meters]]\nid = "p1"\nkind = "dsmr"\n'
                    '[meters.options]\nport = "/dev/null"\n[meters.limits]\nphases = 1\n'
                    'main_fuse_a = 35\nexport = false\n[[meters]]\nid = "sdm"\nkind = "modbus"\n'
                    '[meters.options]\nport = "/dev/null"\nmodel = "sdm120"\n')
    assert main(["check-config", "--config", str(toml)]) == 0
    err = capsys.readouterr().err
    assert "meter p1 (dsmr): |power| <= 12075 W (1 x 230 V x 35 A x 1.5), import only" in err
    assert "meter sdm (modbus): |power| <= 15525 W (1 x 230 V x 45 A x 1.5)" in err
    toml.write_text(toml.read_text().replace("main_fuse_a = 35", "main_fuse_a = 0"))
    assert main(["check-config", "--config", str(toml)]) == 2
    assert "meters[0].limits.main_fuse_a: must be a number > 0 (A), got 0" in capsys.readouterr().err
