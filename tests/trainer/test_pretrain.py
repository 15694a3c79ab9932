"""Pre-training (Alg. 2): learning, seeding, metrics log, plot, checkpoints, resume, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.checkpoint import load_checkpoint, load_pretrained_model
from trainer.data import DataError, synthetic_profiles
from trainer.loop import ResumeError
from trainer.model import ModelConfig
from trainer.pretrain import PretrainConfig, pretrain, read_metrics


def _cfg(out, **kw) -> PretrainConfig:
    base = dict(model=ModelConfig.tiny(), out_dir=str(out), epochs=4, batch_size=32, log_every=2,
                progress=False, threads=1)
    base.update(kw)
    return PretrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return synthetic_profiles(384, seed=0), synthetic_profiles(96, seed=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("pretrain")
    path = pretrain(_cfg(out), *data)
    return out, path


def test_loss_decreases_and_metrics_are_logged(run):
    out, _ = run
    recs = read_metrics(out / "metrics.jsonl")
    steps = [r for r in recs if "loss" in r]
    epochs = [r for r in recs if "expert_utilisation" in r]
    assert len(epochs) == 4 and steps[-1]["step"] == 4 * (384 // 32)
    assert np.mean([r["loss"] for r in steps[-3:]]) < 0.6 * np.mean([r["loss"] for r in steps[:2]])
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    for key in ("recon", "kl", "balance", "lr", "samples_per_s"):
        assert key in steps[-1]
    util = np.asarray(epochs[-1]["expert_utilisation"])
    assert util.shape == (2, 4)
    np.testing.assert_allclose(util.sum(1), 1.0, rtol=1e-5)


def test_plot_is_a_png(run):
    out, _ = run
    assert (out / "pretrain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_rebuilds_model_from_file_alone(run, data):
    out, path = run
    model, ckpt = load_pretrained_model(path)
    assert ckpt["model_config"] == ModelConfig.tiny().to_dict()
    assert ckpt["data_spec"]["seq_len"] == 48 and ckpt["optimizer"] is None
    assert ckpt["metrics"]["val_masked_mae_w"] > 0
    x = torch.from_numpy(data[1][:8])
    with torch.no_grad():
        rec, _ = model(x)
    # a trained model recovers the (unmasked) profile far better than its mean
    err = (rec - x).abs().mean()
    assert err < 0.75 * (x - x.mean(1, keepdim=True)).abs().mean()
    assert torch.load(out / "last.pt", weights_only=False)["optimizer"]["state"]  # resumable


def test_seeded_runs_are_identical(tmp_path, data):
    a = pretrain(_cfg(tmp_path / "a", epochs=1, plot=False), data[0])
    b = pretrain(_cfg(tmp_path / "b", epochs=1, plot=False), data[0])
    sa, sb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_continues_exactly(tmp_path, data):
    full = pretrain(_cfg(tmp_path / "full", epochs=2, plot=False), data[0])
    pretrain(_cfg(tmp_path / "part", epochs=2, plot=False, max_steps=7), data[0])  # stops mid-epoch
    assert torch.load(tmp_path / "part" / "last.pt", weights_only=False)["loop"]["step"] == 7
    resumed = pretrain(_cfg(tmp_path / "part", epochs=2, plot=False), data[0])
    sf, sr = load_checkpoint(full)["state_dict"], load_checkpoint(resumed)["state_dict"]
    assert load_checkpoint(resumed)["step"] == 24
    for k in sf:
        torch.testing.assert_close(sf[k], sr[k], rtol=1e-5, atol=1e-6)


def test_resume_refuses_another_model_config(tmp_path, data):
    pretrain(_cfg(tmp_path, epochs=1, plot=False, max_steps=2), data[0])
    with pytest.raises(ResumeError, match="another configuration"):
        pretrain(_cfg(tmp_path, epochs=1, plot=False, model=ModelConfig.tiny(d_expert=16)), data[0])


def test_bad_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="seq_len"):
        pretrain(_cfg(tmp_path), synthetic_profiles(64, length=96))
    bad = synthetic_profiles(64)
    bad[3, 5] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        pretrain(_cfg(tmp_path), bad)
    with pytest.raises(DataError, match="one batch"):
        pretrain(_cfg(tmp_path), synthetic_profiles(8))


def test_non_finite_loss_stops_training_clearly():
    from trainer.loop import TrainingError, check_finite

    check_finite(torch.tensor(1.0), 0)
    with pytest.raises(TrainingError, match="step 3"):
        check_finite(torch.tensor(float("nan")), 3)
