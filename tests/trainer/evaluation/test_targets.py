"""Seed 000's target checks against the best baseline and linear interpolation."""

from __future__ import annotations

import pytest

from trainer.evaluation.targets import check_targets


def test_check_targets_against_best_baseline_and_linear():
    row = lambda mae: {"mae_w": mae, "rmse_w": mae * 1.2, "mape_pct": 10.0}  # noqa: E731
    results = {"tasks": {
        "forecast": {"day_ahead": {"lstm": row(100.0), "dlinear": row(90.0), "unimeter": row(92.0)},
                     "hour_ahead": {"lstm": row(50.0), "unimeter": row(60.0)}},
        "imputation": {"random": {"0.30": {"linear_interp": row(80.0), "unimeter": row(79.0)}}},
    }}
    checks = {(c["check"], c["metric"]): c for c in check_targets(results)}
    day = checks[("forecast day_ahead", "mae_w")]
    assert day["best_baseline"] == "dlinear" and day["gap_pct"] == pytest.approx(100 * 2 / 90)
    assert day["pass"] and not day["at_or_better"]  # within 3%, but not at or better
    assert checks[("forecast day_ahead", "rmse_w")]["best_baseline"] == "dlinear"
    assert not checks[("forecast hour_ahead", "mae_w")]["pass"]  # 20% worse
    assert checks[("imputation random 0.30 vs linear", "mae_w")]["pass"]
