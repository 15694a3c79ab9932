"""Meter state: the resamplers' resolutions (model, defaults, [schedule]) and their warm start
from a real SQLite store."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from edge.agent.config import ScheduleConfig
from edge.agent.meter_state import (
    DEFAULT_NILM,
    DEFAULT_PROFILE,
    MeterState,
    model_resolutions,
    warm_meter_states,
)
from edge.agent.resample import Resampler
from edge.agent.store import ReadingStore
from firmware_bridge.reading import Reading, ReadingFlag


def test_resolutions_without_a_model_are_the_defaults_and_the_schedule_overrides_them():
    assert model_resolutions(None, ScheduleConfig()) == (DEFAULT_PROFILE, DEFAULT_NILM)
    prof, nilm = model_resolutions(None, ScheduleConfig(profile_resolution_s=900.0, nilm_resolution_s=1.0))
    assert prof == (900.0, DEFAULT_PROFILE[1]) and nilm == (1.0, DEFAULT_NILM[1])


async def test_meter_states_start_warm_from_the_store(tmp_path):
    store = ReadingStore(tmp_path / "agent.sqlite")
    now_s = time.time()
    t0 = (now_s // 10) * 10 - 100  # ten closed 10 s bins
    store.commit_readings([Reading("m1", t0 + i, t0 + i, 100.0 + i, import_wh=1000.0 + i) for i in range(100)])
    resolutions = ((1800.0, 48), (10.0, 16))

    async def db(fn, *args):
        await asyncio.sleep(0)
        return fn(*args)

    states = await warm_meter_states(db, store, ["m1", "m2"], {"m1": "Kitchen"}, resolutions,
                                     lambda meter_id, res: None, now_s)
    m1, m2 = states["m1"], states["m2"]
    assert (m1.name, m1.last_seq, m1.last_ts_s) == ("Kitchen", 100, t0 + 99)
    _, window, _ = m1.nilm.window(16)
    seen = window[np.isfinite(window)]
    assert len(seen) == 9 and np.allclose(seen, [104.5 + 10 * k for k in range(9)])
    assert (m2.name, m2.last_seq, m2.last_ts_s) == ("", 0, 0.0)
    assert not np.isfinite(m2.nilm.window(16)[1]).any()
    store.close()


def test_guard_flags_become_fault_events_in_their_window_bins():
    st = MeterState("m", "m", Resampler(1800.0, 96), Resampler(10.0, 360))
    st.note_flags(1000.0, int(ReadingFlag.COUNTER_RESET | ReadingFlag.SIMULATED))
    st.note_flags(5000.0, int(ReadingFlag.CLOCK_SKEW | ReadingFlag.CLOCK_FALLBACK))
    st.note_flags(6000.0, int(ReadingFlag.DUPLICATE))  # not a fault the anomaly message names
    masks = st.event_masks(0.0, 1800.0, 4)
    assert sorted(masks) == ["clock_jump", "counter_reset"]
    assert masks["counter_reset"].tolist() == [True, False, False, False]
    assert masks["clock_jump"].tolist() == [False, False, True, False]
    assert st.event_masks(7200.0, 1800.0, 4) == {}  # outside the window


def test_a_forward_jump_of_the_meter_clock_is_an_event_and_late_delivery_is_not():
    st = MeterState("m", "m", Resampler(1800.0, 96), Resampler(10.0, 360))
    for t in range(0, 600, 10):  # a meter clock 2 s ahead of the gateway
        st.note_flags(t + 2.0, 0, t)
    for t in range(600, 700, 10):  # a serial stall: 90 s of telegrams arrive late, then catch up
        st.note_flags(t + 2.0, 0, t + 90.0)
    st.note_flags(710.0, 0, 708.0)
    assert list(st.fault_events) == []
    st.note_flags(720.0 + 300.0, 0, 718.0)  # the meter clock steps 5 min forward
    st.note_flags(730.0 + 300.0, 0, 728.0)  # ... and stays there: one event
    st.note_flags(740.0 + 900.0, int(ReadingFlag.CLOCK_FALLBACK), 738.0)  # no meter clock: not judged
    assert list(st.fault_events) == [(1020.0, "clock_jump")]
