"""The evaluation's context path (D = 7): windows carry the household's previous days from the
trainer's own context code, the week-reading baselines read them, and the unified model is a
teacher distilled into a student that is scored beside it (here in PyTorch; through the exported
int8 bundle in tests/bench/test_evaluate.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainer.baselines import ForecastBatch, ImputationBatch, SeasonalImputer, WeeklyNaive
from trainer.evaluation import data as D
from trainer.evaluation.config import HISTORY_DAYS, EvalConfig, EvaluationError
from trainer.evaluation.run import evaluate

L = 48


def _fleet(n_households: int = 2, n_days: int = 10) -> D.FleetProfiles:
    """A fleet whose every value names its household, day and slot: 1e4 h + 100 d + slot."""
    h, d, s = np.meshgrid(np.arange(n_households), np.arange(n_days), np.arange(L), indexing="ij")
    power = 1e4 * h + 100.0 * d + s
    return D.FleetProfiles(power, np.zeros_like(power), np.zeros((n_households, n_days), bool),
                           np.arange(n_days)[None, :].repeat(n_households, 0) * 86_400)


def test_window_context_is_the_days_before_each_window_of_its_own_household():
    fleet = _fleet()
    power = fleet.power_w.reshape(2, -1)
    hist, mask = D.window_context(power, np.array([1, 0]), np.array([8 * L, 3 * L]), 7)
    assert hist.shape == (2, 7, L) and mask.shape == (2, 7)
    assert np.array_equal(hist[0, -1], power[1, 7 * L:8 * L])  # the day just before, household 1
    assert np.array_equal(hist[0, 0], power[1, 1 * L:2 * L])  # a week before
    assert mask[0].all() and mask[1].tolist() == [0, 0, 0, 0, 1, 1, 1]  # before the series: masked
    assert (hist[1, :4] == 0).all()
    assert D.window_context(power, np.array([0]), np.array([L]), 0) == (None, None)


def test_each_task_batch_carries_the_context_of_its_own_window():
    fleet, cfg = _fleet(3, 12), EvalConfig.tiny(history_days=HISTORY_DAYS)
    rng = np.random.default_rng(0)
    fc = D.forecast_data(fleet, np.array([0, 2]), cfg, None, rng)
    # the model's window is the day before the origin; its context the 7 days before that window
    assert np.array_equal(fc.context_w[:, -1], fc.history_w[:, -2 * L:-L])
    imp = D.imputation_days(fleet, np.array([1, 2]), None, rng, HISTORY_DAYS)
    assert np.array_equal(imp.context_w[:, -1], imp.previous_w) and imp.context_mask.all()
    day = (imp.load_w[:, 0] % 1e4) // 100
    assert day.min() == HISTORY_DAYS  # every imputation day has its week
    an = D.anomaly_data(fleet, np.array([0, 1]), cfg, None, rng)
    assert np.array_equal(an.context_w.reshape(len(an), -1), an.history_w)  # the clean week before
    with pytest.raises(EvaluationError, match="more than 7 days"):
        D.imputation_days(_fleet(1, 7), np.array([0]), None, rng, HISTORY_DAYS)


def test_weekly_baselines_read_the_same_hours_last_week():
    fleet = _fleet(1, 12)
    power = fleet.power_w.reshape(1, -1)
    hist_w = power[:, 2 * L:9 * L]  # 7 days before an origin at day 9
    batch = ForecastBatch(hist_w, np.zeros((1, 1)), np.zeros((1, 7 * L, 1)), power[:, 9 * L:10 * L], np.zeros(1))
    pred = WeeklyNaive().fit(batch, batch).predict(batch)
    assert np.array_equal(pred.day_ahead_w, power[:, 2 * L:3 * L]) and np.array_equal(pred.hour_ahead_w, power[:, 2 * L:2 * L + 2])
    days = D.imputation_days(fleet, np.array([0]), None, np.random.default_rng(0), HISTORY_DAYS)
    obs = np.ones_like(days.observed)
    obs[:, 10:20] = False
    filled = SeasonalImputer(lag_days=7).predict(D.with_mask(days, obs))
    # a level-matched copy of last week: the offset between the days is 7 * 100 W
    assert np.allclose(filled[:, 10:20], days.load_w[:, 10:20])
    no_context = ImputationBatch(days.load_w, obs, days.previous_w, days.ts_s, days.household)
    with pytest.raises(Exception, match="7 days of context_w"):
        SeasonalImputer(lag_days=7).predict(no_context)


@pytest.fixture(scope="module")
def context_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation_context")
    cfg = EvalConfig.tiny(out_dir=str(out), name="evaluation", tasks=("forecast", "imputation", "anomaly"),
                          history_days=HISTORY_DAYS, ablations=False, n_households=6,
                          methods=("weekly_naive", "seasonal_naive", "linear_interp", "previous_week_fill",
                                   "saits", "zscore", "unimeter", "unimeter_teacher"))
    return evaluate(cfg, command="unimeter train evaluate --tiny --history-days 7"), out


def test_the_context_run_scores_student_teacher_and_the_weekly_baselines(context_run):
    results, out = context_run
    on_disk = json.loads((out / "evaluation.json").read_text())
    tasks = on_disk["tasks"]
    for name, task in tasks.items():  # only a whole missing day can defeat a method (nothing observed)
        assert all("(day 100%)" in k for k in task.get("errors", {})), (name, task.get("errors"))
    assert {"weekly_naive", "unimeter", "unimeter_teacher"} <= set(tasks["forecast"]["day_ahead"])
    cell = tasks["imputation"]["block"]["0.50"]
    assert {"previous_week_fill", "saits", "unimeter", "unimeter_teacher"} <= set(cell)
    assert all(np.isfinite(v["mae_w"]) and v["mae_w"] >= 0 for v in cell.values())
    # whole days missing: filled from earlier days; linear interpolation has nothing to work from
    day = tasks["imputation"]["day"]["1.00"]
    assert {"previous_week_fill", "saits", "unimeter", "unimeter_teacher"} <= set(day)
    assert "linear_interp" not in day and "linear_interp (day 100%)" in tasks["imputation"]["errors"]
    assert {"zscore", "unimeter", "unimeter_teacher"} <= set(tasks["anomaly"]["scaling"])
    u = on_disk["unified"]
    assert u["history_days"] == HISTORY_DAYS and u["unimeter"] == "fp32 student (PyTorch)"
    assert u["student"]["history_days"] == HISTORY_DAYS and u["student"]["activation"] == "relu"
    # the student is the unified model of every check; the teacher is never a baseline
    assert on_disk["targets"] and all(t["best_baseline"] != "unimeter_teacher" for t in on_disk["targets"])
    assert all("at_or_better" in t for t in on_disk["targets"])
    md = (out / "evaluation.md").read_text()
    assert "D = 7 days" in md and "| at or better |" in md and "| `unimeter_teacher` |" in md
