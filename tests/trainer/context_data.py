"""One simulated meter's own days as context-model training sets, and a tiny context bundle built
from them through the real fine-tuning and bundle writer (shared by tests/trainer/test_context.py
and tests/edge/agent/test_history.py)."""

from __future__ import annotations

from pathlib import Path

TZ = "Europe/London"
PROFILE_TASKS = ("imputation", "anomaly", "forecast")


def context_sets(history_days: int, days: int = 30) -> dict:
    """{"train" | "val": {"pretrain" | task: ArrayDataset}} from one household's 30-min days
    (latest 5 days = validation), windows every 4 hours, with ``history_days`` days of history."""
    from edge.data.loaders import MeterSeries
    from edge.data.profiles import to_profiles
    from edge.data.userdata import time_split
    from edge.features import CovariateSpec
    from tests.edge.data.userfiles import household
    from trainer import profile_sets as S

    tr = household(days=days, resolution_s=1800, tz=TZ, start="2024-04-01")
    prof = to_profiles(MeterSeries("m", tr.ts_s, tr.power_w.astype(float), resolution_s=1800), TZ)
    split = time_split(len(prof.dates), 0, 5)
    spec = CovariateSpec(tz=TZ)
    out = {}
    for part in ("train", "val"):
        parts = S.meter_parts([prof], [split], part)
        out[part] = {t: S.task_set(t, parts, spec, 8, seed=1, history_days=history_days)
                     for t in ("pretrain", *PROFILE_TASKS)}
    return out


def context_bundle(root: Path, history_days: int = 7, tasks=("imputation", "anomaly"), steps: int = 20,
                   **bundle_options) -> Path:
    """A bundle of ``tasks`` from tiny relu context models fine-tuned ``steps`` steps from scratch."""
    import torch

    from export.bundle_writer import BundleConfig, write_bundle
    from trainer.finetune import FinetuneConfig, finetune
    from trainer.model import ModelConfig

    torch.set_num_threads(1)
    sets = context_sets(history_days)
    model = ModelConfig.tiny(activation="relu", history_days=history_days)
    ckpts = {t: finetune(FinetuneConfig(task=t, out_dir=str(root / "ckpt"), epochs=1, max_steps=steps,
                                        batch_size=16, regularizer="none", progress=False, plot=False,
                                        resume=False, model=model), None, sets["train"][t], sets["val"][t])
             for t in tasks}
    cfg = BundleConfig(**{"include_dense": False, "check_windows": 8, **bundle_options})
    return write_bundle(ckpts, root / "bundle", model_version=f"context-test-D{history_days}", cfg=cfg)
