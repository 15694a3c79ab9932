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
