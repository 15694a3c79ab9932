"""The agent's meter factory: one name per kind (earlier names still accepted) and virtual meters
that show the same household in every process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edge.agent.config import MeterConfig
from edge.agent.meters import (
    InProcessMeter,
    SourceBuildError,
    build_sources,
    meter_kind,
    stable_seed,
)

CODE = ("from edge.agent.config import MeterConfig; from edge.agent.meters import make_power_source, stable_seed;"
        "m = MeterConfig(id='house-7', kind='virtual', options={'profile': 'sine', 'start_s': 0});"
        "print(stable_seed(m.id), make_power_source(m)(1.7e9)['power_w'])")


def test_default_seed_is_the_same_in_every_process():
    """Python's ``hash`` of a string changes with PYTHONHASHSEED (every restart); the seed must not."""
    out = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env,
                                timeout=120, check=True)
        out.add(result.stdout.strip())
    assert len(out) == 1
    assert stable_seed("house-7") == int(out.pop().split()[0]) and 0 <= stable_seed("house-7") < 10_000


@pytest.mark.parametrize("written,kind", [("sim", "virtual"), ("virtual", "virtual"), ("sim_dsmr", "virtual-dsmr"),
                                          ("sim-zigbee", "virtual-zigbee"), ("dsmr", "dsmr")])
def test_kinds_have_one_name(written, kind):
    assert meter_kind(written) == kind


def test_the_earlier_in_process_name_builds_the_same_meter():
    class Cfg:
        meters = [MeterConfig(id="a", kind="sim", options={"profile": "sine"}),
                  MeterConfig(id="b", kind="virtual", options={"profile": "sine"})]

    sources = build_sources(Cfg())
    assert all(isinstance(s, InProcessMeter) and s.kind == "virtual" for s in sources.values())


def test_an_unknown_attack_kind_names_the_kinds():
    class Cfg:
        meters = [MeterConfig(id="a", kind="virtual", options={
            "profile": "sine", "attack": {"kind": "ramping_i", "start_s": 0, "end_s": 10, "lam": 0.1}})]

    with pytest.raises(SourceBuildError, match="ramp_i"):
        build_sources(Cfg())


async def test_an_outage_after_start_counts_from_when_the_meter_is_first_read():
    """``outages_after_start``: seconds after the agent starts reading, however late that is."""
    from edge.agent.meters import OutageSource
    from firmware_bridge.reading import Reading

    now = [5000.0]  # a clock the fake meter moves on by 1 s per reading

    class Meter:
        async def readings(self):
            for _ in range(10):
                now[0] += 1.0
                yield Reading("o", now[0], now[0], 1.0)

    source = OutageSource(Meter(), [], time_fn=lambda: now[0], after_start=[(3.0, 6.0)])
    now[0] = 9000.0  # the agent starts reading long after the source was built
    got = [r.ts_s - 9000.0 async for r in source.readings()]
    assert got == [1.0, 2.0, 6.0, 7.0, 8.0, 9.0, 10.0]  # 3, 4, 5 s after the start are cut off


def test_outages_after_start_is_built_and_a_bad_one_named():
    class Cfg:
        meters = [MeterConfig(id="a", kind="virtual", options={
            "profile": "sine", "outages_after_start": [[20, 50]]})]

    source = build_sources(Cfg())["a"]
    assert source.after_start == [(20.0, 50.0)] and source.windows == []

    class Bad:
        meters = [MeterConfig(id="a", kind="virtual", options={"profile": "sine", "outages_after_start": [[50]]})]

    with pytest.raises(SourceBuildError, match="outages_after_start"):
        build_sources(Bad())
