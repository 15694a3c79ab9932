"""The targets of ``unimeter train all``'s report (trainer.user_eval.targets)."""

from trainer.user_eval import targets


def _anomaly(rate_int8: float, target: float) -> dict:
    metrics = {"f1": 0.9, "precision": 0.9, "recall": 0.9}
    return {"anomaly": {"methods": {"int8": metrics, "teacher": metrics, "zscore_7d": {**metrics, "f1": 0.3}},
                        "false_alarm_days": {"int8": 8}, "clean_days": 38,
                        "false_alarms_per_month": {"int8": rate_int8},
                        "calibration": {"target_false_alarms_per_month": target}}}


def test_false_alarms_above_the_calibration_target_are_a_missed_target():
    checks = {c["check"]: c for c in targets(_anomaly(6.32, 1.0))}
    fa = [c for name, c in checks.items() if name.startswith("false alarms per month")]
    assert len(fa) == 1 and fa[0]["met"] is False and fa[0]["ours"] == 6.32 and fa[0]["baseline_value"] == 1.0
    assert checks["anomaly F1 above z-score (7 days), calibrated thresholds"]["met"] is True


def test_false_alarms_within_the_target_are_met():
    fa = [c for c in targets(_anomaly(0.0, 1.0)) if c["check"].startswith("false alarms per month")]
    assert len(fa) == 1 and fa[0]["met"] is True
