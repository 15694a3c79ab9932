"""The verified model bundle, as the gateway reads it (torch-free: json, hashlib, numpy only).

A bundle is a directory::

    manifest.json
    imputation.fp32.onnx  imputation.int8.onnx  imputation.int8.tflite  ...

``manifest.json`` (written by ``export.bundle_writer.write_bundle``) holds the format version, the
model version, ``created_at``, one entry per task (inputs and outputs with shapes and units, the
input spec: resolution, L, P, normalisation, and for the profile tasks ``steps_per_day`` and the
forecast's covariate spec; top-k settings; which artifact is which; the ``calibration`` the writer
fitted on the exported model, e.g. the anomaly threshold), the appliance list, the minimum runtime
versions and the sha256 and size of every artifact.

A task may also list ``reference``: a ``<task>.reference.npz`` (hashed like the models) with a few
check windows and the outputs each of its models gave on them when the bundle was written, which
``edge.runtime`` re-runs when it opens a model (its self-check; ``read_reference``).

``load_bundle(path)`` checks all of it before anything is handed to an interpreter and raises a
``BundleError`` subclass that says what is wrong: a file that does not match its hash was tampered
with or corrupted; a listed file that is missing; a format version this code does not read; an
installed runtime older than the bundle needs. A bundle that fails any check is refused whole.

With ``trust`` (an ``edge.signing.BundleTrust``, what the agent passes) the manifest's ed25519
signature (``signature.json``) is verified over the exact manifest bytes that are then parsed, so
an edited manifest (a changed ``resolution_s``, a swapped hash) is refused as
``BundleSignatureError``; the manifest's hashes then cover every artifact (edge/signing.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import UnimeterError
from edge.task_io import TASK_IO, task_io

FORMAT_NAME = "unimeter-bundle"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
MANIFEST_NAME = "manifest.json"

# Artifact kinds a task may list, in the order the runtime prefers them.
ARTIFACT_KINDS = ("onnx_int8", "onnx_fp32", "tflite_int8", "tflite_fp32", "onnx_fp32_dense")
REFERENCE_SUFFIX = ".reference.npz"  # per task: check windows and each model's outputs on them
REFERENCE_INPUT = "input"  # npz keys: "input/<input name>" and "<artifact kind>/<output name>"

REQUIRED_TOP_FIELDS = (
    "format",
    "format_version",
    "model_version",
    "created_at",
    "tasks",
    "appliances",
    "min_runtime_versions",
    "artifacts",
)
REQUIRED_TASK_FIELDS = ("inputs", "outputs", "input_spec", "topk", "artifacts")
REQUIRED_INPUT_SPEC_FIELDS = ("resolution_s", "L", "P", "normalisation")
REQUIRED_TOPK_FIELDS = ("n_experts", "k", "n_moe_layers")

# Distribution names of the interpreters the runtime can use, by the key used in the manifest.
RUNTIME_DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime",),
    "ai-edge-litert": ("ai-edge-litert",),
    "tflite-runtime": ("tflite-runtime", "tflite_runtime"),
}


class BundleError(UnimeterError):
    """A model bundle cannot be used; the message says why."""


class BundleFormatError(BundleError):
    """The manifest is missing, unreadable, incomplete or of an unsupported format version."""


class BundleMissingArtifactError(BundleError):
    """A file the manifest lists is not in the bundle."""


class BundleIntegrityError(BundleError):
    """A file does not match the sha256 (or size) in the manifest: tampered with or corrupted."""


class BundleRuntimeError(BundleError):
    """No installed interpreter satisfies the bundle's minimum runtime versions."""


class BundleSignatureError(BundleError):
    """The bundle's signature is missing (where required), invalid, or by an untrusted key."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape (``None`` = batch dimension), dtype, unit."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    unit: str = ""
    description: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> TensorSpec:
        try:
            shape = tuple(None if d is None else int(d) for d in data["shape"])
            return cls(
                name=str(data["name"]),
                shape=shape,
                dtype=str(data.get("dtype", "float32")),
                unit=str(data.get("unit", "")),
                description=str(data.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BundleFormatError(f"{where}: bad tensor spec {data!r}: {e}") from e


@dataclass(frozen=True)
class TaskSpec:
    """Everything the runtime needs to know about one task's model."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    input_spec: dict[str, Any]
    topk: dict[str, Any]
    artifacts: dict[str, Path]  # kind ("onnx_int8", ...) -> absolute path
    metrics: dict[str, Any] = field(default_factory=dict)
    # fitted on the exported model by the bundle writer (anomaly: ``window_threshold_logit`` and its
    # figures, ``edge.calibration``); empty when the bundle carries none
    calibration: dict[str, Any] = field(default_factory=dict)
    reference: Path | None = None  # <task>.reference.npz (``read_reference``); None in older bundles

    @property
    def history_days(self) -> int:
        """D: days of history the task's graph takes (0: the single window)."""
        return int(self.input_spec.get("history_days", 0))

    @property
    def batch_sizes(self) -> tuple[int, ...] | None:
        """Fixed batch sizes the graphs accept, or ``None`` if the batch dimension is dynamic."""
        fixed = self.input_spec.get("batch_sizes")
        return tuple(int(b) for b in fixed) if fixed else None


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    manifest: dict[str, Any]
    tasks: dict[str, TaskSpec]
    appliances: tuple[str, ...]
    model_version: str
    created_at: str
    format_version: int
    min_runtime_versions: dict[str, str]
    signature: str = "not checked"  # edge.signing.BundleTrust.check status

    def task(self, name: str) -> TaskSpec:
        try:
            return self.tasks[name]
        except KeyError as e:
            raise BundleError(
                f"bundle {self.path} has no task {name!r}; it has {sorted(self.tasks)}"
            ) from e


@dataclass(frozen=True)
class Reference:
    """A task's check windows and, per artifact kind, the outputs that model gave on them when the
    bundle was written: inputs ``{name: [N, ...] float32}``, outputs ``{kind: {name: [N, ...]}}``."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, dict[str, np.ndarray]]

    @property
    def windows(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])


def write_reference(path: Path, reference: Reference) -> None:
    """Save ``reference`` as an npz (plain arrays, no pickle)."""
    arrays = {f"{REFERENCE_INPUT}/{k}": v for k, v in reference.inputs.items()}
    for kind, outputs in reference.outputs.items():
        arrays.update({f"{kind}/{k}": v for k, v in outputs.items()})
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def read_reference(spec: TaskSpec) -> Reference | None:
    """The task's reference windows and outputs (None if the bundle carries none); a file that
    is not such an npz raises ``BundleFormatError``."""
    if spec.reference is None:
        return None
    inputs: dict[str, np.ndarray] = {}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    try:
        with np.load(spec.reference, allow_pickle=False) as data:
            for key in data.files:
                group, _, name = key.partition("/")
                target = inputs if group == REFERENCE_INPUT else outputs.setdefault(group, {})
                target[name] = np.asarray(data[key])
    except (OSError, ValueError) as e:
        raise BundleFormatError(f"{spec.reference}: not a reference npz: {e}") from e
    wanted = [t.name for t in spec.inputs]
    sizes = {v.shape[0] if v.ndim else -1 for v in inputs.values()}
    if sorted(inputs) != sorted(wanted) or len(sizes) != 1 or min(sizes) < 1:
        raise BundleFormatError(f"{spec.reference}: reference inputs {sorted(inputs)} do not match "
                                f"the task's inputs {wanted} with one window count")
    return Reference({k: inputs[k].astype(np.float32) for k in wanted}, outputs)


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.31.1"`` -> ``(1, 31, 1)``; trailing tags (``rc1``, ``+cpu``) are ignored."""
    parts = []
    for piece in str(text).split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(parts)


def installed_version(runtime: str) -> str | None:
    """Installed version of a runtime named as in the manifest, or ``None`` if not installed."""
    for dist in RUNTIME_DISTRIBUTIONS.get(runtime, (runtime,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def usable_runtimes(min_versions: dict[str, str]) -> dict[str, str]:
    """Runtimes that are installed and at least as new as the manifest asks: name -> version."""
    usable = {}
    for runtime, minimum in min_versions.items():
        if runtime not in RUNTIME_DISTRIBUTIONS:
            continue
        have = installed_version(runtime)
        if have is not None and parse_version(have) >= parse_version(minimum):
            usable[runtime] = have
    return usable


def _read_manifest_bytes(root: Path) -> bytes:
    if not root.is_dir():
        raise BundleFormatError(f"{root} is not a bundle directory")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleFormatError(f"{root} has no {MANIFEST_NAME}: not a unimeter bundle")
    try:
        return manifest_path.read_bytes()
    except OSError as e:
        raise BundleFormatError(f"cannot read {manifest_path}: {e.strerror}") from e


def _parse_manifest(raw: bytes, root: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleFormatError(f"{root / MANIFEST_NAME} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise BundleFormatError(f"{root / MANIFEST_NAME} must hold a JSON object")
    return manifest


def _check_format(manifest: dict[str, Any], root: Path) -> None:
    missing = [k for k in REQUIRED_TOP_FIELDS if k not in manifest]
    if missing:
        raise BundleFormatError(f"{root}/{MANIFEST_NAME} lacks required fields {missing}")
    if manifest["format"] != FORMAT_NAME:
        raise BundleFormatError(f"{root}: format is {manifest['format']!r}, expected {FORMAT_NAME!r}")
    version = manifest["format_version"]
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleFormatError(
            f"{root}: unsupported bundle format version {version!r}; this unimeter reads "
            f"{list(SUPPORTED_FORMAT_VERSIONS)} (upgrade unimeter or re-export the bundle)"
        )
    if not isinstance(manifest["tasks"], dict) or not manifest["tasks"]:
        raise BundleFormatError(f"{root}: manifest lists no tasks")


def _verify_artifacts(manifest: dict[str, Any], root: Path) -> None:
    artifacts = manifest["artifacts"]
    if not isinstance(artifacts, dict) or not artifacts:
        raise BundleFormatError(f"{root}: manifest lists no artifacts")
    for name, entry in artifacts.items():
        if Path(name).name != name:
            raise BundleFormatError(f"{root}: artifact name {name!r} must be a plain file name")
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise BundleFormatError(f"{root}: artifact {name!r} has no sha256 in the manifest")
        path = root / name
        if not path.is_file():
            raise BundleMissingArtifactError(f"{root}: artifact {name!r} listed in the manifest is missing")
        size = path.stat().st_size
        if "bytes" in entry and int(entry["bytes"]) != size:
            raise BundleIntegrityError(
                f"{path}: size {size} B differs from the manifest's {entry['bytes']} B: "
                "the file was modified or truncated; refusing the bundle"
            )
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise BundleIntegrityError(
                f"{path}: sha256 {actual[:16]}... does not match the manifest's "
                f"{str(entry['sha256'])[:16]}...: the file was tampered with or corrupted; refusing the bundle"
            )


def _check_contract(name: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                    where: str, history_days: int = 0) -> None:
    """The task is one of ``edge.task_io.TASKS`` and its graph I/O names are the contract's (for
    the ``history_days`` its input spec records)."""
    if name not in TASK_IO:
        raise BundleFormatError(f"{where}: unknown task; this unimeter runs {list(TASK_IO)}")
    contract = task_io(name, history_days)
    names = (tuple(t.name for t in inputs), tuple(t.name for t in outputs))
    if names != (contract.input_names, contract.output_names):
        raise BundleFormatError(
            f"{where}: graph I/O {names[0]} -> {names[1]} is not the task's contract "
            f"{contract.input_names} -> {contract.output_names} (edge.task_io)")


def _parse_task(name: str, data: dict[str, Any], manifest: dict[str, Any], root: Path) -> TaskSpec:
    where = f"{root}: task {name!r}"
    if not isinstance(data, dict):
        raise BundleFormatError(f"{where} must be an object")
    missing = [k for k in REQUIRED_TASK_FIELDS if k not in data]
    if missing:
        raise BundleFormatError(f"{where} lacks required fields {missing}")
    for sub, required in (("input_spec", REQUIRED_INPUT_SPEC_FIELDS), ("topk", REQUIRED_TOPK_FIELDS)):
        lacking = [k for k in required if k not in data[sub]]
        if lacking:
            raise BundleFormatError(f"{where}: {sub} lacks {lacking}")
    artifacts = {}
    for kind, file_name in data["artifacts"].items():
        if kind not in ARTIFACT_KINDS:
            raise BundleFormatError(f"{where}: unknown artifact kind {kind!r}; known: {ARTIFACT_KINDS}")
        if file_name not in manifest["artifacts"]:
            raise BundleFormatError(f"{where}: artifact {file_name!r} has no sha256 entry in the manifest")
        artifacts[kind] = root / file_name
    if not artifacts:
        raise BundleFormatError(f"{where} lists no model files")
    inputs = tuple(TensorSpec.from_dict(t, where) for t in data["inputs"])
    outputs = tuple(TensorSpec.from_dict(t, where) for t in data["outputs"])
    history_days = data["input_spec"].get("history_days", 0)
    if not isinstance(history_days, int) or history_days < 0:
        raise BundleFormatError(f"{where}: input_spec.history_days must be a whole number >= 0, got {history_days!r}")
    _check_contract(name, inputs, outputs, where, history_days)
    reference = data.get("reference")
    if reference is not None:
        file_name = reference.get("file") if isinstance(reference, dict) else None
        if file_name not in manifest["artifacts"]:
            raise BundleFormatError(f"{where}: reference file {file_name!r} has no sha256 entry in the manifest")
    return TaskSpec(
        name=name,
        inputs=inputs,
        outputs=outputs,
        input_spec=dict(data["input_spec"]),
        topk=dict(data["topk"]),
        artifacts=artifacts,
        metrics=dict(data.get("metrics", {})),
        calibration=dict(data.get("calibration", {})),
        reference=None if reference is None else root / reference["file"],
    )


def load_bundle(path: str | Path, *, check_runtimes: bool = True, trust: Any = None) -> Bundle:
    """Read and verify a bundle directory; raise a ``BundleError`` subclass if anything is wrong.

    Verifies (with ``trust``, an ``edge.signing.BundleTrust``) the signature over the manifest
    bytes, then the format name and version, the required fields, the size and sha256 of every
    artifact, and (``check_runtimes``) that at least one installed interpreter meets the
    bundle's minimum versions.
    """
    root = Path(path).resolve()
    raw = _read_manifest_bytes(root)
    signature = trust.check(root, raw) if trust is not None else "not checked"
    manifest = _parse_manifest(raw, root)
    _check_format(manifest, root)
    _verify_artifacts(manifest, root)
    tasks = {name: _parse_task(name, data, manifest, root) for name, data in manifest["tasks"].items()}
    min_versions = {str(k): str(v) for k, v in manifest["min_runtime_versions"].items()}
    if check_runtimes and not usable_runtimes(min_versions):
        found = {r: installed_version(r) for r in RUNTIME_DISTRIBUTIONS}
        raise BundleRuntimeError(
            f"{root}: no installed interpreter meets the bundle's minimum versions {min_versions} "
            f"(installed: {found}); pip install 'unimeter[edge]'"
        )
    return Bundle(
        path=root,
        manifest=manifest,
        tasks=tasks,
        appliances=tuple(str(a) for a in manifest["appliances"]),
        model_version=str(manifest["model_version"]),
        created_at=str(manifest["created_at"]),
        format_version=int(manifest["format_version"]),
        min_runtime_versions=min_versions,
        signature=signature,
    )
