"""The NILM decision constants, fitted by the bundle writer on validation windows.

``write_bundle(..., calibrate=nilm_calibrator(val))`` runs the exported int8 NILM graph of the
bundle being written (``edge.runtime.InferenceRuntime``, the interpreter the Pi uses) over the
validation households' windows and fits ``edge.nilm_output.fit_calibration``: per appliance the ON
threshold with the best F1, the power range, the shortest use; one decision lag. Then
``edge.nilm_output.tune_rules`` decides the same windows with the graph's powers, each with its
household's appliances (``owned_per_window``), and releases an appliance from the decision's step
judgments where that raises the decided F1. The agent reads it from ``tasks.nilm.calibration``
(``edge.nilm_output.NilmCalibration``).

Fitting on the exported graph rather than the torch student matters: int8 quantization moves the
logits, and a threshold fitted before it would not be the one that runs.
"""

from __future__ import annotations

import numpy as np

from edge.bundle import Bundle
from edge.nilm_output import fit_calibration, tune_rules
from edge.runtime import InferenceRuntime
from edge.sim.specs import SPECS_BY_NAME
from edge.task_io import APPLIANCE_W, LOAD_W, ON_LOGIT
from export.errors import ExportError

CYCLE_MERGE_GAP_S = 900.0  # a washing machine soaking, an oven's thermostat: one use
BATCH = 64


def merge_gaps(names: tuple[str, ...], resolution_s: float) -> dict[str, float]:
    """OFF gaps (s) inside one use: 15 min for appliances that run programmes with pauses
    (``cycle`` and ``variable`` kinds of ``edge.sim.specs``), two samples for the others."""
    kinds = {n: SPECS_BY_NAME[n].kind if n in SPECS_BY_NAME else "" for n in names}
    return {n: CYCLE_MERGE_GAP_S if kinds[n] in ("cycle", "variable") else 2.0 * resolution_s
            for n in names}


def owned_per_window(household: np.ndarray | None, true_on: np.ndarray, names: tuple[str, ...]
                     ) -> list[tuple[str, ...]] | None:
    """Per window, the appliances its household was seen running in any of its validation windows:
    the appliance list the agent's config gives ``decide`` (a simulated household's own list; a
    use-less appliance over the validation days is decided as absent). None without households."""
    if household is None:
        return None
    household = np.asarray(household)
    seen = {h: tuple(n for a, n in enumerate(names) if true_on[household == h, a].any())
            for h in np.unique(household).tolist()}
    return [seen[h] for h in household.tolist()]


def nilm_calibrator(val, fitted_on: str = "validation households"):
    """A ``write_bundle`` calibrate callable for the NILM task.

    ``val``: a ``trainer.data.ArrayDataset`` of NILM windows (``load_w`` [N, T] W,
    ``appliance_on`` and ``appliance_w`` [N, A, T], ``meta["appliances"]``), the same length and
    resolution as the bundle's NILM graph. Returns ``{"nilm": NilmCalibration.to_dict()}``; raises
    ``ExportError`` when the windows do not fit the graph.
    """

    def calibrate(bundle: Bundle) -> dict[str, dict]:
        if "nilm" not in bundle.tasks:
            return {}
        spec = bundle.task("nilm")
        names = tuple(bundle.manifest["tasks"]["nilm"].get("appliances", bundle.appliances))
        val_names = list(val.meta.get("appliances", []))
        missing = [n for n in names if n not in val_names]
        load = np.asarray(val.arrays[LOAD_W], np.float32)
        length = int(spec.inputs[0].shape[-1])
        if missing or load.ndim != 2 or load.shape[1] != length:
            raise ExportError(f"NILM calibration windows {load.shape} with appliances {val_names} do not "
                              f"fit the graph (length {length}, appliances {list(names)})")
        idx = [val_names.index(n) for n in names]
        runtime = InferenceRuntime(bundle, "onnx", "int8", threads=1)
        step = BATCH if spec.batch_sizes is None else 1  # a fixed-batch graph runs one window at a time
        outs = [runtime.run("nilm", {LOAD_W: load[i:i + step]}) for i in range(0, len(load), step)]
        logits = np.concatenate([o[ON_LOGIT] for o in outs])
        res = float(spec.input_spec["resolution_s"])
        true_on = val.arrays["appliance_on"][:, idx] > 0.5
        cal = fit_calibration(logits, true_on, val.arrays["appliance_w"][:, idx],
                              names, res, merge_gaps(names, res), f"{fitted_on}: {len(load)} windows")
        cal = tune_rules(cal, logits, np.concatenate([o[APPLIANCE_W] for o in outs]), load, true_on,
                               names, owned_per_window(val.arrays.get("household"), true_on, names))
        return {"nilm": cal.to_dict()}

    return calibrate
