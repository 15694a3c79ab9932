"""Run every task of a bundle with every model file it holds; the same program on x86-64 and in
the arm64 image, so their outputs and timings can be compared.

    python scripts/arm64_tasks.py BUNDLE INPUTS.npz OUT.npz [--repeat N]

INPUTS.npz holds ``<task>/<input name>`` arrays (batch first, as the bundle's task spec says).
For each task and each artifact kind of the bundle (``onnx_int8``, ``onnx_fp32``, ``tflite_int8``,
``tflite_fp32``: backend and precision) the task runs on one thread through
``edge.runtime.InferenceRuntime``; OUT.npz gets ``<task>/<kind>/<output name>`` arrays and, with
``--repeat N``, ``<task>/<kind>/_seconds`` (N wall-clock times of one batch, s) after one warm-up
run. ``_meta`` holds a JSON string: machine, Python, the runtime that served each kind.
Only numpy and the edge package are needed (the Pi's install).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from edge.bundle import load_bundle
from edge.runtime import InferenceRuntime


def run_all(bundle_dir: str, inputs: dict[str, np.ndarray], repeat: int = 0) -> dict[str, np.ndarray]:
    bundle = load_bundle(bundle_dir)
    kinds = sorted({kind for task in bundle.tasks.values() for kind in task.artifacts})
    out: dict[str, np.ndarray] = {}
    served = {}
    for kind in kinds:
        backend, precision = kind.split("_", 1)
        runtime = InferenceRuntime(bundle, backend=backend, precision=precision, threads=1)
        served[kind] = runtime.backend_name
        for task, spec in bundle.tasks.items():
            if kind not in spec.artifacts:
                continue
            feeds = {t.name: inputs[f"{task}/{t.name}"] for t in spec.inputs}
            for name, value in runtime.run(task, feeds).items():
                out[f"{task}/{kind}/{name}"] = value
            if repeat:
                seconds = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    runtime.run(task, feeds)
                    seconds.append(time.perf_counter() - start)
                out[f"{task}/{kind}/_seconds"] = np.asarray(seconds)
    meta = {"machine": platform.machine(), "python": sys.version.split()[0], "served": served}
    out["_meta"] = np.asarray(json.dumps(meta))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("inputs")
    parser.add_argument("out")
    parser.add_argument("--repeat", type=int, default=0, help="time N runs of each task (after a warm-up)")
    args = parser.parse_args()
    with np.load(args.inputs) as data:
        inputs = {k: data[k] for k in data.files}
    np.savez(args.out, **run_all(args.bundle, inputs, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
