"""The profile history in a real SQLite file: context layout, partial days, restarts, pruning."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from edge.agent.history import ProfileHistory

L, D = 48, 7


def _open(path) -> tuple[sqlite3.Connection, ProfileHistory]:
    db = sqlite3.connect(path, isolation_level=None)
    return db, ProfileHistory(db, 1800, L, D)


def test_context_is_the_days_before_the_window_at_the_same_times(tmp_path):
    db, h = _open(tmp_path / "s.db")
    series = np.arange(10 * L, dtype=float)  # bin k holds k
    h.record("m", 1000, series, np.ones(len(series), bool))
    start = 1000 + 8 * L + 5  # a window that starts mid-day
    ctx = h.context("m", start)
    assert ctx.days == D and ctx.complete
    for k in range(D):
        first = start - (D - k) * L
        np.testing.assert_array_equal(ctx.history_w[k], np.arange(first, first + L) - 1000)


def test_fewer_days_than_d_are_masked_not_invented(tmp_path):
    db, h = _open(tmp_path / "s.db")
    h.record("m", 0, np.full(2 * L, 300.0), np.ones(2 * L, bool))
    ctx = h.context("m", 2 * L)
    assert ctx.days == 2 and not ctx.complete
    np.testing.assert_array_equal(ctx.history_mask, [0, 0, 0, 0, 0, 1, 1])
    assert (ctx.history_w[:5] == 0).all() and (ctx.history_w[5:] == 300).all()


def test_partial_day_is_interpolated_or_dropped_by_coverage(tmp_path):
    db, h = _open(tmp_path / "s.db")
    day = np.linspace(100, 200, L)
    good = day.copy()
    good[10:20] = np.nan  # 79% covered: kept, gap interpolated
    bad = day.copy()
    bad[:30] = np.nan  # 38% covered: masked
    h.record("m", 0, bad, np.isfinite(bad))
    h.record("m", L, good, np.isfinite(good))
    ctx = h.context("m", 2 * L)
    assert ctx.history_mask[-2:].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(ctx.history_w[-1], day, rtol=1e-6)


def test_measured_value_wins_over_a_filled_one(tmp_path):
    db, h = _open(tmp_path / "s.db")
    h.record("m", 0, np.array([5.0, 6.0]), np.array([True, False]))
    h.record("m", 0, np.array([50.0, 60.0]), np.array([False, True]))  # filled 50 must not replace 5
    assert [(k, w, m) for k, w, m in h.bins("m", 0)] == [(0, 5.0, 1), (1, 60.0, 1)]


def test_dropped_bins_are_interpolated_in_the_context(tmp_path):
    """Bins a gateway fault fired on leave the history; the day is still there, the gap filled
    linearly from its neighbours."""
    db, h = _open(tmp_path / "s.db")
    h.record("m", 0, np.arange(D * L, dtype=float), np.ones(D * L, bool))
    assert h.drop("m", [10, 11, 12]) == 3 and h.drop("other", [10]) == 0
    assert [k for k, _, _ in h.bins("m", 9)][:2] == [9, 13]
    ctx = h.context("m", D * L)
    assert ctx.complete and ctx.history_w[0, 11] == pytest.approx(11.0)


def test_history_survives_a_restart_and_is_per_meter(tmp_path):
    db, h = _open(tmp_path / "s.db")
    h.record("a", 0, np.full(D * L, 100.0), np.ones(D * L, bool))
    h.record("b", 0, np.full(D * L, 900.0), np.ones(D * L, bool))
    db.close()
    db2, h2 = _open(tmp_path / "s.db")
    assert h2.context("a", D * L).days == D
    assert h2.context("b", D * L).history_w.mean() == pytest.approx(900.0)
    assert db2.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_old_bins_are_pruned_to_d_plus_two_days(tmp_path):
    db, h = _open(tmp_path / "s.db")
    n = 20 * L
    h.record("m", 0, np.ones(n), np.ones(n, bool))
    kept = h.bins("m", 0)
    assert kept[0][0] == (n - 1) - (D + 2) * L
    assert len(kept) == (D + 2) * L + 1


def test_bad_arguments_are_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    with pytest.raises(ValueError, match="steps_per_day"):
        ProfileHistory(db, 1800, 0, 7)
    h = ProfileHistory(db, 1800, L, D)
    with pytest.raises(ValueError, match="equal 1-D"):
        h.record("m", 0, np.ones(3), np.ones(4, bool))


def test_backfill_takes_the_stored_readings_bins(tmp_path):
    db, h = _open(tmp_path / "s.db")
    bins = [(100 + i, 2 * 300.0, 2) for i in range(3 * L) if i != 5]  # (k, sum of power_w, count)
    assert h.backfill("m", bins) == 3 * L - 1
    assert h.bins("m", 100)[0] == (100, 300.0, 1) and (105, 300.0, 1) not in h.bins("m", 100)
    assert h.backfill("m", []) == 0


# --- the agent: a context bundle, real SQLite, real Mosquitto, a restart ---------------------------


@pytest.fixture(scope="module")
def context_bundle(tmp_path_factory):
    from tests.trainer.context_data import context_bundle as build

    # anomaly alone, int8 in the gather form (one ONNX export): both tests here read only anomaly
    # results from the int8 ONNX model, whichever form its experts take
    return build(tmp_path_factory.mktemp("context_bundle"), tasks=("anomaly",), include_tflite=False,
                 fp32_moe_op=False, int8_moe_op=False)


def _seed_readings(store_path, meter_id: str, now_s: float, days: float, stuck_s: float = 0.0) -> None:
    """``days`` of 5-min readings of a daily sine before ``now_s``, as an earlier run stored them;
    the last ``stuck_s`` of them repeat one value (a frozen register)."""
    from edge.agent.meters import sine_power_source
    from edge.agent.store import ReadingStore
    from firmware_bridge.reading import Reading

    power = sine_power_source(seed=3)
    ts = np.arange(now_s - days * 86400, now_s - 1, 300.0)
    frozen_w = power(float(now_s - stuck_s))["power_w"]
    store = ReadingStore(store_path, synchronous="normal")
    store.commit_readings([Reading(meter_id, float(t), float(t),
                                   frozen_w if t >= now_s - stuck_s else power(float(t))["power_w"], source="history")
                           for t in ts])
    store.close()


async def _run_until_anomaly(cfg, port: int, client_id: str) -> dict:
    import asyncio

    from edge.agent.agent import Agent
    from edge.agent.meters import build_sources
    from tests.edge.agent.helpers import Recorder

    rec = Recorder(port, ["unimeter/#"], client_id=client_id)
    agent = Agent(cfg, build_sources(cfg))
    task = asyncio.create_task(agent.run())
    try:
        for _ in range(600):
            if rec.json("/m1/anomaly"):
                break
            await asyncio.sleep(0.1)
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)
        rec.stop()
    results = rec.json("/m1/anomaly")
    assert results, sorted(rec.topics())
    return results[-1]


async def test_agent_runs_the_context_model_with_history_from_sqlite_across_a_restart(
        context_bundle, mosquitto, tmp_path):
    """Three days of stored readings: the model (D = 7) gets the two complete days before its
    window and says so. The history is then in the agent's SQLite file: after the readings older
    than the window are pruned, a restarted agent still has both days."""
    import time

    from tests.edge.agent.helpers import make_config

    now_s = time.time()
    meters = [{"id": "m1", "kind": "virtual", "options": {"profile": "sine", "seed": 3, "interval_s": 1.0}}]
    cfg = make_config(tmp_path / "state", mosquitto.port, meters,
                      model={"bundle": str(context_bundle), "backend": "onnx", "precision": "int8"},
                      schedule={"profile_every_s": 1.0, "status_every_s": 5.0})
    _seed_readings(cfg.store_path, "m1", now_s, days=3.0)

    first = await _run_until_anomaly(cfg, mosquitto.port, "history-1")
    assert first["history_days"] == 2 and first["history_days_model"] == D, first
    assert isinstance(first["anomaly"], bool) and 0.0 <= first["score"] <= 1.0

    db = sqlite3.connect(cfg.store_path)
    kept = db.execute("SELECT COUNT(*), MIN(k) FROM profile_bins WHERE meter_id='m1'").fetchone()
    assert kept[0] >= 2 * L and kept[1] * 1800 < now_s - 2 * 86400
    db.execute("DELETE FROM readings WHERE ts_s < ?", (now_s - 86400,))
    db.commit()
    db.close()

    second = await _run_until_anomaly(cfg, mosquitto.port, "history-2")
    assert second["history_days"] == 2, second
    assert second["window_end_s"] >= first["window_end_s"]


async def test_a_stuck_meter_gets_the_fault_published(context_bundle, mosquitto, tmp_path):
    """Five days of a meter whose readings never repeat, then 4 h of one frozen value: the agent's
    anomaly message is on and names the fault (``stuck``, with the bins where it fired), whatever
    the model's own score; the frozen bins are kept out of the meter's history."""
    import time

    from tests.edge.agent.helpers import make_config

    now_s = time.time()
    meters = [{"id": "m1", "kind": "virtual", "options": {"profile": "sine", "seed": 3, "interval_s": 1.0}}]
    cfg = make_config(tmp_path / "state", mosquitto.port, meters,
                      model={"bundle": str(context_bundle), "backend": "onnx", "precision": "int8"},
                      schedule={"profile_every_s": 1.0, "status_every_s": 5.0})
    _seed_readings(cfg.store_path, "m1", now_s, days=5.0, stuck_s=4 * 3600.0)

    msg = await _run_until_anomaly(cfg, mosquitto.port, "stuck-1")
    assert msg["anomaly"] is True and "stuck" in msg["anomaly_kinds"], msg
    assert msg["fault_rules"] == "judged" and msg["model_anomaly"] is ("model" in msg["anomaly_kinds"])
    stuck = msg["faults"]["stuck"]
    assert len(stuck) >= 6 and stuck[-1] >= now_s - 3 * 3600, stuck  # most of the last 4 h
    assert set(stuck) <= set(msg["anomalous_points_ts_s"])
    db = sqlite3.connect(cfg.store_path)
    kept = {k for (k,) in db.execute("SELECT k FROM profile_bins WHERE meter_id='m1'")}
    db.close()
    assert not {round(ts / 1800) for ts in stuck} & kept  # the frozen bins are no household's normal


def test_a_replay_runs_the_agents_path_with_the_history_it_builds_itself(context_bundle):
    """``edge.agent.replay``: after the backfill every window sees its D days; the published flags
    are the window logits of the very same inputs (the series' own days before each window, built
    independently by ``history_context``) cut at the bundle's threshold; a day-long flag run is one
    alarm."""
    from edge.agent.config import ScheduleConfig
    from edge.agent.inference import AnomalyThreshold, ModelHost, open_model
    from edge.agent.replay import replay_meter
    from edge.bundle import load_bundle
    from edge.data.userdata import history_context
    from edge.runtime import InferenceRuntime

    rng = np.random.default_rng(5)
    days = D + 3
    t = np.arange(days * L)
    bins = (400 + 300 * np.sin(2 * np.pi * t / L) ** 2 + rng.gamma(2.0, 40.0, len(t))).astype(np.float64)
    first = 20_000 * L
    host = ModelHost(opener=lambda p: open_model(p, "onnx", "int8", 1))
    assert host.try_load(context_bundle)
    eval_from = (D + 1) * L - 1
    r = replay_meter(host, bins, first, eval_from, every=5)
    ends = np.arange(eval_from, len(bins), 5)
    assert len(r.flag) == len(ends) and (r.history_days == D).all()
    np.testing.assert_allclose(r.window_end_s, (first + ends + 1) * 1800.0)
    starts = ends - L + 1
    hist, mask = history_context(bins, starts, L, D)
    windows = bins[starts[:, None] + np.arange(L)].astype(np.float32)
    runtime = InferenceRuntime(load_bundle(context_bundle), backend="onnx", precision="int8", threads=1)
    out = runtime.run("anomaly", {"load_w": windows, "observed": np.ones_like(windows), "history_w": hist,
                                  "history_mask": mask})
    cut = (host.current.anomaly_threshold or AnomalyThreshold()).window_logit
    np.testing.assert_array_equal(r.window_flag, out["window_logit"].ravel() > cut)
    # the published flag is held: up while a flagged window ended less than the release time before
    release_s = ScheduleConfig().alarm_release_after_s
    age_s = r.window_end_s[:, None] - r.window_end_s[None, :]
    held = ((age_s >= 0) & (age_s < release_s) & r.window_flag[None, :]).any(axis=1)
    np.testing.assert_array_equal(r.flag, held)
    assert r.alarms == int(r.flag[0]) + int(np.sum(r.flag[1:] & ~r.flag[:-1]))
