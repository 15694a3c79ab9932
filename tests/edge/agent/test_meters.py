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
