"""On-device inference over a verified bundle (torch-free).

``InferenceRuntime(bundle, backend="auto"|"onnx"|"tflite", precision="int8"|"fp32", threads=1)``
opens one interpreter session per task lazily, checks inputs against the manifest (names, shape,
finiteness) and returns the outputs by their contract names (docs/architecture.md section 5).

Interpreters: ``onnxruntime`` for ONNX; for TFLite, ``ai_edge_litert`` (aarch64/x86_64 wheels for
Python 3.11/3.12, numpy 2) and, where that is not installed, ``tflite_runtime`` 2.14 (numpy<2,
no Python 3.12 wheel). ``backend="auto"`` takes ONNX if onnxruntime is installed and new enough,
else TFLite; ``.backend_name`` says which interpreter and version actually runs.

Per call the cost is a dict lookup, a few shape checks, one ``np.isfinite`` over the (small) input
and the interpreter call: at a 48-point window that is microseconds next to the model itself.

Self-check at load: where the bundle carries a task's reference windows (``edge.bundle.
read_reference``: a few check windows and the outputs every model gave on them when the bundle
was written), the runtime opens the models it is about to use when it is built, runs those
windows and compares (``scaled_error`` <= ``SELF_CHECK_TOLERANCE``). A model that gives other
numbers, or does not run, is never used: an interpreter that reads the graph differently (another
onnxruntime's contrib kernels, a CPU whose int8 kernel saturates) would otherwise run it silently
wrong. With ``backend="auto"`` the runtime falls back to the next backend (ONNX, then TFLite)
and says why in ``fallback_reason`` (logged; the agent reports it in its health); with a fixed
backend it raises ``SelfCheckError``. Measured on the test bundle: x86 onnxruntime 1.31.1 and
1.32.0 give bit-identical outputs, aarch64 (1.31.1, emulated Cortex-A72 and A76) within 4e-7;
an int8 MatMul that saturates (export.quantize) moved outputs by 6e-2.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.bundle import (
    Bundle,
    BundleError,
    TaskSpec,
    installed_version,
    load_bundle,
    parse_version,
    read_reference,
    usable_runtimes,
)

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "tflite")
PRECISIONS = ("int8", "fp32")
# max |output - reference| / max(1, max |reference|) a model may show on its reference windows:
# 2500x the largest difference measured between x86 and aarch64 builds (4e-7), 60x under what a
# saturating int8 kernel did to the test model (6e-2).
SELF_CHECK_TOLERANCE = 1e-3


class InferenceError(BundleError):
    """Base of the runtime's errors."""


class BackendUnavailableError(InferenceError):
    """The asked-for backend or precision cannot run with this bundle and these packages."""


class SelfCheckError(BackendUnavailableError):
    """A model did not reproduce its reference outputs (or did not run them) at load: this
    interpreter computes the graph differently from the one that wrote the bundle."""


class InputError(InferenceError, ValueError):
    """Inputs do not match the task's spec (missing/unknown name, shape, dtype, NaN)."""


@dataclass(frozen=True)
class RuntimeConfig:
    backend: str = "auto"
    precision: str = "int8"
    threads: int = 1
    check_finite: bool = True
    self_check: bool = True  # run the bundle's reference windows when the runtime is built


def scaled_error(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> float:
    """max |got - want| / max(1, max |want|) over the outputs in ``want``: absolute for O(1)
    outputs (logits), relative for outputs in W; inf where an output is missing, of another shape
    or not finite."""
    worst = 0.0
    for name, ref in want.items():
        out = got.get(name)
        if out is None or np.shape(out) != np.shape(ref):
            return float("inf")
        diff = np.abs(np.asarray(out, np.float64) - ref).max(initial=0.0)
        error = float(diff) / max(1.0, float(np.abs(ref).max(initial=0.0)))
        if not np.isfinite(error):
            return float("inf")
        worst = max(worst, error)
    return worst


def _tflite_interpreter_class() -> tuple[Any, str]:
    """The TFLite Interpreter class of whichever interpreter package is importable, and its label."""
    for module_name, dist in (
        ("ai_edge_litert.interpreter", "ai-edge-litert"),
        ("tflite_runtime.interpreter", "tflite-runtime"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, f"{dist} {installed_version(dist) or '?'}"
    raise BackendUnavailableError(
        "no TFLite interpreter installed: pip install ai-edge-litert (or tflite-runtime on numpy<2)"
    )


class _OnnxSession:
    def __init__(self, path: str, threads: int, output_names: list[str]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        graph_outputs = [o.name for o in self.session.get_outputs()]
        missing = [n for n in output_names if n not in graph_outputs]
        if missing:
            raise BundleError(f"{path}: graph lacks outputs {missing} the manifest lists")
        self.output_names = output_names

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))


class _TfliteSession:
    """A TFLite signature runner over a model converted at a fixed batch size (the manifest says
    which); larger batches run in chunks of that size, a short last chunk padded by repetition."""

    def __init__(self, path: str, threads: int, task: TaskSpec, interpreter_cls: Any) -> None:
        self.interpreter = interpreter_cls(model_path=path, num_threads=threads)
        io = task.input_spec.get("tflite_io", {})
        self.input_map: dict[str, str] = io.get("inputs", {t.name: t.name for t in task.inputs})
        self.output_map: dict[str, str] = io.get("outputs", {t.name: t.name for t in task.outputs})
        self.batch = int(io.get("batch", 1))
        self.runner = self.interpreter.get_signature_runner()

    def _run_one(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raw = self.runner(**{self.input_map[k]: v for k, v in feeds.items()})
        return {name: raw[tfl_name] for name, tfl_name in self.output_map.items()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = next(iter(feeds.values())).shape[0]
        if n == self.batch:
            return self._run_one(feeds)
        chunks: list[dict[str, np.ndarray]] = []
        for start in range(0, n, self.batch):
            part = {k: v[start : start + self.batch] for k, v in feeds.items()}
            m = next(iter(part.values())).shape[0]
            if m < self.batch:
                idx = np.arange(self.batch) % m
                part = {k: v[idx] for k, v in part.items()}
            out = self._run_one(part)
            chunks.append({k: v[:m] for k, v in out.items()})
        return {k: np.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]}


class InferenceRuntime:
    """Runs a bundle's task models on the CPU with one of the installed interpreters."""

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike,
        backend: str = "auto",
        precision: str = "int8",
        threads: int = 1,
        *,
        check_finite: bool = True,
        self_check: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.config = RuntimeConfig(backend, precision, threads, check_finite, self_check)
        self._sessions: dict[str, _OnnxSession | _TfliteSession] = {}
        self.fallback_reason = ""  # why backend="auto" did not run its first choice ("" if it did)
        self.self_checked: tuple[str, ...] = ()  # tasks whose model reproduced its reference outputs
        self.backend, self.backend_name = self._choose_backend()

    # -- public API --------------------------------------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.bundle.tasks)

    def spec(self, task: str) -> TaskSpec:
        return self.bundle.task(task)

    def artifact_kind(self, task: str) -> str:
        return f"{self.backend}_{self.config.precision}"

    def run(self, task: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one task on a batch; ``inputs`` by contract name, batch dimension first."""
        spec = self.spec(task)
        feeds = self._validate(spec, inputs)
        session = self._sessions.get(task) or self._open(task)
        return session.run(feeds)

    def warmup(self) -> None:
        """Open every task's session and run it once on zeros (first-call latency off the hot path)."""
        for task in self.tasks:
            spec = self.spec(task)
            feeds = {t.name: np.zeros((1, *t.shape[1:]), np.float32) for t in spec.inputs}
            self.run(task, feeds)

    # -- internals ---------------------------------------------------------------------------
    def _choose_backend(self) -> tuple[str, str]:
        usable = usable_runtimes(self.bundle.min_runtime_versions)
        wanted = ("onnx", "tflite") if self.config.backend == "auto" else (self.config.backend,)
        reasons: list[str] = []
        failed_check = False
        for backend in wanted:
            label, reason = self._candidate(backend, usable)
            if label is not None:
                reason = self._self_check(backend, label)
                failed_check = failed_check or reason is not None
            if reason is None:
                if reasons:
                    self.fallback_reason = f"running {label}: " + "; ".join(reasons)
                    log.warning("%s", self.fallback_reason)
                return backend, str(label)
            reasons.append(reason)
        error = SelfCheckError if failed_check else BackendUnavailableError
        raise error(
            f"cannot run backend={self.config.backend!r} precision={self.config.precision!r}: "
            + "; ".join(reasons)
        )

    def _candidate(self, backend: str, usable: dict[str, str]) -> tuple[str | None, str | None]:
        """(interpreter label, None) if ``backend`` can run this bundle here, else (None, why)."""
        kind = f"{backend}_{self.config.precision}"
        if not any(kind in t.artifacts for t in self.bundle.tasks.values()):
            return None, f"the bundle has no {kind} model"
        if backend == "onnx":
            if "onnxruntime" not in usable:
                return None, "onnxruntime is not installed or older than the bundle needs"
            unmet = self._unmet_requirements(kind)
            return (None, unmet[0]) if unmet else (f"onnxruntime {usable['onnxruntime']}", None)
        try:
            _, label = _tflite_interpreter_class()
        except BackendUnavailableError as e:
            return None, str(e)
        runtime = label.split(" ")[0]
        if runtime in self.bundle.min_runtime_versions and runtime not in usable:
            return None, f"{label} is older than the bundle needs"
        return label, None

    def _self_check(self, backend: str, label: str) -> str | None:
        """Open ``backend``'s model of every task that carries reference windows, run them and
        compare; None if all reproduce their outputs (their sessions are kept), else why not."""
        if not self.config.self_check:
            return None
        kind = f"{backend}_{self.config.precision}"
        opened: dict[str, _OnnxSession | _TfliteSession] = {}
        for task, spec in self.bundle.tasks.items():
            reference = read_reference(spec)
            if reference is None or kind not in reference.outputs or kind not in spec.artifacts:
                continue
            try:
                session = self._new_session(task, backend)
                got = session.run(reference.inputs)
            except Exception as e:  # interpreters raise their own types on a graph they cannot run
                log.error("task %r: the %s model does not run under %s: %s", task, kind, label, e)
                return f"task {task!r}: the {kind} model does not run under {label}: {e}"
            error = scaled_error(got, reference.outputs[kind])
            if error > SELF_CHECK_TOLERANCE:
                why = (f"task {task!r}: the {kind} model's outputs on the bundle's {reference.windows} "
                       f"reference windows differ from the exporter's by {error:.2g} (tolerance "
                       f"{SELF_CHECK_TOLERANCE:g}) under {label}: this interpreter computes the graph "
                       "differently, so it is not used")
                log.error("%s", why)
                return why
            opened[task] = session
        self._sessions.update(opened)
        self.self_checked = tuple(opened)
        return None

    def _new_session(self, task: str, backend: str) -> _OnnxSession | _TfliteSession:
        spec = self.spec(task)
        kind = f"{backend}_{self.config.precision}"
        path = spec.artifacts.get(kind)
        if path is None:
            raise BackendUnavailableError(f"task {task!r} has no {kind} model in the bundle")
        self._check_requirements(task, kind)
        if backend == "onnx":
            return _OnnxSession(str(path), self.config.threads, [t.name for t in spec.outputs])
        interpreter_cls, _ = _tflite_interpreter_class()
        return _TfliteSession(str(path), self.config.threads, spec, interpreter_cls)

    def _open(self, task: str) -> _OnnxSession | _TfliteSession:
        session = self._sessions[task] = self._new_session(task, self.backend)
        return session

    def _unmet_requirements(self, kind: str, tasks: Iterable[str] | None = None) -> list[str]:
        """Per-artifact minimum versions not met here (graphs using com.microsoft.MoE / QMoE)."""
        unmet = []
        for task in self.tasks if tasks is None else tasks:
            needs = self.bundle.manifest["tasks"][task].get("artifact_requirements", {}).get(kind, {})
            for runtime, minimum in needs.items():
                have = installed_version(runtime)
                if have is None or parse_version(have) < parse_version(minimum):
                    unmet.append(f"task {task!r}: the {kind} model needs {runtime} >= {minimum} "
                                 f"(installed: {have}); upgrade it or use backend='tflite'")
        return unmet

    def _check_requirements(self, task: str, kind: str) -> None:
        unmet = self._unmet_requirements(kind, [task])
        if unmet:
            raise BackendUnavailableError(unmet[0])

    def _validate(self, spec: TaskSpec, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = [t.name for t in spec.inputs]
        unknown = [k for k in inputs if k not in expected]
        missing = [k for k in expected if k not in inputs]
        if missing or unknown:
            raise InputError(
                f"task {spec.name!r} takes inputs {expected}; missing {missing}, unknown {unknown}"
            )
        feeds: dict[str, np.ndarray] = {}
        batch = None
        for t in spec.inputs:
            x = np.ascontiguousarray(inputs[t.name], dtype=np.float32)
            if x.ndim != len(t.shape) or any(
                want is not None and have != want for have, want in zip(x.shape, t.shape, strict=True)
            ):
                shape = tuple("B" if d is None else d for d in t.shape)
                raise InputError(f"task {spec.name!r}: input {t.name!r} must have shape {shape}, got {x.shape}")
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                raise InputError(f"task {spec.name!r}: inputs disagree on batch size ({batch} vs {x.shape[0]})")
            if self.config.check_finite and not np.isfinite(x).all():
                bad = int(np.size(x) - np.isfinite(x).sum())
                raise InputError(
                    f"task {spec.name!r}: input {t.name!r} has {bad} NaN/inf values; fill or mask gaps "
                    "first (imputation takes missing points as 0 with observed=0)"
                )
            feeds[t.name] = x
        if batch == 0:
            raise InputError(f"task {spec.name!r}: empty batch")
        return feeds
