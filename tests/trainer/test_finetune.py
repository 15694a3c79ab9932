"""Fine-tuning (Alg. 1, eq 2) for every task from one pre-trained checkpoint, on simulator data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.sim import simulate_fleet
from edge.task_io import TASK_IO
from trainer import data as d
from trainer.checkpoint import load_pretrained_model, load_task_model
from trainer.finetune import FinetuneConfig, finetune
from trainer.model import ModelConfig
from trainer.pretrain import PretrainConfig, pretrain


@pytest.fixture(scope="module")
def profiles():
    ds = d.simulate_profiles(16, 14, seed=3)
    return d.split_by_household(ds, (0.75, 0.25), seed=0)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, profiles):
    out = tmp_path_factory.mktemp("pre")
    cfg = PretrainConfig(model=ModelConfig.tiny(), out_dir=str(out), epochs=3, batch_size=16,
                         progress=False, plot=False, threads=1)
    return pretrain(cfg, profiles[0], profiles[1])


@pytest.fixture(scope="module")
def nilm_setup(tmp_path_factory):
    ds = d.high_rate_windows(simulate_fleet(4, 1, resolution_s=60, seed=5), window=120,
                             appliances=["fridge", "kettle", "washing_machine"])
    train, val = d.split_by_household(ds, (0.75, 0.25), seed=0)
    out = tmp_path_factory.mktemp("pre_nilm")
    cfg = PretrainConfig(model=ModelConfig.tiny(seq_len=120, n_patches=12), out_dir=str(out),
                         epochs=2, batch_size=8, progress=False, plot=False, threads=1)
    return pretrain(cfg, train), train, val


def _sets(task, profiles):
    build = {"imputation": lambda p, s: d.imputation_set(p.arrays["load_w"], seed=s),
             "anomaly": lambda p, s: d.anomaly_set(p.arrays["load_w"], seed=s),
             "forecast": lambda p, s: d.forecast_set(p, stride_steps=12)}[task]
    return build(profiles[0], 1), build(profiles[1], 2)


def _ft(tmp_path, task, **kw) -> FinetuneConfig:
    base = dict(task=task, out_dir=str(tmp_path), epochs=3, batch_size=16, progress=False, threads=1)
    base.update(kw)
    return FinetuneConfig(**base)


@pytest.mark.parametrize("task", ["imputation", "anomaly", "forecast"])
def test_finetune_every_profile_task(task, tmp_path, pretrained, profiles):
    train, val = _sets(task, profiles)
    path = finetune(_ft(tmp_path, task), pretrained, train, val)
    model = load_task_model(path)
    hist = model.checkpoint["extra"]["history"]
    assert min(h["train_loss"] for h in hist[1:]) < hist[0]["train_loss"]
    assert model.checkpoint["metrics"]["best_val_loss"] == min(h["val_loss"] for h in hist)
    assert (tmp_path / f"{task}_finetune.png").is_file()
    batch = {k: torch.from_numpy(np.asarray(v[:4], np.float32)) for k, v in val.arrays.items()}
    with torch.no_grad():
        out = model(batch)
    assert all(torch.isfinite(out[n]).all() for n in TASK_IO[task].output_names)
    if task == "forecast":
        assert model.checkpoint["data_spec"]["covariate_names"][0] == "weekday_mon"


def test_imputation_beats_zero_and_mean_fill(tmp_path, pretrained, profiles):
    train, val = _sets("imputation", profiles)
    model = load_task_model(finetune(_ft(tmp_path, "imputation", epochs=6), pretrained, train, val))
    a = val.arrays
    with torch.no_grad():
        filled = model({"load_w": torch.from_numpy(a["load_w"]),
                        "observed": torch.from_numpy(a["observed"])})["load_w_filled"].numpy()
    miss = a["observed"] == 0
    mean_fill = (a["load_w"] * a["observed"]).sum(1, keepdims=True) / a["observed"].sum(1, keepdims=True)
    mae = np.abs(filled - a["target_w"])[miss].mean()
    mae_mean = np.abs(np.broadcast_to(mean_fill, a["target_w"].shape) - a["target_w"])[miss].mean()
    assert mae < mae_mean


def test_nilm_on_high_rate_windows(tmp_path, nilm_setup):
    ckpt, train, val = nilm_setup
    path = finetune(_ft(tmp_path, "nilm", batch_size=8), ckpt, train, val)
    model = load_task_model(path)
    assert model.task_cfg.appliances == ["fridge", "kettle", "washing_machine"]
    assert model.checkpoint["data_spec"]["resolution_s"] == 60 and model.model_cfg.seq_len == 120
    x = torch.from_numpy(val.arrays["load_w"][:2])
    with torch.no_grad():
        out = model({"load_w": x})
    assert out["appliance_w"].shape == (2, 3, 120) and (out["appliance_w"] >= 0).all()


def _backbone_shift(path, pretrained) -> float:
    tuned = load_task_model(path).backbone.state_dict()
    ref = load_pretrained_model(pretrained)[0].state_dict()
    return sum(float(((tuned[k] - ref[k]) ** 2).sum()) for k in ref)


def test_regularisers(tmp_path, pretrained, profiles):
    train, val = _sets("anomaly", profiles)
    shift = {reg: _backbone_shift(finetune(_ft(tmp_path / reg, "anomaly", regularizer=reg,
                                                reg_lambda=10.0, lr=3e-3), pretrained, train, val),
                                  pretrained)
             for reg in ("none", "l2sp", "frozen")}
    assert shift["frozen"] == 0.0
    assert 0 < shift["l2sp"] < shift["none"]


def test_wrong_window_length_is_a_clear_error(tmp_path, pretrained):
    bad = d.imputation_set(d.synthetic_profiles(64, length=96))
    with pytest.raises(d.DataError, match="seq_len"):
        finetune(_ft(tmp_path, "imputation"), pretrained, bad)
    with pytest.raises(d.DataError, match="lacks"):
        finetune(_ft(tmp_path, "forecast"), pretrained, {"load_w": np.zeros((64, 48), np.float32)})
