"""Each meter's anomaly scores in the agent's SQLite store (edge.agent.anomaly_scores): a restart keeps
a meter's days and its refitted threshold, a different anomaly model drops them and says so. Real
SQLite, the real tiny bundle and real agent restarts; explicit UTC day numbers, never the wall clock
(except the agent's own rounds, whose day is today's)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from edge.agent.agent import Agent
from edge.agent.anomaly_scores import load_scores, save_scores, stored_days
from edge.agent.inference import AnomalyThreshold, LoadedModel, open_model
from edge.agent.meter_thresholds import DAY_S, MeterThresholds, model_key
from edge.agent.meters import build_sources
from edge.agent.store import ReadingStore
from tests.edge.agent.helpers import make_config, until

BUNDLE = AnomalyThreshold(window_logit=1.0, point_logit=2.0, source="bundle, <= 1 false alarms/month",
                          target_per_month=1.0, recalibrate_after_days=5)
DAY0 = 20000  # a UTC day number (2024-10-04)


def _model(anomaly_id: str) -> LoadedModel:
    return LoadedModel(runtime=None, version="v", path=Path("bundle"), fingerprint="f", tasks={},
                       appliances=(), anomaly_threshold=BUNDLE, anomaly_model_id=anomaly_id)


def _observe_days(th: MeterThresholds, model: LoadedModel, meter: str, days: range, level: float) -> None:
    rng = np.random.default_rng(days.start)
    for d in days:
        for k in range(48):
            th.observe(meter, model, (DAY0 + d) * DAY_S + (k + 1) * 1800, level + rng.normal(0, 0.2))


def _save(th: MeterThresholds, store: ReadingStore) -> None:
    key, update = th.take_update()
    save_scores(store, key, update, th.keep_days)


def test_scores_and_the_refit_come_back_from_the_store(tmp_path):
    store, model = ReadingStore(tmp_path / "s.sqlite"), _model("a")
    th = MeterThresholds()
    # a household that scores above the bundle's cut: its own fit rules
    _observe_days(th, model, "m1", range(20), 2.0)
    cut = th.threshold("m1", model, (DAY0 + 20) * DAY_S + 60)
    _save(th, store)
    store.close()

    store = ReadingStore(tmp_path / "s.sqlite")  # a restart
    again = MeterThresholds()
    again.restore(model, load_scores(store, model_key(model)))
    assert again.threshold("m1", model, (DAY0 + 20) * DAY_S + 120) == cut
    assert again.source("m1", model) == "meter history (20 days), <= 1 false alarms/month"
    fit = store.db.execute("SELECT fitted_through_day, calibration FROM anomaly_threshold").fetchone()
    assert fit[0] == DAY0 + 20 and f'"threshold": {cut.window_logit}' in fit[1]
    windows = store.db.execute("SELECT SUM(windows) FROM anomaly_day_max").fetchone()[0]
    assert windows == 20 * 48
    store.close()


def test_a_fresh_store_file_gets_every_day_held(tmp_path):
    """After the store was started afresh (damage, deletion) or a save failed, the next save writes
    all days held, not only the round's."""
    th, model = MeterThresholds(), _model("a")
    _observe_days(th, model, "m1", range(6), -3.0)
    th.threshold("m1", model, (DAY0 + 6) * DAY_S)
    th.take_update()  # written to the store that was lost
    _observe_days(th, model, "m1", range(6, 7), -3.0)
    fresh = ReadingStore(tmp_path / "fresh.sqlite")
    key, update = th.take_update(everything=True)
    save_scores(fresh, key, update, th.keep_days)
    assert stored_days(fresh) == {"m1": 7}
    assert fresh.db.execute("SELECT fitted_through_day FROM anomaly_threshold").fetchone() == (DAY0 + 6,)
    fresh.close()


def test_a_meter_keeps_its_newest_days_only(tmp_path):
    store, model = ReadingStore(tmp_path / "s.sqlite"), _model("a")
    th = MeterThresholds()
    for chunk in (range(0, 40), range(40, 75)):  # saved after each stretch, as the rounds do
        _observe_days(th, model, "m1", chunk, -3.0)
        _save(th, store)
    days = [d for (d,) in store.db.execute("SELECT day FROM anomaly_day_max ORDER BY day")]
    assert len(days) == th.keep_days == 60 and days[-1] == DAY0 + 74
    store.close()


def test_another_anomaly_model_drops_the_scores_and_says_so(tmp_path):
    store = ReadingStore(tmp_path / "s.sqlite")
    th = MeterThresholds()
    _observe_days(th, _model("a"), "m1", range(9), -3.0)
    _save(th, store)
    new = _model("b")
    stored = load_scores(store, model_key(new))
    assert stored.dropped == {"m1": 9} and stored.days == {}
    assert stored_days(store) == {}  # deleted with the load, in its transaction
    th.restore(new, stored)
    assert th.threshold("m1", new, (DAY0 + 9) * DAY_S) == BUNDLE
    assert th.source("m1", new).endswith("0 so far; 9 days of scores of the previous anomaly model dropped: "
                                         "not comparable with the new model's)")
    store.close()


def _seed_scores(path: Path, key: str, meter: str, days: int, level: float) -> None:
    """``days`` complete UTC days of scores before today, written as a running agent writes them."""
    model = LoadedModel(runtime=None, version="v", path=Path("b"), fingerprint="", tasks={}, appliances=(),
                        anomaly_threshold=AnomalyThreshold(window_logit=1.0), anomaly_model_id=key)
    th = MeterThresholds()
    today = int(time.time() // DAY_S)
    rng = np.random.default_rng(days)
    for d in range(today - days, today):
        for k in range(48):
            th.observe(meter, model, d * DAY_S + (k + 1) * 1800, level + rng.normal(0, 0.2))
    store = ReadingStore(path, synchronous="normal")
    save_scores(store, key, th.take_update()[1], th.keep_days)
    store.close()


async def _run_agent(cfg) -> tuple[dict, str, str]:
    """Start the agent, wait for an anomaly result of both meters, stop it; (h1's anomaly body,
    h1's and h2's threshold source as the quality message gives them)."""
    agent = Agent(cfg, build_sources(cfg))
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 30)
        assert await until(lambda: all("anomaly" in agent.last_results.get(m, {}) for m in ("h1", "h2")))
        model = agent.host.current
        return (agent.last_results["h1"]["anomaly"], agent.rounds.thresholds.source("h1", model),
                agent.rounds.thresholds.source("h2", model))
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)


async def test_an_agent_restart_keeps_each_meters_days(tiny_bundle, tmp_path):
    meters = [{"id": m, "kind": "virtual", "options": {"profile": "sine", "interval_s": 0.1}}
              for m in ("h1", "h2")]
    cfg = make_config(tmp_path / "state", 1883, meters, mqtt={"enabled": False},
                      model={"bundle": str(tiny_bundle), "backend": "onnx", "precision": "int8"},
                      schedule={"profile_every_s": 0.5, "nilm_every_s": 60, "forecast_every_s": 3600,
                                "min_coverage": 0.0, "profile_resolution_s": 1.0})
    cfg.store_path.parent.mkdir(parents=True)
    key = model_key(open_model(tiny_bundle, backend="onnx", precision="int8", threads=1))
    # h1: 20 days under the bundle's anomaly model, scoring above any cut (its own fit rules)
    _seed_scores(cfg.store_path, key, "h1", 20, 30.0)
    _seed_scores(cfg.store_path, "an-older-model", "h2", 9, 0.0)  # h2: 9 days under another one

    body, h1, h2 = await _run_agent(cfg)
    assert body["threshold_source"] == "meter history (20 days)"
    assert h1 == "meter history (20 days), <= 1 false alarms/month"
    assert "9 days of scores of the previous anomaly model dropped: not comparable" in h2

    body, h1, h2 = await _run_agent(cfg)  # a restart: h1 keeps its fit, h2 the day it scored since
    assert body["threshold_source"] == "meter history (20 days)"
    assert h1 == "meter history (20 days), <= 1 false alarms/month"
    assert "1 so far)" in h2 and "dropped" not in h2
    store = ReadingStore(cfg.store_path)
    assert stored_days(store) == {"h1": 21, "h2": 1}  # today's scores of both runs kept
    assert store.db.execute("SELECT COUNT(DISTINCT model_id) FROM anomaly_day_max").fetchone() == (1,)
    store.close()
