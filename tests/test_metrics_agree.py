"""One prediction, one value: the evaluation, the NILM benchmark and the distillation report score
the same prediction with the same metric implementation (``edge.signal.metrics``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from trainer.baselines import AnomalyBatch, AnomalyPrediction, NILMBatch, NILMPrediction
from trainer.distill import task_metric
from trainer.evaluation.run import anomaly_scores, nilm_scores

ROOT = Path(__file__).resolve().parent.parent


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def nilm_case():
    """A kettle's truth and a noisy prediction over 6 windows of 60 one-minute samples."""
    rng = np.random.default_rng(7)
    true_on = rng.random((6, 1, 60)) < 0.2
    pred_on = true_on ^ (rng.random(true_on.shape) < 0.15)  # 15% of the points flipped
    true_w = true_on * 2000.0
    pred_w = pred_on * rng.uniform(1500, 2500, true_on.shape)
    return true_on, pred_on, true_w, pred_w


def test_nilm_f1_is_the_same_in_evaluation_bench_and_distillation(nilm_case):
    true_on, pred_on, true_w, pred_w = nilm_case
    ts = np.zeros(true_w.shape[::2], np.int64)
    evaluation = nilm_scores(NILMBatch(true_w[:, 0], true_w, true_on, ts, ["kettle"], 60),
                             NILMPrediction(pred_w, pred_on), ["kettle"])
    bench = _bench("nilm_classical").score_methods(true_on.ravel(), true_w.ravel(),
                                                   {"m": (pred_on.ravel(), pred_w.ravel())}, 60)["m"]
    native = _bench("nilm")  # the student-vs-baselines bench scores every appliance of its table
    j = native.APPLIANCES.index("kettle")
    table_w = np.zeros((len(true_w), len(native.APPLIANCES), true_w.shape[-1]))
    table_on, table_pred_on, table_pred_w = np.zeros(table_w.shape, bool), np.zeros(table_w.shape, bool), table_w.copy()
    table_w[:, j], table_on[:, j], table_pred_on[:, j], table_pred_w[:, j] = true_w[:, 0], true_on[:, 0], pred_on[:, 0], pred_w[:, 0]
    native_f1 = native.score(NILMBatch(table_w.sum(1), table_w, table_on, ts, list(native.APPLIANCES), 60),
                             NILMPrediction(table_pred_w, table_pred_on), [("kettle",)] * len(true_w), 1.0)
    distill = task_metric("nilm", {"appliance_w": pred_w, "on_logit": np.where(pred_on, 3.0, -3.0)},
                          {"appliance_w": true_w, "appliance_on": true_on.astype(np.float32)},
                          ["kettle"], resolution_s=60)
    f1 = evaluation["per_appliance"]["kettle"]["f1"]
    assert 0.3 < f1 < 0.95  # a real, imperfect prediction
    assert bench["f1"] == f1 == distill["mean_f1"] == evaluation["mean_f1"]
    assert native_f1["per_appliance"]["kettle"]["f1"] == native_f1["mean_f1"] == round(f1, 3)  # it rounds
    assert distill["mean_energy_mae_wh"] == evaluation["mean_energy_mae_wh"]


def test_anomaly_f1_is_the_same_in_evaluation_and_distillation():
    rng = np.random.default_rng(3)
    window_label = (rng.random(200) < 0.5).astype(np.int8)
    point_label = (rng.random((200, 48)) < 0.2).astype(np.int8)
    window_logit = np.where(window_label, 1.0, -1.0) * np.where(rng.random(200) < 0.2, -1, 1)
    point_logit = rng.normal(size=(200, 48)) + 2 * point_label - 1
    attack = np.where(window_label, "scaling", "none")
    batch = AnomalyBatch(np.zeros((200, 48)), np.zeros((200, 336)), window_label, point_label, attack)
    pred = AnomalyPrediction(window_logit, point_logit, window_logit > 0, point_logit > 0)
    evaluation = anomaly_scores(batch, pred)["scaling"]  # every window is clean or scaled
    distill = task_metric("anomaly", {"window_logit": window_logit[:, None], "point_logit": point_logit},
                          {"window_label": window_label.astype(np.float32),
                           "point_label": point_label.astype(np.float32)})
    assert evaluation["f1"] == distill["window_f1"] and evaluation["accuracy"] == distill["window_accuracy"]
    assert evaluation["point_f1"] == distill["point_f1"]
