"""The forecast of a past day beside what the meter measured, from a real gateway store seeded the
way `unimeter demo` seeds it, through the agent's forecast step on the session's tiny bundle."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge.agent.config import load_config
from edge.agent.inference import ModelHost, open_model
from edge.agent.store import ReadingStore
from export import demo_gateway as demo
from export.backtest import past_day_forecast


def test_the_last_whole_day_is_forecast_from_the_day_before_and_set_beside_its_readings(tiny_bundle: Path,
                                                                                          tmp_path: Path):
    now_s = time.time()
    history_s = demo.default_history_s(0)
    assert history_s >= 2 * 86400  # the forecast day and the day before it
    (tmp_path / "agent.toml").write_text(demo.agent_config_text(tmp_path, 1883, tiny_bundle, now_s, history_s))
    cfg = load_config(tmp_path / "agent.toml")
    cfg.store_path.parent.mkdir(parents=True, exist_ok=True)
    demo.seed_history(cfg, now_s, history_s)
    host = ModelHost(opener=lambda p: open_model(p, "onnx", "int8", 1))
    assert host.try_load(tiny_bundle)
    store = ReadingStore(cfg.store_path)
    try:
        past = past_day_forecast(host, store, "zb1", now_s)
        L = host.current.tasks["forecast"].length
        assert past.start_s == (int(now_s // 1800) - L) * 1800.0 and past.history_days == 0
        assert past.forecast_w.shape == past.actual_w.shape == (L,) and np.isfinite(past.forecast_w).all()
        first = int(past.start_s // 1800)
        means = {int(k): s / c for k, s, c in store.bins("zb1", 1800.0, past.start_s) if c}
        np.testing.assert_allclose(past.actual_w, [means[first + i] for i in range(L)])
        assert np.isfinite(past.mape_pct) and past.summary()["measured_bins"] == L
        assert past_day_forecast(host, store, "no-such-meter", now_s) is None  # nothing measured
    finally:
        store.close()

