"""The report message names a gateway fault apart from the model's abnormal consumption."""

from __future__ import annotations

from edge.agent.meter_state import MeterState
from edge.agent.quality import report_body
from edge.agent.resample import Resampler


def _meter() -> MeterState:
    st = MeterState("m1", "m1", Resampler(1800.0, 96), Resampler(10.0, 360))
    for k in range(49):
        st.profile.add(k * 1800.0 + 60.0, 300.0 + k)
    return st


def _text(anomaly: dict) -> str:
    return report_body(_meter(), 48, {"anomaly": anomaly})["text"]


def test_a_fault_is_named_and_the_model_is_not_blamed_for_it():
    text = _text({"anomaly": True, "model_anomaly": False, "anomaly_kinds": ["stuck", "zero_run"], "score": 0.1})
    assert "fault (stuck, zero run)" in text and "consumption pattern looked abnormal" not in text


def test_the_model_and_a_fault_both_speak_and_a_clean_window_says_so():
    both = _text({"anomaly": True, "model_anomaly": True, "anomaly_kinds": ["model", "spike"], "score": 0.9})
    assert "fault (spike)" in both and "looked abnormal (score 0.90)" in both
    clean = _text({"anomaly": False, "model_anomaly": False, "anomaly_kinds": [], "score": 0.2})
    assert "No abnormal consumption pattern was detected." in clean and "fault" not in clean


def test_a_held_alarm_is_reported_as_held_not_as_clean():
    held = _text({"anomaly": True, "model_anomaly": False, "anomaly_kinds": [], "anomaly_held": True,
                  "window_anomaly": False, "score": 0.3})
    assert "held until the readings have looked normal" in held and "No abnormal" not in held
