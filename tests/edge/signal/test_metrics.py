"""The project's metrics (edge.signal.metrics) on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.signal.errors import SignalInputError
from edge.signal.metrics import (
    accuracy,
    classification_metrics,
    confusion,
    f1_score,
    nilm_metrics,
    nilm_scores,
    regression_metrics,
)


def test_regression_metrics_by_hand():
    m = regression_metrics([100.0, 200.0, 10.0], [110.0, 180.0, 20.0], mape_floor_w=50.0)
    assert m["mae_w"] == pytest.approx((10 + 20 + 10) / 3)
    assert m["rmse_w"] == pytest.approx(math.sqrt((100 + 400 + 100) / 3))
    assert m["mape_pct"] == pytest.approx((10 / 100 + 20 / 200) / 2 * 100)  # 10 W is under the floor
    assert m["n_points"] == 3


def test_regression_metrics_reject_bad_predictions():
    with pytest.raises(SignalInputError):
        regression_metrics([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(SignalInputError):
        regression_metrics([1.0, 2.0], [1.0])


def test_classification_metrics_by_hand():
    m = classification_metrics([1, 1, 0, 0, 1], [1, 0, 1, 0, 1])
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert classification_metrics([0, 0], [0, 0])["f1"] == 0.0  # nothing to find: no credit


def test_nilm_metrics_by_hand():
    true_w = np.zeros((2, 1, 4))
    true_w[0, 0, :2] = 1000  # 2 steps x 1000 W x 60 s = 33.3 Wh
    pred_w = np.zeros((2, 1, 4))
    pred_w[0, 0, :1] = 1000
    pred_w[1, 0, 3] = 1000
    m = nilm_metrics(true_w, true_w > 0, pred_w, pred_w > 0, ["kettle"], 60)
    k = m["per_appliance"]["kettle"]
    assert k["f1"] == pytest.approx(2 * 0.5 * 0.5 / 1.0)  # 1 TP, 1 FP, 1 FN
    assert k["energy_mae_wh"] == pytest.approx((1000 / 60 + 1000 / 60) / 2)
    assert m["mean_f1"] == pytest.approx(k["f1"])


def test_series_metrics_on_a_hand_example():
    t = np.array([1, 1, 0, 0, 1, 0], bool)
    p = np.array([1, 0, 0, 1, 1, 0], bool)
    assert confusion(t, p) == {"tp": 2, "tn": 2, "fp": 1, "fn": 1}
    assert f1_score(t, p) == pytest.approx(2 / 3)
    assert accuracy(t, p) == pytest.approx(4 / 6)
    s = nilm_scores(t, p, t * 100.0, p * 100.0, resolution_s=60)
    assert s["power_mae_w"] == pytest.approx(200 / 6)
    assert s["energy_abs_error_wh"] == 0.0
    assert f1_score(np.zeros(3, bool), np.zeros(3, bool)) == 0.0
    with pytest.raises(SignalInputError):
        confusion(t, p[:3])
