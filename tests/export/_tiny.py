"""A tiny trained model and its real bundle, built once per test session and shared by
tests/export, tests/edge/test_runtime.py and tests/edge/test_bundle.py (the cache is this
module's global, so a session pays for the training and the TFLite conversion once).

The model: ``ModelConfig.tiny`` with relu experts (2 layers, N_e=4, k=2, d_model=8), trained from
scratch through the real fine-tuning code for a few hundred steps on synthetic daily profiles.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TASKS = ("imputation", "anomaly")
_CACHE: dict[str, object] = {}


@dataclass
class Tiny:
    root: Path
    checkpoints: dict[str, Path]
    bundle: Path
    train: dict  # task -> ArrayDataset
    held_out: dict  # task -> ArrayDataset


def task_sets(n: int, seed: int) -> dict:
    from trainer.data import anomaly_set, imputation_set, synthetic_profiles

    profiles = synthetic_profiles(n, 48, seed=seed)
    return {"imputation": imputation_set(profiles, seed=seed + 1),
            "anomaly": anomaly_set(profiles, seed=seed + 2)}


def train_checkpoint(task: str, data, out_dir: Path, steps: int = 250, **model_overrides) -> Path:
    import torch

    from trainer.finetune import FinetuneConfig, finetune
    from trainer.model import ModelConfig

    torch.set_num_threads(1)
    model = ModelConfig.tiny(activation="relu", **model_overrides)
    cfg = FinetuneConfig(task=task, out_dir=str(out_dir), epochs=50, batch_size=32, lr=3e-3,
                         regularizer="none", max_steps=steps, progress=False, plot=False,
                         model=model, patience=50)
    return finetune(cfg, None, data)


def tiny() -> Tiny:
    """The shared tiny model and bundle (built on first use)."""
    if "tiny" in _CACHE:
        return _CACHE["tiny"]  # type: ignore[return-value]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from export.bundle_writer import BundleConfig, write_bundle

    root = Path(tempfile.mkdtemp(prefix="unimeter-tiny-"))
    train, held_out = task_sets(1024, seed=0), task_sets(256, seed=100)
    ckpts = {t: train_checkpoint(t, train[t], root / "ckpt") for t in TASKS}
    bundle = write_bundle(ckpts, root / "bundle", model_version="tiny-test-1",
                          cfg=BundleConfig(include_dense=False, check_windows=32))
    _CACHE["tiny"] = Tiny(root, ckpts, bundle, train, held_out)
    return _CACHE["tiny"]  # type: ignore[return-value]


def feeds(data, names, n: int | None = None) -> dict[str, np.ndarray]:
    return {k: np.asarray(data.arrays[k][:n], np.float32) for k in names}


def misread_int8_model(src: Path, dst: Path, task: str) -> Path:
    """A copy of bundle ``src`` whose ``<task>.int8.onnx`` has every uint8 tensor read with its top
    bit flipped (uint8 ^ 0x80: QMoE experts and int8 weights as a kernel with another weight
    convention would read them), re-hashed so the bundle still verifies: the graph loads and
    runs, only its numbers are wrong (what the runtime's self-check exists for)."""
    import json
    import shutil

    import onnx
    from onnx import TensorProto, numpy_helper

    from edge.bundle import sha256_file

    shutil.copytree(src, dst)
    path = dst / f"{task}.int8.onnx"
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.data_type == TensorProto.UINT8:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) ^ 0x80, init.name))
    onnx.save_model(model, str(path))
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["artifacts"][path.name].update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst
