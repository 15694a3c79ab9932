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
"""

from __future__ import annotations

import importlib
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
    usable_runtimes,
)

BACKENDS = ("auto", "onnx", "tflite")
PRECISIONS = ("int8", "fp32")


class InferenceError(BundleError):
    """Base of the runtime's errors."""


class BackendUnavailableError(InferenceError):
    """The asked-for backend or precision cannot run with this bundle and these packages."""


class InputError(InferenceError, ValueError):
    """Inputs do not match the task's spec (missing/unknown name, shape, dtype, NaN)."""


@dataclass(frozen=True)
class RuntimeConfig:
    backend: str = "auto"
    precision: str = "int8"
    threads: int = 1
    check_finite: bool = True


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
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.config = RuntimeConfig(backend, precision, threads, check_finite)
        self.backend, self.backend_name = self._choose_backend()
        self._sessions: dict[str, _OnnxSession | _TfliteSession] = {}

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
        reasons = []
        for backend in wanted:
            kind = f"{backend}_{self.config.precision}"
            if not any(kind in t.artifacts for t in self.bundle.tasks.values()):
                reasons.append(f"the bundle has no {kind} model")
                continue
            if backend == "onnx":
                if "onnxruntime" not in usable:
                    reasons.append("onnxruntime is not installed or older than the bundle needs")
                    continue
                unmet = self._unmet_requirements(kind)
                if unmet:
                    reasons.append(unmet[0])
                    continue
                return backend, f"onnxruntime {usable['onnxruntime']}"
            try:
                _, label = _tflite_interpreter_class()
            except BackendUnavailableError as e:
                reasons.append(str(e))
                continue
            runtime = label.split(" ")[0]
            if runtime in self.bundle.min_runtime_versions and runtime not in usable:
                reasons.append(f"{label} is older than the bundle needs")
                continue
            return backend, label
        raise BackendUnavailableError(
            f"cannot run backend={self.config.backend!r} precision={self.config.precision!r}: "
            + "; ".join(reasons)
        )

    def _open(self, task: str) -> _OnnxSession | _TfliteSession:
        spec = self.spec(task)
        kind = self.artifact_kind(task)
        path = spec.artifacts.get(kind)
        if path is None:
            raise BackendUnavailableError(f"task {task!r} has no {kind} model in the bundle")
        self._check_requirements(task, kind)
        if self.backend == "onnx":
            session: _OnnxSession | _TfliteSession = _OnnxSession(
                str(path), self.config.threads, [t.name for t in spec.outputs]
            )
        else:
            interpreter_cls, _ = _tflite_interpreter_class()
            session = _TfliteSession(str(path), self.config.threads, spec, interpreter_cls)
        self._sessions[task] = session
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
