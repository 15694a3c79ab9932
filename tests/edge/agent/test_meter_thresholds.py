"""Each meter's own anomaly threshold (edge.agent.meter_thresholds): the bundle's until the meter has
its N days of scores, then refitted from them; reset by a model change. Explicit times (UTC day
numbers), never the wall clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.agent.inference import AnomalyThreshold, LoadedModel
from edge.agent.meter_thresholds import DAY_S, MeterThresholds

BUNDLE = AnomalyThreshold(window_logit=1.0, point_logit=2.0, source="bundle, <= 1 false alarms/month",
                          target_per_month=1.0, recalibrate_after_days=5)
DAY0 = 20000  # a UTC day number (2024-10-04)


def _model(fingerprint: str = "a") -> LoadedModel:
    """A loaded model's manifest side (no runtime: the thresholds never run it)."""
    return LoadedModel(runtime=None, version="v", path=Path("bundle"), fingerprint=fingerprint, tasks={},
                       appliances=(), anomaly_threshold=BUNDLE)


def _days_of_scores(th: MeterThresholds, model: LoadedModel, days: int, level: float, seed: int = 0,
                    meter: str = "m1") -> None:
    rng = np.random.default_rng(seed)
    for d in range(days):
        for k in range(48):  # a window every half hour
            th.observe(meter, model, (DAY0 + d) * DAY_S + (k + 1) * 1800, level + rng.normal(0, 0.2))


def test_the_bundle_threshold_until_the_meter_has_its_days():
    th, model = MeterThresholds(), _model()
    _days_of_scores(th, model, 4, -3.0)
    cut = th.threshold("m1", model, (DAY0 + 4) * DAY_S + 60)
    assert cut == BUNDLE
    assert th.source("m1", model) == ("bundle, <= 1 false alarms/month (the meter's own after 5 days of its "
                                      "scores; 4 so far)")


def test_refitted_from_the_meters_own_scores_after_n_days():
    th, model = MeterThresholds(), _model()
    _days_of_scores(th, model, 20, 2.0)
    cut = th.threshold("m1", model, (DAY0 + 20) * DAY_S + 60)
    assert cut.window_logit > 2.0  # this household scores high: its cut follows
    assert cut.point_logit - cut.window_logit == BUNDLE.point_logit - BUNDLE.window_logit
    assert th.source("m1", model) == "meter history (20 days), <= 1 false alarms/month"
    _days_of_scores(th, model, 20, -3.0, meter="m3")
    calm = th.threshold("m3", model, (DAY0 + 20) * DAY_S + 60)
    assert calm.window_logit == BUNDLE.window_logit  # one that scores low keeps the bundle's as its floor
    assert "stays the floor" in th.source("m3", model)
    other = th.threshold("m2", model, (DAY0 + 20) * DAY_S + 60)
    assert other == BUNDLE  # per meter


def test_a_model_change_starts_the_count_again():
    th = MeterThresholds()
    _days_of_scores(th, _model("a"), 20, -3.0)
    assert th.threshold("m1", _model("b"), (DAY0 + 20) * DAY_S + 60) == BUNDLE
    assert "0 so far" in th.source("m1", _model("b"))
