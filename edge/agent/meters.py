"""The agent's meters: one source per ``[[meters]]`` entry, for every kind (real and virtual).

``build_sources(cfg)`` is the factory the agent starts with. Real meters (``dsmr``, ``modbus``,
``zigbee``) go straight to ``firmware_bridge.sources.build_source``. Virtual meters (demo, tests,
benchmark) need a power source, built here:

``virtual``         an in-process meter: a ``Reading`` every ``interval_s`` from a power source.
``virtual-dsmr``    a virtual DSMR P1 meter writing telegrams into a pty, read by the real DsmrSource.
``virtual-modbus``  a virtual Modbus meter on a pty bridge, read by the real Modbus client.
``virtual-zigbee``  a virtual ZigBee metering device on zigpy's virtual radio, read by the real source.

The earlier spellings ``sim``, ``sim-dsmr``, ``sim-modbus``, ``sim-zigbee`` are accepted as
aliases. For the bridge's virtual kinds this module only builds the ``power_source`` callable and
passes it with the remaining options to ``firmware_bridge.sources.build_source``.

The power source is ``edge.sim.stream.HouseholdPowerSource`` (the household simulator, option
``profile = "household"``, the default) or a plain daily sine (``profile = "sine"``, for the
benchmark, where simulator cost would be measured instead of the agent's). Attacks from
``edge.sim.inject`` are applied with the ``attack`` option, simulated cable drops with ``outages`` (a list of ``[start_s, end_s]`` UTC
windows in which the meter's readings do not reach the agent: how a pulled P1 cable or a ZigBee
meter out of range looks to it) or ``outages_after_start`` (the same, in seconds after the agent
starts reading the meter, however long its start-up took). The bridge never imports edge: the wiring is here.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import numpy as np

from edge.agent.config import AgentConfig, MeterConfig
from edge.errors import AgentError
from edge.sim import inject
from edge.sim.household import HouseholdConfig
from edge.sim.stream import HouseholdPowerSource
from firmware_bridge.errors import BridgeError
from firmware_bridge.reading import Reading, ReadingFlag
from firmware_bridge.sources import VIRTUAL_KINDS, build_source, canonical_kind

PowerSource = Callable[[float], Mapping[str, float]]
IN_PROCESS_KIND = "virtual"
IN_PROCESS_ALIASES = ("sim",)  # the earlier name of the in-process kind


class SourceBuildError(AgentError, ValueError):
    """A meter's kind/options cannot make a source; names the meter."""


def sine_power_source(base_w: float = 400.0, amplitude_w: float = 300.0, seed: int = 0) -> PowerSource:
    """A daily sine with a per-meter phase: cheap and deterministic."""
    phase = (seed * 0.61803) % 1.0 * 2 * math.pi

    def power(ts_s: float) -> dict[str, float]:
        return {"power_w": base_w + amplitude_w * math.sin(2 * math.pi * ts_s / 86400.0 + phase)}

    return power


def household_power_source(seed: int, start_s: float, options: Mapping[str, Any]) -> PowerSource:
    """The household simulator as a live meter; ``options.household`` may hold a HouseholdConfig dict."""
    household = options.get("household")
    if household:
        config = HouseholdConfig.from_dict(dict(household))
    else:
        config = HouseholdConfig.random(np.random.default_rng(seed), household_id=f"h{seed:05d}")
    # start a day early so readings (and history back-fills) just before start_s are answerable
    return HouseholdPowerSource(config, seed=seed, start_s=start_s - 86400.0)


def attack_power_source(source: PowerSource, kind: str, start_s: float, end_s: float, lam: float,
                        step_s: float = 1.0) -> PowerSource:
    """False-data injection on a live meter with the templates of ``edge.sim.inject`` (Cui et al.).

    Sample index t of the formulas is ``(ts_s - start_s) // step_s``; the template is evaluated on
    the window with the live value at t, so p'(t) follows the paper's formula for that sample.
    Only ``power_w`` is manipulated (the attacker edits the reported load), counters are not.
    """
    if kind not in inject.WINDOW_TEMPLATES:
        raise SourceBuildError(f"attack kind must be one of {tuple(inject.WINDOW_TEMPLATES)}, got {kind!r}")
    if end_s <= start_s or step_s <= 0:
        raise SourceBuildError("attack needs start_s < end_s and step_s > 0")
    template = inject.WINDOW_TEMPLATES[kind]
    n = int(math.ceil((end_s - start_s) / step_s))

    def attacked(ts_s: float) -> dict[str, float]:
        values = dict(source(ts_s))
        if start_s <= ts_s < end_s and "power_w" in values:
            t = min(int((ts_s - start_s) // step_s), n - 1)
            values["power_w"] = float(template(np.full(n, values["power_w"]), 0, n - 1, lam).values[t])
        return values

    return attacked


def stable_seed(meter_id: str) -> int:
    """A seed in 0..9999 from the meter id, the same in every process and on every restart
    (CRC-32, not Python's salted ``hash``), so a virtual meter shows the same household."""
    return zlib.crc32(meter_id.encode("utf-8")) % 10_000


def make_power_source(meter: MeterConfig) -> PowerSource:
    opts = meter.options
    seed = int(opts.get("seed", stable_seed(meter.id)))
    profile = opts.get("profile", "household")
    if profile == "sine":
        source = sine_power_source(float(opts.get("base_w", 400.0)), float(opts.get("amplitude_w", 300.0)), seed)
    elif profile == "household":
        source = household_power_source(seed, float(opts.get("start_s", time.time())), opts)
    else:
        raise SourceBuildError(f"meter {meter.id!r}: options.profile must be 'household' or 'sine', got {profile!r}")
    source(time.time())  # simulate today now, not in the event loop when the first reading is due
    attack = opts.get("attack")
    if attack:
        source = attack_power_source(source, **dict(attack))
    return source


class InProcessMeter:
    """In-process virtual meter: one Reading per ``interval_s`` (wall clock), SIMULATED flag."""
    kind = IN_PROCESS_KIND

    def __init__(self, meter_id: str, power_source: PowerSource, interval_s: float = 1.0,
                 time_fn: Callable[[], float] = time.time):
        if interval_s <= 0:
            raise SourceBuildError(f"meter {meter_id!r}: options.interval_s must be > 0")
        self.meter_id, self.power_source, self.interval_s, self.time_fn = meter_id, power_source, interval_s, time_fn

    async def readings(self) -> AsyncIterator[Reading]:
        next_s = self.time_fn()
        while True:
            now_s = self.time_fn()
            v = self.power_source(now_s)
            yield Reading(self.meter_id, now_s, now_s, float(v.get("power_w", 0.0)),
                          reactive_var=v.get("reactive_var"), import_wh=v.get("import_wh"),
                          export_wh=v.get("export_wh"), voltage_v=v.get("voltage_v"),
                          current_a=v.get("current_a"), source=IN_PROCESS_KIND, flags=ReadingFlag.SIMULATED)
            next_s += self.interval_s
            await asyncio.sleep(max(0.0, next_s - self.time_fn()))


class OutageSource:
    """Wraps a source: readings received inside an outage window are dropped (a cable drop).

    ``windows`` are UTC epoch seconds; ``after_start`` are seconds after ``readings()`` is first
    iterated (the agent starting to read the meter), made absolute then."""
    def __init__(self, source: Any, windows: list[tuple[float, float]],
                 time_fn: Callable[[], float] = time.time, after_start: list[tuple[float, float]] = ()):
        self.source, self.windows, self.time_fn = source, list(windows), time_fn
        self.after_start = list(after_start)
        self.kind = getattr(source, "kind", "")

    def in_outage(self, now_s: float) -> bool:
        return any(a <= now_s < b for a, b in self.windows)

    async def readings(self) -> AsyncIterator[Reading]:
        t0, relative, self.after_start = self.time_fn(), self.after_start, []
        self.windows += [(t0 + a, t0 + b) for a, b in relative]
        async for r in self.source.readings():
            if not self.in_outage(self.time_fn()):
                yield r

    def __getattr__(self, name: str) -> Any:  # close(), stats ... of the wrapped source
        return getattr(self.source, name)


def _outage_windows(meter: MeterConfig, key: str = "outages") -> list[tuple[float, float]]:
    raw = meter.options.get(key, [])
    try:
        windows = [(float(a), float(b)) for a, b in raw]
    except (TypeError, ValueError) as e:
        raise SourceBuildError(f"meter {meter.id!r}: options.{key} must be [[start_s, end_s], ...], "
                               f"got {raw!r}") from e
    if any(b <= a for a, b in windows):
        raise SourceBuildError(f"meter {meter.id!r}: every outage needs start_s < end_s, got {raw!r}")
    return windows


def meter_kind(kind: str) -> str:
    """The one name of a configured meter kind (aliases such as ``sim`` or ``sim_dsmr`` resolved)."""
    kind = canonical_kind(kind)
    return IN_PROCESS_KIND if kind in IN_PROCESS_ALIASES else kind


def build_sources(cfg: AgentConfig) -> dict[str, Any]:
    """One source per configured meter; raises SourceBuildError naming the meter on bad options."""
    sources: dict[str, Any] = {}
    for i, m in enumerate(cfg.meters):
        opts = {k: v for k, v in m.options.items()
                if k not in ("profile", "seed", "base_w", "amplitude_w", "start_s", "attack", "household",
                             "energy", "outages", "outages_after_start")}
        kind = meter_kind(m.kind)
        try:
            if kind == IN_PROCESS_KIND:
                sources[m.id] = InProcessMeter(m.id, make_power_source(m), float(opts.get("interval_s", 1.0)))
            else:
                if kind in VIRTUAL_KINDS:
                    opts["power_source"] = make_power_source(m)
                sources[m.id] = build_source(kind, meter_id=m.id, **opts)
            windows, after_start = _outage_windows(m), _outage_windows(m, "outages_after_start")
            if windows or after_start:
                sources[m.id] = OutageSource(sources[m.id], windows, after_start=after_start)
        except SourceBuildError:
            raise
        except (ImportError, TypeError, ValueError, KeyError, BridgeError) as e:
            raise SourceBuildError(f"meters[{i}] ({m.id!r}, kind {m.kind!r}): {e}") from e
    return sources

