"""The NILM decision constants, fitted by the bundle writer on validation windows.

``write_bundle(..., calibrate=nilm_calibrator(val))`` runs the exported int8 NILM graph of the
bundle being written (``edge.runtime.InferenceRuntime``, the interpreter the Pi uses) over the
validation households' windows and fits ``edge.nilm_output.fit_calibration``: per appliance the ON
threshold with the best F1, the power range, the shortest use; one decision lag. The agent reads it
from ``tasks.nilm.calibration`` (``edge.nilm_output.NilmCalibration``).

Fitting on the exported graph rather than the torch student matters: int8 quantization moves the
logits, and a threshold fitted before it would not be the one that runs.
"""

from __future__ import annotations

import numpy as np

from edge.bundle import Bundle
from edge.nilm_output import fit_calibration
from edge.runtime import InferenceRuntime
from edge.sim.specs import SPECS_BY_NAME
from edge.task_io import LOAD_W, ON_LOGIT
from export.errors import ExportError

CYCLE_MERGE_GAP_S = 900.0  # a washing machine soaking, an oven's thermostat: one use
BATCH = 64


def merge_gaps(names: tuple[str, ...], resolution_s: float) -> dict[str, float]:
    """OFF gaps (s) inside one use: 15 min for appliances that run programmes with pauses
    (``cycle`` and ``variable`` kinds of ``edge.sim.specs``), two samples for the others."""
    kinds = {n: SPECS_BY_NAME[n].kind if n in SPECS_BY_NAME else "" for n in names}
    return {n: CYCLE_MERGE_GAP_S if kinds[n] in ("cycle", "variable") else 2.0 * resolution_s
            for n in names}


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
        logits = np.concatenate([runtime.run("nilm", {LOAD_W: load[i:i + step]})[ON_LOGIT]
                                 for i in range(0, len(load), step)])
        res = float(spec.input_spec["resolution_s"])
        cal = fit_calibration(logits, val.arrays["appliance_on"][:, idx], val.arrays["appliance_w"][:, idx],
                              names, res, merge_gaps(names, res), f"{fitted_on}: {len(load)} windows")
        return {"nilm": cal.to_dict()}

    return calibrate
