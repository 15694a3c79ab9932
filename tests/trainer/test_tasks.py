"""Task heads, the section-5 I/O contract, export modules and checkpoints (real ONNX export and
onnxruntime for one task)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edge.task_io import TASK_IO
from trainer.checkpoint import (
    CheckpointError,
    load_pretrained_model,
    load_task_model,
    save_checkpoint,
)
from trainer.model import ModelConfig, UnifiedModel
from trainer.tasks import (
    TaskConfig,
    TaskError,
    TaskModel,
    export_module,
    nilm_local_features,
    on_pos_weight,
)

APPLIANCES = ["kettle", "fridge", "washing_machine"]
C = 24


def _task_cfg(task: str) -> TaskConfig:
    return TaskConfig(task, n_covariates=C if task == "forecast" else 0,
                      appliances=APPLIANCES if task == "nilm" else [])


def _model_cfg(task: str) -> ModelConfig:
    return ModelConfig.tiny(seq_len=120, n_patches=12) if task == "nilm" else ModelConfig.tiny()


def _batch(task: str, b: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    L = _model_cfg(task).seq_len
    load = 200 + 800 * torch.rand(b, L)
    obs = (torch.rand(b, L) > 0.3).float()
    return {"load_w": load * obs if task == "imputation" else load, "observed": obs,
            "target_w": load, "covariates": torch.randn(b, C),
            "window_label": torch.tensor([0.0, 1, 0, 1]), "point_label": (torch.rand(b, L) > 0.8).float(),
            "day_ahead_w": load[:, :48], "hour_ahead_w": load[:, :2],
            "appliance_w": 100 * torch.rand(b, 3, L), "appliance_on": (torch.rand(b, 3, L) > 0.5).float()}


@pytest.mark.parametrize("task", list(TASK_IO))
def test_task_outputs_follow_contract_and_train(task):
    model = TaskModel(_model_cfg(task), _task_cfg(task)).train()
    out, loss = model.loss(_batch(task))
    sizes = {"L": 120 if task == "nilm" else 48, "A": 3, "H_day": 48, "H_hour": 2}
    for tensor in TASK_IO[task].outputs:
        assert tuple(out[tensor.name].shape) == (4, *tensor.shape(sizes)[1:])
    loss.backward()
    assert torch.isfinite(loss)
    head_grads = [p.grad for n, p in model.named_parameters() if not n.startswith("backbone.")]
    assert all(g is not None and g.abs().sum() > 0 for g in head_grads)


def test_nilm_power_loss_is_gated_by_the_true_state():
    """An error on an OFF sample costs off_power_weight of the same error on an ON sample; the
    ON/OFF BCE weighs the rare ON samples up to balance the classes."""
    model = TaskModel(_model_cfg("nilm"), TaskConfig("nilm", appliances=APPLIANCES, on_loss_weight=0.0,
                                                     off_power_weight=0.1, regression_loss="l1")).eval()
    b = _batch("nilm")
    with torch.no_grad():
        out, enc = model.outputs(b)
    truth = out["appliance_w"].detach().clone()
    on = torch.zeros_like(truth)
    on[:, 0, :10] = 1.0
    scale = (enc.stats.mean_w.abs() + enc.stats.std_w)[:, :, None]

    def loss_with_error_where(mask):
        batch = {**b, "appliance_w": truth + mask * scale, "appliance_on": on}
        with torch.no_grad():
            return float(model.task_loss(batch, out, enc))

    w_sum = float((on + 0.1 * (1 - on)).sum())
    assert loss_with_error_where(on) == pytest.approx(on.sum().item() / w_sum, rel=1e-4)
    off_one = torch.zeros_like(on)
    off_one[:, 1, 0] = 1.0
    assert loss_with_error_where(off_one) == pytest.approx(0.1 * 4 / w_sum, rel=1e-4)
    pw = on_pos_weight(on)
    assert pw[0, 0] == pytest.approx(11.0)  # 1 in 12 samples ON: each weighs (1 - p) / p
    assert pw[1, 0] == 20.0  # none ON: the cap (it multiplies no sample)


def test_nilm_features_keep_a_tv_step_beside_a_kettle():
    """A 100 W step (a TV) in a window that also holds a 3 kW kettle: its step is at least half a
    unit in one of the head's per-sample inputs, as a 3 kW step is in kW. Without the log
    channels it is a few hundredths everywhere and the head cannot tell a TV from nothing."""
    load = torch.full((1, 120), 300.0)
    load[0, 20:40] += 3000.0  # kettle
    load[0, 70:] += 100.0  # TV on at sample 70
    model = TaskModel(_model_cfg("nilm"), _task_cfg("nilm")).eval()
    with torch.no_grad():
        _, enc = model.outputs({"load_w": load})
        feats = nilm_local_features(enc.fill_n, enc.stats)[0]  # [N_LOCAL, L]
    jump = (feats[:, 1:] - feats[:, :-1]).abs().amax(dim=0)  # [L - 1]: the largest change at each step
    assert float(jump[69]) >= 0.5  # 69 -> 70: the TV
    assert float(jump[19]) >= 2.0  # 19 -> 20: the kettle's step stays larger


def test_nilm_features_tell_an_ev_filled_window_from_a_quiet_one():
    """A window an EV charges through end to end (3.7 kW, no step) and a quiet 300 W window with
    the same wiggle: normalised, above the minimum and as steps they are the same; the level
    channel tells them apart (on validation the EV logit was about -2 in such windows)."""
    torch.manual_seed(0)
    wiggle = 20 * torch.rand(1, 120)
    model = TaskModel(_model_cfg("nilm"), _task_cfg("nilm")).eval()
    feats = []
    with torch.no_grad():
        for level in (300.0, 3700.0):
            _, enc = model.outputs({"load_w": level + wiggle})
            feats.append(nilm_local_features(enc.fill_n, enc.stats)[0])
    assert float((feats[1] - feats[0]).abs().amax(dim=1).max()) >= 2.0


def test_nilm_head_sees_an_oven_thermostat_period():
    """The per-sample head sees +-160 s at 10 s (an oven's 5-min thermostat period: a 2-min pulse
    and the edges around it), not only the +-40 s of a kettle's edge: with the patch summaries z
    held fixed, a change 12 samples (one pulse) away moves its output."""
    torch.manual_seed(0)
    model = TaskModel(_model_cfg("nilm"), _task_cfg("nilm")).eval()
    load = 300 + 50 * torch.rand(1, 120)
    with torch.no_grad():
        out, enc = model.outputs({"load_w": load})
        moved = enc.fill_n.clone()
        moved[0, 48] += 3.0
        base = model._nilm(enc)["on_logit"][0, :, 60]
        changed = model._nilm(dataclasses.replace(enc, fill_n=moved))["on_logit"][0, :, 60]
    assert not torch.allclose(base, changed)


def test_imputation_keeps_observed_points_and_fills_missing():
    model = TaskModel(ModelConfig.tiny(), _task_cfg("imputation")).eval()
    b = _batch("imputation")
    out = model(b)["load_w_filled"]
    obs = b["observed"].bool()
    torch.testing.assert_close(out[obs], b["load_w"][obs])
    assert (out[~obs] != 0).all()


def test_imputation_head_starts_from_recovery_head():
    model = TaskModel(ModelConfig.tiny(), _task_cfg("imputation")).eval()
    model.init_from_recovery()
    x = _batch("imputation")["target_w"]
    with torch.no_grad():
        rec, _ = model.backbone(x)
        out = model({"load_w": x, "observed": torch.zeros_like(x) + 1e-9})
    # with an (almost) empty observed mask the filled output is the recovery of g
    assert torch.isfinite(out["pred_w"]).all()
    with torch.no_grad():
        pred = model({"load_w": x, "observed": torch.ones_like(x)})["pred_w"]
    torch.testing.assert_close(pred, rec, rtol=1e-4, atol=1e-3)


def test_task_config_validation():
    with pytest.raises(TaskError):
        TaskConfig("classify")
    with pytest.raises(TaskError):
        TaskConfig("forecast")
    with pytest.raises(TaskError):
        TaskConfig("nilm")


@pytest.mark.parametrize("task", list(TASK_IO))
def test_checkpoint_round_trip(task, tmp_path):
    model = TaskModel(_model_cfg(task), _task_cfg(task)).eval()
    path = save_checkpoint(tmp_path / f"{task}.pt", model, kind="task", model_cfg=model.model_cfg,
                           task_cfg=model.task_cfg, metrics={"val": 1.5})
    loaded = load_task_model(path)
    assert loaded.checkpoint["metrics"] == {"val": 1.5}
    assert loaded.checkpoint["appliances"] == (APPLIANCES if task == "nilm" else [])
    b = _batch(task)
    with torch.no_grad():
        for name in TASK_IO[task].output_names:
            torch.testing.assert_close(model(b)[name], loaded(b)[name])
    with pytest.raises(CheckpointError, match="not 'pretrain'"):
        load_pretrained_model(path)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_task_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_task_model(junk)
    base = UnifiedModel(ModelConfig.tiny())
    p = save_checkpoint(tmp_path / "pre.pt", base, kind="pretrain", model_cfg=base.cfg)
    with pytest.raises(CheckpointError, match="not a task model"):
        load_task_model(p)
    rebuilt, ckpt = load_pretrained_model(p)
    assert ckpt["data_spec"]["seq_len"] == 48 and rebuilt.cfg == base.cfg


@pytest.mark.parametrize("task", list(TASK_IO))
def test_export_module_takes_contract_inputs(task):
    model = TaskModel(_model_cfg(task), _task_cfg(task)).train()
    em = export_module(model)
    assert model.training and model.backbone.moe_layers()[0].dispatch == "loop"  # caller untouched
    assert em.input_names == TASK_IO[task].input_names and em.output_names == TASK_IO[task].output_names
    inputs = em.example_inputs(2)
    with torch.no_grad():
        outs = em(*inputs)
    assert len(outs) == len(em.output_names)
    assert all(torch.isfinite(o).all() for o in outs)
    assert all(m.dispatch == "gather" for m in em.model.backbone.moe_layers())


def test_forecast_export_runs_in_onnxruntime_with_sparse_routing(tmp_path):
    import onnx
    import onnxruntime as ort

    model = TaskModel(ModelConfig.tiny(), _task_cfg("forecast"))
    for moe in model.backbone.moe_layers():
        torch.nn.init.normal_(moe.gate.w_g.weight)
    em = export_module(model)
    b = _batch("forecast")
    inputs = (b["load_w"], b["covariates"])
    path = tmp_path / "forecast.onnx"
    torch.onnx.export(em, inputs, str(path), input_names=list(em.input_names),
                      output_names=list(em.output_names), dynamo=True, opset_version=18)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"TopK", "Gather", "MatMul"} <= ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: t.numpy() for n, t in zip(em.input_names, inputs, strict=True)})
    with torch.no_grad():
        ref = em(*inputs)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r.numpy(), rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("kind", ["mse", "l1", "huber"])
def test_regression_loss_options(kind):
    model = TaskModel(ModelConfig.tiny(), TaskConfig("imputation", regression_loss=kind)).eval()
    b = _batch("imputation")
    with torch.no_grad():
        out, loss = model.loss(b)
    tgt = b["target_w"]
    err = (out["pred_w"] - tgt) / tgt.std(1, unbiased=False, keepdim=True)
    point = {"mse": err ** 2, "l1": err.abs(),
             "huber": torch.where(err.abs() < 1, 0.5 * err ** 2, err.abs() - 0.5)}[kind]
    miss = 1 - b["observed"]
    weight = miss + 0.1 * (1 - miss)
    torch.testing.assert_close(loss, (point * weight).sum() / weight.sum(), rtol=1e-4, atol=1e-5)
    with pytest.raises(TaskError):
        TaskConfig("imputation", regression_loss="l3")


def test_default_regression_losses():
    assert TaskConfig("imputation").regression_loss == "l1"
    assert TaskConfig("forecast", n_covariates=3).regression_loss == "mse"
