"""The bundle writer fits the NILM decision constants on validation windows with the exported graph."""

import numpy as np
import pytest

from edge.agent.inference import open_model
from edge.bundle import load_bundle
from edge.nilm_output import NilmCalibration, fit_calibration, tune_rules
from edge.runtime import InferenceRuntime
from edge.task_io import APPLIANCE_W, LOAD_W, ON_LOGIT
from export.errors import ExportError
from export.nilm_calibration import CYCLE_MERGE_GAP_S, merge_gaps, nilm_calibrator, owned_per_window
from trainer.data import ArrayDataset


def test_the_bundle_carries_nilm_constants_fitted_on_its_int8_graph(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    names = tuple(bundle.manifest["tasks"]["nilm"]["appliances"])
    cal = NilmCalibration.from_dict(bundle.task("nilm").calibration)
    assert set(cal.appliances) == set(names) and "windows" in cal.fitted_on
    res = float(bundle.task("nilm").input_spec["resolution_s"])
    for name, c in cal.appliances.items():
        assert np.isfinite(c.threshold_logit) and c.min_on_s >= res, name  # at least one sample
        if c.val_on_share:  # seen running in validation: a finite range and an F1
            assert 0.0 < c.min_w < c.max_w < 10_000 and 0.0 <= c.val_f1 <= 1.0, (name, c)
    assert open_model(tiny_bundle, "onnx", "int8", 1).nilm_calibration == cal  # what the agent decides with


def _windows(bundle, n=6, seed=0) -> ArrayDataset:
    """Windows of the graph's length with a kettle boiling in each (appliances in reverse order:
    the calibrator matches them by name)."""
    spec = bundle.task("nilm")
    names = list(bundle.manifest["tasks"]["nilm"]["appliances"])[::-1]
    length = int(spec.inputs[0].shape[-1])
    on = np.zeros((n, len(names), length), np.float32)
    on[:, names.index("kettle"), 10:13] = 1.0
    power = on * 2000.0
    load = 300.0 + power.sum(axis=1) + np.random.default_rng(seed).normal(0, 5, (n, length))
    return ArrayDataset({"load_w": load.astype(np.float32), "appliance_on": on,
                         "appliance_w": power.astype(np.float32)}, {"appliances": names})


def test_the_calibrator_runs_the_exported_graph_and_matches_appliances_by_name(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    val = _windows(bundle)
    fitted = NilmCalibration.from_dict(nilm_calibrator(val, "check")(bundle)["nilm"])
    names = tuple(bundle.manifest["tasks"]["nilm"]["appliances"])
    out = InferenceRuntime(bundle, "onnx", "int8").run("nilm", {LOAD_W: val.arrays["load_w"]})
    idx = [val.meta["appliances"].index(n) for n in names]
    res = float(bundle.task("nilm").input_spec["resolution_s"])
    true_on = val.arrays["appliance_on"][:, idx] > 0.5
    raw = fit_calibration(out[ON_LOGIT], true_on, val.arrays["appliance_w"][:, idx], names, res,
                          merge_gaps(names, res), "check: 6 windows")
    # the rules each appliance is held to, chosen at the decision (no household list: all owned)
    expected = tune_rules(raw, out[ON_LOGIT], out[APPLIANCE_W], val.arrays["load_w"], true_on, names)
    assert fitted == expected
    assert fitted.get("kettle").min_w == pytest.approx(1800.0) and fitted.get("kettle").val_on_share > 0


def test_windows_that_do_not_fit_the_graph_are_refused(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    val = _windows(bundle)
    short = ArrayDataset({k: v[..., :-1] for k, v in val.arrays.items()}, val.meta)
    with pytest.raises(ExportError, match="do not fit the graph"):
        nilm_calibrator(short)(bundle)
    other = ArrayDataset(val.arrays, {"appliances": ["a"] * len(val.meta["appliances"])})
    with pytest.raises(ExportError, match="do not fit the graph"):
        nilm_calibrator(other)(bundle)


def test_programmes_with_pauses_are_one_use():
    gaps = merge_gaps(("washing_machine", "kettle", "ev"), 60.0)
    assert gaps == {"washing_machine": CYCLE_MERGE_GAP_S, "kettle": 120.0, "ev": 120.0}


def test_each_validation_window_is_decided_with_its_households_appliances():
    on = np.zeros((4, 3, 5), bool)
    on[0, 0, 2] = True  # household 7 runs the kettle in one of its windows
    on[3, 2, 1] = True  # household 9 the fridge
    names = ("kettle", "tv", "fridge")
    assert owned_per_window(np.array([7, 7, 9, 9]), on, names) == [("kettle",), ("kettle",), ("fridge",), ("fridge",)]
    assert owned_per_window(None, on, names) is None
