"""Write a verified model bundle (the format ``edge.bundle`` reads; see its docstring).

For each task checkpoint: the sparse fp32 ONNX, its int8 twin (gate kept float), the int8
TFLite model and, on request, the dense fp32 ONNX reference. For relu students both ONNX models
use onnxruntime's contrib MoE kernels (fp32: ``com.microsoft.MoE``; int8: ``com.microsoft.QMoE``
with 8-bit experts, see ``export.quantize``); otherwise, and always for TFLite, the gather form
(TopK + Gather + MatMul). Each artifact is checked against
PyTorch before it is listed, then hashed into ``manifest.json``. The bundle is built in a
sibling temporary directory and renamed into place, so a failed export never leaves a half
bundle, and it is re-read with ``edge.bundle.load_bundle`` before ``write_bundle`` returns.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime
import onnxruntime as ort
import torch
from tqdm import tqdm

from edge.bundle import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    REFERENCE_SUFFIX,
    Bundle,
    Reference,
    TaskSpec,
    load_bundle,
    sha256_file,
    write_reference,
)
from edge.runtime import BackendUnavailableError, InferenceRuntime, scaled_error
from edge.signing import sign_bundle
from edge.task_io import COVARIATES, HISTORY_MASK, HISTORY_W, LOAD_W, OBSERVED, UNITS
from export.errors import ExportError
from export.onnx_export import MoeShape, OnnxExportConfig, export_onnx
from export.quantize import (
    QuantizeConfig,
    quantize_moe_op_int8,
    quantize_onnx_int8,
    routing_agreement,
)
from export.tflite_export import export_tflite, quantize_tflite_int8, tflite_io_map
from trainer.checkpoint import load_task_model
from trainer.context import CLIP as CONTEXT_CLIP
from trainer.tasks import ExportModule, TaskModel, export_module

log = logging.getLogger(__name__)

MAX_BUNDLE_BYTES = 1_000_000
# onnx IR 10 / opset 18 need onnxruntime >= 1.16; the TFLite ops used are in every litert build.
MIN_RUNTIME_VERSIONS = {"onnxruntime": "1.16.0", "ai-edge-litert": "1.0.0", "tflite-runtime": "2.14.0"}
FP32_TOLERANCE = 1e-4  # max |onnx - torch| / output scale; float32 rounding of the same graph
GATHER_DISPATCH = "gather (TopK + Gather + MatMul)"
MOE_OP_DISPATCH = "com.microsoft.MoE"
QMOE_DISPATCH = "com.microsoft.QMoE (8-bit experts)"
# The CPU kernels of com.microsoft.MoE / QMoE are recent; the version they were verified with is
# the minimum stated for the artifacts that use them (the gather-form and TFLite models need no
# contrib op, so an older onnxruntime falls back to TFLite: see edge.runtime).
MOE_OP_MIN_ONNXRUNTIME = "1.31.0"
# Tasks whose outputs are thresholded logits keep their heads float in the QMoE int8 model: a
# weak or uncertain model has many logits near 0, where a head's int8 error (~0.02) flips the
# decision (measured: 6 of 120 anomaly windows flipped with int8 heads, none with float heads,
# for ~20 kB). Regression heads degrade smoothly (imputation MAE moved 0.01%) and the forecast
# head is the largest matrix of all, so those are int8.
FLOAT_HEAD_TASKS = ("anomaly", "nilm")
INT8_ROUTING_MIN = 0.99  # int8 must pick the fp32 model's top-k experts on at least this share
# Per task, check windows whose outputs every model must reproduce on the gateway when it is
# loaded (edge.runtime's self-check): a few kB per task.
REFERENCE_WINDOWS = 4
REFERENCE_SEED = 1  # not the seed of the check windows the artifacts were verified on


@dataclass
class BundleConfig:
    include_tflite: bool = True
    include_dense: bool = False
    fp32_moe_op: bool = True  # fp32 ONNX as com.microsoft.MoE (relu students; see onnx_export)
    int8_moe_op: bool = True  # int8 ONNX as com.microsoft.QMoE (relu students; see export.quantize)
    include_fp32: bool = True  # False: int8 ONNX + TFLite only (the Pi's default; ~half the bytes)
    check_windows: int = 64  # random windows used to verify every artifact against PyTorch
    max_bundle_bytes: int = MAX_BUNDLE_BYTES
    quantize: QuantizeConfig | None = None


def _window_inputs(names: tuple[str, ...] | list[str], seq_len: int, n_covariates: int, n: int,
                   seed: int = 0, history_days: int = 0) -> dict[str, np.ndarray]:
    """``n`` plausible daily loads (W, [n, L]) with ~20% missing points, D history days of the
    same shape at other levels with ~1 in 8 days missing ([n, D, L] and mask [n, D]) and
    standard-normal covariates ([n, n_covariates]), for the inputs in ``names``."""
    rng = np.random.default_rng(seed)
    L, D = seq_len, history_days
    t = np.linspace(0, 2 * np.pi, L, dtype=np.float32)
    base = rng.uniform(100, 2000, (n, 1)) * (1 + 0.5 * np.sin(t + rng.uniform(0, 6, (n, 1))))
    load_w = (base + rng.gamma(1.0, 100.0, (n, L))).astype(np.float32)
    observed = (rng.random((n, L)) > 0.2).astype(np.float32)
    history_w = (base[:, None, :] * rng.uniform(0.7, 1.3, (n, D, 1)) + rng.gamma(1.0, 100.0, (n, D, L)))
    history_mask = (rng.random((n, D)) > 0.125).astype(np.float32)
    feeds = {LOAD_W: load_w * observed if OBSERVED in names else load_w,
             OBSERVED: observed, HISTORY_W: (history_w * history_mask[:, :, None]).astype(np.float32),
             HISTORY_MASK: history_mask,
             COVARIATES: rng.normal(size=(n, n_covariates)).astype(np.float32)}
    return {k: feeds[k] for k in names}


def _check_inputs(module: ExportModule, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Check windows for ``module`` (``_window_inputs``)."""
    return _window_inputs(module.input_names, module.seq_len, module.n_covariates, n, seed,
                          module.history_days)


def torch_outputs(module: ExportModule, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(feeds[n]) for n in module.input_names))
    return {n: o.numpy() for n, o in zip(module.output_names, out, strict=True)}


def _onnx_outputs(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _task_entry(model: TaskModel, module: ExportModule, artifacts: dict[str, str],
                checks: dict, tflite_io: dict | None) -> dict:
    mc, ckpt = model.model_cfg, getattr(model, "checkpoint", {})
    data_spec = ckpt.get("data_spec", {})
    example = torch_outputs(module, _check_inputs(module, 1))
    shapes = {COVARIATES: [module.n_covariates], HISTORY_W: [module.history_days, mc.seq_len],
              HISTORY_MASK: [module.history_days]}
    inputs = [{"name": name, "shape": [None, *shapes.get(name, [mc.seq_len])], "dtype": "float32",
               "unit": UNITS[name]} for name in module.input_names]
    outputs = [{"name": n, "shape": [None, *example[n].shape[1:]], "dtype": "float32",
                "unit": UNITS[n]} for n in module.output_names]
    input_spec = {
        "resolution_s": int(data_spec.get("resolution_s", 1800)),
        "L": mc.seq_len, "P": mc.n_patches, "patch_len": mc.patch_len,
        "history_days": module.history_days,
        "normalisation": _normalisation(mc, module.history_days),
        "covariate_names": list(data_spec.get("covariate_names", [])),
        "covariate_spec_version": int(data_spec.get("covariate_spec_version", 0)),
        "batch_sizes": None,
    }
    if model.task != "nilm":  # a profile window is one local day of L slots
        input_spec["steps_per_day"] = 86400 // input_spec["resolution_s"]
    if model.task == "forecast" and data_spec.get("covariates"):
        input_spec["covariates"] = dict(data_spec["covariates"])  # edge.features.CovariateSpec
    if tflite_io:
        input_spec["tflite_io"] = tflite_io
    return {
        "inputs": inputs, "outputs": outputs, "input_spec": input_spec,
        "topk": {"n_experts": mc.n_experts, "k": mc.top_k, "n_moe_layers": mc.n_layers if mc.moe else 0,
                 "d_model": mc.d_model, "d_expert": mc.d_expert, "activation": mc.activation,
                 "gate_quantized": False,
                 "gating_noise": False},
        "appliances": list(model.task_cfg.appliances),
        "artifacts": artifacts, "metrics": ckpt.get("metrics", {}), "verification": checks,
    }


def _normalisation(mc, history_days: int) -> dict:
    if history_days:
        return {"kind": "context", "in_graph": True, "clip": CONTEXT_CLIP,
                "stats": "mean and std over the present history days (the window's observed points "
                         "when no day is there); outputs de-normalised in the graph"}
    return {"kind": "instance", "in_graph": True, "eps": mc.norm_eps,
            "stats": "mean and std over observed points; outputs de-normalised in the graph"}


def _export_onnx_checked(module: ExportModule, path: Path, dispatch: str, feeds, reference) -> float:
    export_onnx(module, path, OnnxExportConfig(dispatch=dispatch))
    error = scaled_error(_onnx_outputs(path, feeds), reference)
    if error > FP32_TOLERANCE:
        raise ExportError(f"{module.task}: ONNX fp32 ({dispatch}) differs from PyTorch by {error:.2e}")
    return error


@dataclass
class _TaskWork:
    """One task's export in progress: its module, check windows and what has been written."""
    task: str
    module: ExportModule
    feeds: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    tmp: Path
    scratch: Path
    artifacts: dict[str, str] = field(default_factory=dict)
    dispatch: dict[str, str] = field(default_factory=dict)
    checks: dict[str, float] = field(default_factory=dict)

    def export_checked(self, path: Path, dispatch: str) -> float:
        return _export_onnx_checked(self.module, path, dispatch, self.feeds, self.reference)


def _export_fp32(w: _TaskWork, relu_moe: bool, cfg: BundleConfig) -> tuple[Path, Path | None]:
    """The gather-form fp32 export (always: TFLite, routing checks and non-relu int8 use it), the
    MoE-op export when a relu student's fp32 or int8 model needs it, and the bundle's fp32 model."""
    gather = w.scratch / f"{w.task}.gather.fp32.onnx"
    w.checks["onnx_fp32_gather_scaled_error"] = w.export_checked(gather, "sparse")
    fp32 = (w.tmp if cfg.include_fp32 else w.scratch) / f"{w.task}.fp32.onnx"
    moe_fp32 = None
    if relu_moe and (cfg.fp32_moe_op or cfg.int8_moe_op):
        moe_fp32 = fp32 if cfg.fp32_moe_op else w.scratch / f"{w.task}.moe_op.fp32.onnx"
        w.checks["onnx_fp32_moe_op_scaled_error"] = w.export_checked(moe_fp32, "moe_op")
    if relu_moe and cfg.fp32_moe_op:
        w.checks["onnx_fp32_scaled_error"] = w.checks["onnx_fp32_moe_op_scaled_error"]
        w.dispatch["onnx_fp32"] = MOE_OP_DISPATCH
    else:
        shutil.copyfile(gather, fp32)
        w.checks["onnx_fp32_scaled_error"] = w.checks["onnx_fp32_gather_scaled_error"]
        w.dispatch["onnx_fp32"] = GATHER_DISPATCH
    if cfg.include_fp32:
        w.artifacts["onnx_fp32"] = fp32.name
    return gather, moe_fp32


def _export_int8(w: _TaskWork, gather: Path, moe_fp32: Path | None, cfg: BundleConfig) -> None:
    """int8 ONNX: QMoE from the MoE-op export (relu students), else the int8 gather form."""
    int8 = w.tmp / f"{w.task}.int8.onnx"
    if moe_fp32 is not None and cfg.int8_moe_op:
        scope = "experts" if w.task in FLOAT_HEAD_TASKS else "heads"
        quantize_moe_op_int8(moe_fp32, int8, cfg.quantize or QuantizeConfig(moe_int8_scope=scope))
        w.dispatch["onnx_int8"] = QMOE_DISPATCH
    else:
        quantize_onnx_int8(gather, int8, cfg.quantize)
        w.dispatch["onnx_int8"] = GATHER_DISPATCH
    w.checks["onnx_int8_scaled_error"] = scaled_error(_onnx_outputs(int8, w.feeds), w.reference)
    agreement = w.checks["onnx_int8_routing_agreement"] = routing_agreement(gather, int8, w.feeds)
    if agreement < INT8_ROUTING_MIN:
        log.warning("%s: int8 routing agreement %.4f is under %.2f", w.task, agreement, INT8_ROUTING_MIN)
    w.artifacts["onnx_int8"] = int8.name


def _export_task(task: str, model: TaskModel, tmp: Path, scratch: Path, cfg: BundleConfig,
                 bar: tqdm) -> dict:
    module = export_module(model).eval()
    feeds = _check_inputs(module, cfg.check_windows)
    w = _TaskWork(task, module, feeds, torch_outputs(module, feeds), tmp, scratch)
    artifacts, dispatch, checks = w.artifacts, w.dispatch, w.checks

    bar.set_description(f"{task}: ONNX fp32")
    relu_moe = model.model_cfg.moe and model.model_cfg.activation == "relu"
    gather, moe_fp32 = _export_fp32(w, relu_moe, cfg)
    bar.update()

    bar.set_description(f"{task}: ONNX int8")
    _export_int8(w, gather, moe_fp32, cfg)
    bar.update()

    tflite_io = None
    if cfg.include_tflite:

        bar.set_description(f"{task}: TFLite int8")
        tfl32 = export_tflite(module, scratch / f"{task}.fp32.tflite")
        tfl8 = quantize_tflite_int8(tfl32, tmp / f"{task}.int8.tflite")
        tflite_io = tflite_io_map(tfl8, module.input_names, module.output_names)
        artifacts["tflite_int8"], dispatch["tflite_int8"] = tfl8.name, GATHER_DISPATCH
    bar.update()

    if cfg.include_dense:
        bar.set_description(f"{task}: dense reference")
        dense = tmp / f"{task}.dense.fp32.onnx"
        checks["onnx_dense_scaled_error"] = w.export_checked(dense, "dense")
        artifacts["onnx_fp32_dense"], dispatch["onnx_fp32_dense"] = dense.name, "dense (all experts)"
    bar.update()
    log.info("%s: checks %s", task, checks)
    entry = _task_entry(model, module, artifacts, checks, tflite_io)
    entry["topk"]["dispatch"] = {k: v for k, v in dispatch.items() if k in artifacts}
    requirements = {kind: {"onnxruntime": MOE_OP_MIN_ONNXRUNTIME} for kind in artifacts
                    if dispatch.get(kind) in (MOE_OP_DISPATCH, QMOE_DISPATCH)}
    if requirements:
        entry["artifact_requirements"] = requirements
    return entry


Calibrate = Callable[[Bundle], dict[str, dict]]


def write_bundle(task_checkpoints: dict[str, Path], out_dir: str | Path, *, model_version: str,
                 cfg: BundleConfig | None = None, overwrite: bool = False,
                 notes: str = "", signing_key=None, calibrate: Calibrate | None = None) -> Path:
    """Export every task checkpoint into one verified bundle directory; returns its path.

    ``calibrate``: called with the verified, not yet signed bundle (``edge.bundle.Bundle``; run
    it through ``edge.runtime.InferenceRuntime`` to fit on the exported models themselves); it
    returns ``{task: calibration dict}``, written into those tasks' manifest entries
    (``calibration``) before the manifest is verified again and signed. With ``signing_key`` (an
    ed25519 private key, ``edge.signing.load_private_key``) the manifest is signed
    (``signature.json``) before the bundle is put in place.
    """
    cfg = cfg or BundleConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ExportError(f"{out_dir} exists; pass overwrite=True (--overwrite) to replace it")
    if not task_checkpoints:
        raise ExportError("no task checkpoints given")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    scratch = Path(tempfile.mkdtemp(prefix="unimeter-export-"))
    try:
        tasks, appliances = {}, []
        with tqdm(total=4 * len(task_checkpoints), desc="export", unit="step") as bar:
            for task, ckpt_path in task_checkpoints.items():
                model = load_task_model(ckpt_path)
                if model.task != task:
                    raise ExportError(f"{ckpt_path} holds task {model.task!r}, not {task!r}")
                tasks[task] = _export_task(task, model, tmp, scratch, cfg, bar)
                appliances += [a for a in model.task_cfg.appliances if a not in appliances]
        manifest = _manifest(tmp, tasks, appliances, model_version, notes)
        size = sum(e["bytes"] for e in manifest["artifacts"].values() if e["kind"] != "onnx_fp32_dense")
        if size > cfg.max_bundle_bytes:
            log.warning("bundle is %d B, over the %d B target", size, cfg.max_bundle_bytes)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        bundle = _add_references(tmp, manifest, load_bundle(tmp))  # load_bundle: the reader's checks
        if calibrate is not None:
            _add_calibration(tmp, manifest, calibrate(bundle))
        if signing_key is not None:

            sign_bundle(tmp, signing_key)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out_dir


def _reference_for(spec: TaskSpec, runtimes: dict[str, InferenceRuntime | None]) -> Reference:
    """The task's ``REFERENCE_WINDOWS`` check windows and the outputs of each of its models on
    them, run through ``edge.runtime`` as the gateway runs them."""
    width = {t.name: t.shape[-1] for t in spec.inputs}
    inputs = _window_inputs([t.name for t in spec.inputs], int(width[LOAD_W]),
                            int(width.get(COVARIATES, 0)), REFERENCE_WINDOWS, seed=REFERENCE_SEED,
                            history_days=spec.history_days)
    outputs = {}
    for kind in spec.artifacts:
        runtime = runtimes.get(kind)
        if runtime is not None:
            outputs[kind] = runtime.run(spec.name, inputs)
    return Reference(inputs, outputs)


def _add_references(tmp: Path, manifest: dict, bundle: Bundle) -> Bundle:
    """Write each task's ``<task>.reference.npz`` (``edge.bundle.Reference``), list it in the
    manifest and verify the bundle again; the runtime re-runs these windows when it opens a model
    (its self-check). A model kind no interpreter here can run gets no reference outputs."""
    runtimes: dict[str, InferenceRuntime | None] = {}
    for kind in sorted({k for spec in bundle.tasks.values() for k in spec.artifacts} - {"onnx_fp32_dense"}):
        backend, precision = kind.split("_", 1)
        try:
            runtimes[kind] = InferenceRuntime(bundle, backend, precision, self_check=False)
        except BackendUnavailableError as e:
            log.warning("the %s models carry no reference outputs: %s", kind, e)
    for task, spec in bundle.tasks.items():
        name = f"{task}{REFERENCE_SUFFIX}"
        reference = _reference_for(spec, runtimes)
        write_reference(tmp / name, reference)
        size = (tmp / name).stat().st_size
        manifest["artifacts"][name] = {"sha256": sha256_file(tmp / name), "bytes": size,
                                       "task": task, "kind": "reference"}
        manifest["total_bytes"] += size
        manifest["tasks"][task]["reference"] = {"file": name, "windows": REFERENCE_WINDOWS,
                                                "kinds": sorted(reference.outputs)}
    (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return load_bundle(tmp)


def _add_calibration(tmp: Path, manifest: dict, calibration: dict[str, dict]) -> None:
    """Write each task's calibration into the manifest and verify the bundle again."""
    unknown = sorted(set(calibration) - set(manifest["tasks"]))
    if unknown:
        raise ExportError(f"calibration for tasks {unknown} the bundle does not hold")
    for task, figures in calibration.items():
        manifest["tasks"][task]["calibration"] = json.loads(json.dumps(figures))  # plain JSON or fail here
    (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    load_bundle(tmp)


def _manifest(tmp: Path, tasks: dict, appliances: list[str], model_version: str, notes: str) -> dict:
    artifacts = {}
    for task, entry in tasks.items():
        for kind, name in entry["artifacts"].items():
            path = tmp / name
            artifacts[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size,
                               "task": task, "kind": kind}
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_version": model_version,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tasks": tasks,
        "appliances": appliances,
        "min_runtime_versions": dict(MIN_RUNTIME_VERSIONS),
        "producer": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "notes": notes,
        "total_bytes": sum(a["bytes"] for a in artifacts.values()),
        "artifacts": artifacts,
    }


def moe_shape_of(checkpoint: Path) -> MoeShape:
    """The MoE dimensions of a task checkpoint (for sparsity reports)."""
    return MoeShape.of(load_task_model(checkpoint))
