"""Scale-out: the same pre-training under torchrun with 2 CPU processes (DDP, gloo) follows the
single-process loss curve. Real processes, real process group; nothing mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import sys, torch
    from trainer.data import synthetic_profiles
    from trainer.model import ModelConfig
    from trainer.pretrain import PretrainConfig, pretrain
    torch.set_num_threads(1)
    cfg = PretrainConfig(model=ModelConfig.tiny(), out_dir=sys.argv[1], epochs=3, batch_size=32,
                         log_every=1, progress=False, plot=False, resume=False)
    ckpt = pretrain(cfg, synthetic_profiles(320, seed=0), synthetic_profiles(64, seed=1))
    if len(sys.argv) > 2:  # fine-tuning runs under DDP too
        from trainer.data import anomaly_set
        from trainer.finetune import FinetuneConfig, finetune
        fcfg = FinetuneConfig("anomaly", out_dir=sys.argv[2], epochs=2, batch_size=32,
                              progress=False, plot=False)
        finetune(fcfg, ckpt, anomaly_set(synthetic_profiles(256, seed=2), seed=3),
                 anomaly_set(synthetic_profiles(64, seed=4), seed=5))
""")


def _single_process(out) -> None:
    from trainer.data import synthetic_profiles
    from trainer.model import ModelConfig
    from trainer.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(model=ModelConfig.tiny(), out_dir=str(out), epochs=3, batch_size=32,
                         log_every=1, progress=False, plot=False, resume=False, threads=1)
    pretrain(cfg, synthetic_profiles(320, seed=0), synthetic_profiles(64, seed=1))


def _losses(path) -> np.ndarray:
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    return np.array([r["loss"] for r in recs if "loss" in r])


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    _single_process(tmp / "single")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(script), str(tmp / "ddp"), str(tmp / "ddp_ft")],
                          env=env, timeout=300, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _losses(tmp / "single" / "metrics.jsonl"), _losses(tmp / "ddp" / "metrics.jsonl"), tmp


def test_ddp_loss_curve_matches_single_process(curves):
    single, ddp, _ = curves
    assert len(single) == len(ddp) == 3 * (320 // 32)
    # identical data order, masks and input noise; only gate/IB noise differs per rank
    assert abs(ddp[0] - single[0]) / single[0] < 0.1
    rel = np.abs(ddp - single) / single
    assert rel.mean() < 0.1
    tail = slice(-10, None)
    assert abs(ddp[tail].mean() - single[tail].mean()) / single[tail].mean() < 0.1
    assert ddp[tail].mean() < 0.6 * ddp[:3].mean()  # and it learns


def test_ddp_writes_one_checkpoint_from_rank_zero(curves):
    from trainer.checkpoint import load_pretrained_model

    _, _, tmp = curves
    model, ckpt = load_pretrained_model(tmp / "ddp" / "pretrain.pt")
    assert ckpt["step"] == 30
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])


def test_ddp_finetune_writes_a_task_model(curves):
    from trainer.checkpoint import load_task_model

    _, _, tmp = curves
    model = load_task_model(tmp / "ddp_ft" / "anomaly.pt")
    hist = model.checkpoint["extra"]["history"]
    assert model.task == "anomaly" and len(hist) == 2
    assert all(np.isfinite(h["val_loss"]) for h in hist)
