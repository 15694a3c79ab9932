"""What the agent keeps per meter and for itself while it runs: resamplers, counters, latencies.

``MeterState`` holds one meter's resamplers (profile and NILM resolution), its NILM tracker and the
sequence/time of its last committed reading; ``Stats`` the agent's counters and recent latencies.
``model_resolutions`` picks the (resolution_s, L) of both resamplers from the live model and the
``[schedule]`` overrides; ``warm_meter_states`` builds them warm from the store after a (re)start,
a model swap or a store replacement.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.agent.appliances import MeterAppliances
from edge.agent.resample import Resampler
from edge.agent.store import ReadingStore, StoredReading
from firmware_bridge.reading import ReadingFlag

DEFAULT_PROFILE = (1800.0, 48)  # resolution_s, L when no model says otherwise
DEFAULT_NILM = (10.0, 256)


@dataclass
class MeterState:
    id: str
    name: str
    profile: Resampler
    nilm: Resampler
    appliances: MeterAppliances | None = None  # NILM uses, events and daily energy (model with nilm)
    received: int = 0  # since the last quality message
    flags_seen: int = 0
    last_seq: int = 0
    last_ts_s: float = 0.0
    last_received_s: float = 0.0
    # (ts_s, kind) of the reading guard's counter resets and clock jumps, newest last
    fault_events: deque = field(default_factory=lambda: deque(maxlen=FAULT_EVENTS_KEPT))
    clock_offset_s: float | None = None  # the meter clock's offset (ts_s - received_s), its recent top

    def note_flags(self, ts_s: float, flags: int, received_s: float | None = None) -> None:
        """Keep the fault a reading shows: its guard flags (``READING_FAULTS``), and a forward jump
        of the meter clock (``note_clock``) when ``received_s`` is given."""
        for flag, kind in READING_FAULTS:
            if flags & flag:
                self.fault_events.append((float(ts_s), kind))
        if received_s is not None and not flags & ReadingFlag.CLOCK_FALLBACK:
            self.note_clock(float(ts_s), float(received_s))

    def note_clock(self, ts_s: float, received_s: float) -> None:
        """A forward jump of the meter clock: its offset to the gateway's receive time rises more
        than ``CLOCK_JUMP_S`` above the highest offset since the last jump. Late delivery (a serial
        stall, a reconnect) only lowers the offset and a clock running backwards is flagged
        ``OUT_OF_ORDER`` by the source, so the top of the offset is the meter clock's own; the
        guard flags clocks beyond its limits (``CLOCK_SKEW``), this finds the jumps inside them."""
        offset_s = ts_s - received_s
        top = self.clock_offset_s
        if top is not None and offset_s > top + CLOCK_JUMP_S:
            self.fault_events.append((ts_s, "clock_jump"))
        if top is None or offset_s > top:
            self.clock_offset_s = offset_s

    def event_masks(self, start_s: float, resolution_s: float, n_bins: int) -> dict[str, np.ndarray]:
        """kind -> bool [n_bins]: the bins of the window from ``start_s`` holding such an event."""
        out: dict[str, np.ndarray] = {}
        for ts_s, kind in self.fault_events:
            i = int((ts_s - start_s) // resolution_s)
            if 0 <= i < n_bins:
                out.setdefault(kind, np.zeros(n_bins, bool))[i] = True
        return out


FAULT_EVENTS_KEPT = 1000
CLOCK_JUMP_S = 60.0  # a meter clock stepping this far forward at once jumped (NTP slews, drift is ppm)
# the reading guard's flags that are gateway faults of the anomaly message (firmware_bridge.guard):
# a confirmed counter reset or meter swap; a meter clock far off the gateway's or running backwards
READING_FAULTS = ((ReadingFlag.COUNTER_RESET, "counter_reset"), (ReadingFlag.CLOCK_SKEW, "clock_jump"),
                  (ReadingFlag.OUT_OF_ORDER, "clock_jump"))


@dataclass
class Stats:
    committed: int = 0
    published: int = 0
    latencies_s: list[float] = field(default_factory=list)  # reading received -> PUBACK, recent
    commit_latencies_s: list[float] = field(default_factory=list)  # reading received -> committed
    writer_tick_s: float = 0.0
    pump_tick_s: float = 0.0
    errors: int = 0
    last_error: str = ""
    last_error_s: float = 0.0
    started_s: float = field(default_factory=time.time)

    def note_error(self, message: str) -> None:
        self.errors += 1
        self.last_error, self.last_error_s = message, time.time()

    def note_latency(self, lat_s: float, keep: int = 20000) -> None:
        self.latencies_s.append(lat_s)
        if len(self.latencies_s) > keep:
            del self.latencies_s[: keep // 2]

    def note_commit(self, stored: list[StoredReading], keep: int = 20000) -> None:
        now_s = time.time()
        self.commit_latencies_s.extend(now_s - s.reading.received_s for s in stored[:: max(1, len(stored) // 20)])
        if len(self.commit_latencies_s) > keep:
            del self.commit_latencies_s[: keep // 2]


def model_resolutions(model: Any, schedule: Any) -> tuple[tuple[float, int], tuple[float, int]]:
    """((profile resolution_s, L), (NILM resolution_s, L_nilm)) of the live model (``None``: the
    defaults), with the resolutions ``[schedule]`` sets taking precedence."""
    prof, nilm = DEFAULT_PROFILE, DEFAULT_NILM
    if model is not None:
        t = model.tasks.get("anomaly") or model.tasks.get("imputation") or model.tasks.get("forecast")
        prof = (t.resolution_s, t.length) if t else prof
        n = model.tasks.get("nilm")
        nilm = (n.resolution_s, n.length) if n else nilm
    if schedule.profile_resolution_s:
        prof = (schedule.profile_resolution_s, prof[1])
    if schedule.nilm_resolution_s:
        nilm = (schedule.nilm_resolution_s, nilm[1])
    return prof, nilm


async def warm_meter_states(db: Callable[..., Any], store: ReadingStore, meter_ids: list[str],
                            names: dict[str, str], resolutions: tuple[tuple[float, int], tuple[float, int]],
                            appliances: Callable[[str, float], MeterAppliances | None],
                            now_s: float) -> dict[str, MeterState]:
    """Meter id -> its state, the resamplers at ``resolutions`` filled from the store's bins and
    counters (``db`` runs a store call on the store thread; ``appliances(meter_id, resolution_s)``
    gives the meter's NILM tracker or None)."""
    (p_res, p_len), (n_res, n_len) = resolutions
    known = {mid: (seq, ts, rx) for mid, seq, ts, rx in await db(store.meters)}
    states = {}
    for mid in meter_ids:
        st = MeterState(mid, names.get(mid, ""), Resampler(p_res, 2 * p_len + 2),
                        Resampler(n_res, n_len + 2), appliances(mid, n_res))
        seq, ts, rx = known.get(mid, (0, None, None))
        st.last_seq, st.last_ts_s, st.last_received_s = seq, ts or 0.0, rx or 0.0
        ref_s = max(now_s, st.last_ts_s)
        for k, s, c in await db(store.bins, mid, p_res, ref_s - (2 * p_len + 2) * p_res):
            st.profile.add_bin(int(k), s, c)
        for k, s, c in await db(store.bins, mid, n_res, ref_s - (n_len + 2) * n_res):
            st.nilm.add_bin(int(k), s, c)
        for res, rs in ((p_res, st.profile), (n_res, st.nilm)):
            for k, ts, wh in await db(store.counter_bins, mid, res, ref_s - rs.keep_bins * res):
                rs.add_counter(int(k), ts, wh)
        states[mid] = st
    return states
