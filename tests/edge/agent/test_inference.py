"""The agent's anomaly threshold: the bundle's calibrated logits, or probability 0.5 without them
(a real tiny bundle through onnxruntime; the calibration written into a copy of its manifest)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge.agent.inference import AnomalyThreshold, ModelHost, nilm_step, open_model, profile_step


def test_threshold_of_a_manifest_calibration():
    assert AnomalyThreshold.of({}).source.startswith("fixed 0.5")
    cut = AnomalyThreshold.of({"window_threshold_logit": 1.5, "point_threshold_logit": 2.0,
                               "target_false_alarms_per_month": 1.0})
    assert (cut.window_logit, cut.point_logit) == (1.5, 2.0)
    assert cut.source == "bundle, <= 1 false alarms/month"


def _calibrated_copy(tiny_bundle, tmp_path, window_logit: float):
    out = tmp_path / f"bundle{window_logit:+g}"
    shutil.copytree(tiny_bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["tasks"]["anomaly"]["calibration"] = {"window_threshold_logit": window_logit,
                                                   "point_threshold_logit": window_logit,
                                                   "target_false_alarms_per_month": 1.0}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _step(path):
    host = ModelHost(lambda p: open_model(p, "onnx", "int8", 1))
    assert host.try_load(path)
    n = host.current.tasks["anomaly"].length
    window = (500 + 200 * np.sin(np.linspace(0, 2 * np.pi, n))).astype(np.float32)
    logit = float(host.run("anomaly", {"load_w": window[None]})["window_logit"][0, 0])
    result, _ = profile_step(host, window, 0.0, 1800.0)
    return host, result, logit


@pytest.mark.parametrize("offset", [-1.0, 1.0])
def test_profile_step_cuts_at_the_bundles_calibrated_logit(tiny_bundle, tmp_path, offset):
    _, _, logit = _step(tiny_bundle)
    host, result, _ = _step(_calibrated_copy(tiny_bundle, tmp_path, logit + offset))
    assert result["anomaly"] is (offset < 0)  # flagged only when the window's logit is above the cut
    assert result["threshold_source"] == host.current.anomaly_threshold_source == "bundle, <= 1 false alarms/month"
    assert result["threshold"] == pytest.approx(1 / (1 + np.exp(-(logit + offset))), abs=1e-5)


def test_a_bundle_without_calibration_keeps_probability_half_and_says_so(tiny_bundle, caplog):
    host, result, logit = _step(tiny_bundle)
    assert result["threshold"] == 0.5 and result["anomaly"] is (logit > 0)
    assert result["threshold_source"].startswith("fixed 0.5")
    assert host.current.anomaly_threshold_source.startswith("fixed 0.5")
    assert "carries no calibrated threshold" in caplog.text


def test_nilm_step_appends_enrolled_appliances_within_the_meter(tiny_bundle):
    from edge.nilm_enrol import signature
    from edge.nilm_output import check_consistent

    host = ModelHost(lambda p: open_model(p, "onnx", "int8", 1))
    assert host.try_load(tiny_bundle)
    shape = host.current.tasks["nilm"]
    assert "toaster" not in host.current.appliances  # the quick model was not trained on it
    n, res = shape.length, shape.resolution_s
    window = np.full(n, 300.0, np.float32)
    on_at = slice(n // 3, n // 3 + int(180 // res))  # a 1 kW toaster for 3 min
    window[on_at] += 1000.0
    # a home that lists only a toaster: the model's appliances are off, the toaster takes the step
    result = nilm_step(host, window, 0.0, res, owned=("toaster",), enrolled=(signature("toaster"),))
    d = result.decision
    assert d.names == (*host.current.appliances, "toaster")
    toaster = d.names.index("toaster")
    assert d.on[toaster, on_at].all() and not np.delete(d.on[toaster], np.r_[on_at]).any()
    assert not d.on[:toaster].any()
    assert check_consistent(d.on, d.power_w, d.budget_w) == []


def test_guard_events_are_published_as_faults_beside_the_models_flag(tiny_bundle):
    """A counter reset the reading guard confirmed in the window's 6th bin: the message is on and
    says so, whatever the model scored; without history the value rules do not judge and say why."""
    host = ModelHost(lambda p: open_model(p, "onnx", "int8", 1))
    assert host.try_load(tiny_bundle)
    n = host.current.tasks["anomaly"].length
    window = (500 + 200 * np.sin(np.linspace(0, 2 * np.pi, n))).astype(np.float32)
    plain, _ = profile_step(host, window, 0.0, 1800.0)
    assert plain["anomaly_kinds"] == (["model"] if plain["model_anomaly"] else []) and plain["faults"] == {}
    assert plain["fault_rules"] == "not judged: no history" and plain["anomaly"] is plain["model_anomaly"]
    reset = np.zeros(n, bool)
    reset[5] = True
    result, _ = profile_step(host, window, 0.0, 1800.0, events={"counter_reset": reset})
    assert result["anomaly"] is True and "counter_reset" in result["anomaly_kinds"]
    assert result["faults"] == {"counter_reset": [5 * 1800.0]} and 5 * 1800.0 in result["anomalous_points_ts_s"]
    assert result["model_anomaly"] is plain["model_anomaly"] and result["score"] == plain["score"]


def test_a_negative_bin_the_registers_counted_as_export_is_no_sign_error():
    """A meter whose week never exported reads -300 W at noon: a sign error, unless its import and
    export registers show net energy flowing out over that bin (then it exported, e.g. new PV)."""
    from edge.agent.history import HistoryContext
    from edge.agent.inference import window_faults

    rng = np.random.default_rng(0)
    n, days = 48, 7
    context = HistoryContext(rng.gamma(4.0, 80.0, (days, n)).astype(np.float32), np.ones(days, np.float32), days)
    window = rng.gamma(4.0, 80.0, n)
    window[24] = -300.0
    assert window_faults(window, context, 1800.0).kinds == ["sign_error"]
    net_wh = 10_000.0 + np.cumsum(window * 0.5)  # the registers integrate what flowed: -150 Wh in bin 24
    assert window_faults(window, context, 1800.0, counter_wh=net_wh).kinds == []
    stuck_register = np.full(n, 10_000.0)  # registers that did not move: the negative power is wrong
    assert window_faults(window, context, 1800.0, counter_wh=stuck_register).kinds == ["sign_error"]
