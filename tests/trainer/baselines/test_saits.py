"""The SAITS baseline of ``train all --compare-saits`` (real PyPOTS, a tiny SAITS for two epochs):
it trains on the training days only, fills the hidden points of the report's cases from the day and
the days before it, and keeps the observed points as given."""

from __future__ import annotations

import numpy as np
import pytest

from edge.data import userdata as U
from edge.data.profiles import MeterProfiles
from edge.features import CovariateSpec
from trainer.baselines.batches import BaselineError
from trainer.baselines.saits import SaitsConfig, SaitsFiller
from trainer.user_eval import UserData, evaluate_imputation

L = 24
DAYS = 28


def _data() -> UserData:
    rng = np.random.default_rng(0)
    t = np.arange(DAYS * L)
    load = 2000 + 800 * np.sin(2 * np.pi * t / L) + rng.normal(0, 30, t.size)
    dates = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-01") + DAYS)
    prof = MeterProfiles("m", dates, load.reshape(DAYS, L).astype(np.float32), np.full((DAYS, L), np.nan, np.float32),
                         ((dates.astype(int) + 3) % 7).astype(np.int8), np.zeros(DAYS, bool), resolution_s=3600)
    return UserData([prof], [U.time_split(DAYS, 7, 7)], CovariateSpec(tz="UTC"), [None], 3600)


@pytest.fixture(scope="module")
def filler():
    cfg = SaitsConfig(n_layers=1, d_model=16, n_heads=2, d_k=8, d_v=8, d_ffn=16, epochs=2, patience=2)
    return SaitsFiller(_data(), context_days=2, cfg=cfg).fit()


def test_saits_fills_hidden_points_and_keeps_the_observed(filler):
    data = filler.data
    prof = data.profiles[0]
    cases = U.imputation_cases(prof, data.splits[0].days("test"), "blocks", 0.3, np.random.default_rng(1))
    fill = filler(prof, cases)
    assert fill.shape == (len(cases.day), L) and np.isfinite(fill).all()
    kept = cases.observed > 0.5
    np.testing.assert_array_equal(fill[kept], cases.target_w[kept])
    assert filler.T == 3 * L  # the day and the two days before it


def test_saits_is_a_column_of_the_imputation_report(filler):
    res = evaluate_imputation({}, filler.data, 0, saits=filler, repeats=1)
    for cell in res["cells"].values():
        assert {"linear", "previous_day", "saits"} <= set(cell["methods"])
        assert np.isfinite(cell["methods"]["saits"]["mape_pct"])


def test_saits_refuses_to_fill_before_it_is_fitted_and_needs_a_day_of_context():
    with pytest.raises(BaselineError, match="fit"):
        SaitsFiller(_data(), 1)(_data().profiles[0], None)
    with pytest.raises(BaselineError, match="context_days"):
        SaitsFiller(_data(), 0)


def test_saits_imputer_fills_evaluation_batches_from_the_day_before():
    """``SaitsImputer``: the evaluation's protocol on ``ImputationBatch`` (the day before + the day)."""
    from trainer.baselines import ImputationBatch
    from trainer.baselines.saits import SaitsImputer

    x = _data().profiles[0].load_w.astype(np.float64)  # [DAYS, L]

    def batch(days: np.ndarray, observed: np.ndarray) -> ImputationBatch:
        return ImputationBatch(x[days], observed, x[days - 1], np.zeros((len(days), L), np.int64), np.zeros(len(days)))

    train, val = batch(np.arange(1, 20), np.ones((19, L), bool)), batch(np.arange(20, 24), np.ones((4, L), bool))
    cfg = SaitsConfig(n_layers=1, d_model=16, n_heads=2, d_k=8, d_v=8, d_ffn=16, epochs=2, patience=2)
    imputer = SaitsImputer(cfg, max_train_windows=10)
    with pytest.raises(BaselineError, match="fit"):
        imputer.predict(val)
    observed = np.ones((4, L), bool)
    observed[:, 5:12] = False
    fill = imputer.fit(train, val).predict(batch(np.arange(24, 28), observed))
    assert fill.shape == (4, L) and np.isfinite(fill).all() and (fill >= 0).all()
    np.testing.assert_array_equal(fill[observed], x[24:28][observed])
