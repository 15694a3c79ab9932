"""How ``unimeter train all`` chooses the days of context when the user gives none (no training here)."""

import pytest

from edge.data.userdata import time_split
from export.train_all import (
    CONTEXT_DAYS,
    CONTEXT_MIN_TRAIN_DAYS,
    TrainAllConfig,
    choose_history_days,
)


def _cfg(tmp_path, **kw) -> TrainAllConfig:
    return TrainAllConfig(data=[tmp_path / "x.csv"], out_dir=tmp_path / "out", **kw)


def test_a_week_of_context_once_every_meter_has_enough_training_days(tmp_path):
    enough = time_split(CONTEXT_MIN_TRAIN_DAYS + 14, 7, 7)
    short = time_split(CONTEXT_MIN_TRAIN_DAYS + 13, 7, 7)
    assert enough.train[1] - enough.train[0] == CONTEXT_MIN_TRAIN_DAYS
    assert choose_history_days(_cfg(tmp_path), [enough])[0] == CONTEXT_DAYS
    depth, why = choose_history_days(_cfg(tmp_path), [enough, short])  # the shortest meter decides
    assert depth == 0 and f"{CONTEXT_MIN_TRAIN_DAYS - 1} training days" in why


@pytest.mark.parametrize("given", [0, 3, 7])
def test_the_users_choice_is_kept(tmp_path, given):
    depth, why = choose_history_days(_cfg(tmp_path, history_days=given), [time_split(20, 3, 3)])
    assert depth == given and "--history-days" in why


def test_a_student_keeps_the_teacher_only_within_the_margin_on_every_metric():
    from export.train_stages import SELECTION_MARGIN, keeps_teacher, relative_gaps

    teacher = {"points 10% MAPE": 1.00, "blocks 50% MAPE": 2.00}
    assert keeps_teacher({"points 10% MAPE": 1.02, "blocks 50% MAPE": 1.90}, teacher)
    assert not keeps_teacher({"points 10% MAPE": 0.90, "blocks 50% MAPE": 2.10}, teacher)  # one cell 5 % worse
    assert not keeps_teacher({"points 10% MAPE": 1.00}, teacher)  # a cell it was not judged on
    gaps = relative_gaps({"points 10% MAPE": 0.90, "blocks 50% MAPE": 2.10}, teacher)
    assert gaps == pytest.approx({"points 10% MAPE": -0.10, "blocks 50% MAPE": 0.05})
    assert 0 < SELECTION_MARGIN < 0.05  # room below the 5 % the int8 bundle is judged at


def test_anomaly_students_are_judged_on_calibrated_f1_where_higher_is_better():
    from export.train_stages import keeps_teacher, relative_gaps

    teacher = {"F1 (calibrated)": 0.77}
    assert relative_gaps({"F1 (calibrated)": 0.60}, teacher)["F1 (calibrated)"] == pytest.approx(0.17 / 0.77)
    assert not keeps_teacher({"F1 (calibrated)": 0.60}, teacher)  # a student that ranks well (AUC) but flags less
    assert keeps_teacher({"F1 (calibrated)": 0.80}, teacher)
