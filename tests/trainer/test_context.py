"""The context model (``trainer.context``): a meter's days before the window in, trained through the
real pre-training / fine-tuning code on one meter's own days (``trainer.profile_sets``), exported
to ONNX with sparse top-k routing, and run in onnxruntime against PyTorch. D = 0 is the
single-window model of seed 000 and keeps its graph I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.errors import DataError
from edge.features import N_COVARIATES
from edge.task_io import HISTORY_MASK, HISTORY_W, task_io
from tests.trainer.context_data import PROFILE_TASKS as TASKS
from tests.trainer.context_data import context_sets
from trainer.context import (
    RUN_HOURS,
    context_norm,
    imputation_candidates,
    point_evidence,
    trailing_mean,
)
from trainer.model import ModelConfig, UnifiedModel
from trainer.tasks import TaskConfig, TaskModel, export_module

D = 7


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """D = 7: pre-trained (target patches masked, history days dropped), then each profile task
    fine-tuned for a few steps from the backbone; checkpoints by task."""
    from trainer.finetune import FinetuneConfig, finetune
    from trainer.pretrain import PretrainConfig, pretrain

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("context")
    sets = context_sets(D)
    model = ModelConfig.tiny(activation="relu", history_days=D)
    pre = pretrain(PretrainConfig(model=model, out_dir=str(root / "pre"), epochs=1, max_steps=20,
                                  batch_size=16, progress=False, plot=False, resume=False),
                   sets["train"]["pretrain"], sets["val"]["pretrain"])
    ckpts = {t: finetune(FinetuneConfig(task=t, out_dir=str(root / "ft"), epochs=1, max_steps=20,
                                        batch_size=16, progress=False, plot=False, resume=False),
                         pre, sets["train"][t], sets["val"][t]) for t in TASKS}
    return {"pretrain": pre, "sets": sets, "ckpts": ckpts, "root": root}


def test_context_sets_carry_d_days_of_history():
    sets = context_sets(D)
    for t in ("pretrain", *TASKS):
        ds = sets["train"][t]
        n, L = ds.arrays["load_w"].shape
        assert ds.arrays["history_w"].shape == (n, D, L) and ds.arrays["history_mask"].shape == (n, D)
    # the first training windows lie in the meter's first week: their oldest days are missing
    mask = sets["train"]["imputation"].arrays["history_mask"]
    assert mask[0].sum() < D and mask[-1].all()


def test_checkpoint_stores_history_days_and_rebuilds_the_model_alone(trained):
    from trainer.checkpoint import load_task_model

    for task, path in trained["ckpts"].items():
        model = load_task_model(path)
        assert model.model_cfg.history_days == D
        assert model.input_names == task_io(task, D).input_names
        assert HISTORY_W in model.input_names and HISTORY_MASK in model.input_names


def test_the_history_changes_the_output(trained):
    """A day scaled by 1.3 looks the same as the clean day to instance normalisation; against the
    household's history it does not."""
    from trainer.checkpoint import load_task_model

    model = load_task_model(trained["ckpts"]["anomaly"]).eval()
    data = trained["sets"]["val"]["anomaly"].arrays
    batch = {k: torch.from_numpy(np.asarray(v[:8], np.float32)) for k, v in data.items()}
    with torch.no_grad():
        with_history = model(batch)["window_logit"]
        batch[HISTORY_MASK] = torch.zeros_like(batch[HISTORY_MASK])
        without = model(batch)["window_logit"]
    assert not torch.allclose(with_history, without)


def test_a_context_model_refuses_data_without_history(trained):
    from trainer.finetune import FinetuneConfig, finetune

    plain = context_sets(0)["train"]["anomaly"]
    with pytest.raises(DataError, match="history"):
        finetune(FinetuneConfig(task="anomaly", out_dir=str(trained["root"] / "bad"), epochs=1, max_steps=1,
                                batch_size=16, progress=False, plot=False, resume=False),
                 trained["pretrain"], plain)


def test_missing_days_are_masked_not_read():
    """What a missing history day holds does not matter: the graph zeroes it."""
    torch.manual_seed(0)
    model = UnifiedModel(ModelConfig.tiny(history_days=D)).eval()
    x = 300 + 100 * torch.rand(2, 48)
    hist = 300 + 100 * torch.rand(2, D, 48)
    mask = torch.ones(2, D)
    mask[:, :3] = 0
    junk = hist.clone()
    junk[:, :3] = 1e6
    with torch.no_grad():
        a, _ = model(x, history_w=hist, history_mask=mask)
        b, _ = model(x, history_w=junk, history_mask=mask)
    torch.testing.assert_close(a, b)


def test_candidates_include_a_level_matched_copy_of_last_week():
    L = 48
    day = torch.linspace(100, 500, L)[None]
    hist = torch.stack([day[0] * (1 + 0.1 * k) for k in range(D)])[None]
    obs = torch.ones(1, L)
    obs[:, 10:20] = 0
    ctx = context_norm(day * 2, obs, hist, torch.ones(1, D))
    cands = ctx.denorm(imputation_candidates(ctx))
    assert cands.shape == (1, 4, L)
    week = cands[0, 3]  # last week's day (the oldest, 1.0 x day) shifted to today's level
    shift = (day[0] * 2 - day[0])[obs[0] > 0].mean()
    torch.testing.assert_close(week, day[0] + shift, rtol=1e-4, atol=1e-2)


def test_trailing_mean_averages_each_point_with_the_ones_before_it():
    x = torch.arange(6.0)[None]
    torch.testing.assert_close(trailing_mean(x, 3), torch.tensor([[0.0, 1 / 3, 1.0, 2.0, 3.0, 4.0]]))


def test_hours_of_under_reporting_show_in_the_run_evidence_not_one_low_point():
    """p' = 0.2 p over the last 6 h: the 3-h runs of the log ratio to the per-slot minimum fall by
    about log(0.2); one point at 0.2 p moves a 3-h run by a sixth of that."""
    L = 48
    rng = np.random.default_rng(0)
    hist = torch.tensor(200 + 300 * rng.random((1, D, L)), dtype=torch.float32)
    day = hist[:, -1].clone()
    thief, blip = day.clone(), day.clone()
    thief[:, -12:] *= 0.2
    blip[:, -1] *= 0.2
    runs = {name: point_evidence(context_norm(x, torch.ones(1, L), hist, torch.ones(1, D)))[0, -1, -2 * len(RUN_HOURS):]
            for name, x in (("clean", day), ("thief", thief), ("blip", blip))}
    to_min_3h = 1  # channels: (3 h: to mean, to minimum), (6 h: to mean, to minimum)
    drop = runs["clean"][to_min_3h] - runs["thief"][to_min_3h]
    assert drop > 0.5 * np.log(5.0)
    assert runs["clean"][to_min_3h] - runs["blip"][to_min_3h] < drop / 3


@pytest.mark.parametrize("history_days", [0, D])
def test_export_runs_in_onnxruntime_with_sparse_routing(history_days, tmp_path):
    """Each profile task of a D = 7 model and the forecast of a D = 0 model, exported with sparse dispatch: TopK +
    Gather in the graph, onnxruntime equals PyTorch."""
    import onnx
    import onnxruntime as ort

    from export.bundle_writer import _check_inputs
    from export.onnx_export import OnnxExportConfig, export_onnx

    torch.manual_seed(0)
    for task in TASKS if history_days else ("forecast",):  # D = 0: the other tasks in test_tasks.py
        model = TaskModel(ModelConfig.tiny(activation="relu", history_days=history_days), TaskConfig(task=task, n_covariates=N_COVARIATES if task == "forecast" else 0))
        for moe in model.backbone.moe_layers():
            torch.nn.init.normal_(moe.gate.w_g.weight)
        em = export_module(model)
        assert em.input_names == task_io(task, history_days).input_names
        path = tmp_path / f"{task}_{history_days}.onnx"
        export_onnx(em, path, OnnxExportConfig(dispatch="sparse"))
        graph = onnx.load(str(path)).graph
        assert {"TopK", "Gather"} <= {n.op_type for n in graph.node}
        assert [i.name for i in graph.input] == list(em.input_names)
        feeds = _check_inputs(em, 8)
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
        with torch.no_grad():
            ref = em(*(torch.from_numpy(feeds[n]) for n in em.input_names))
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_allclose(g, r.numpy(), rtol=1e-3, atol=1e-2 * float(np.abs(r.numpy()).mean() + 1))


def test_the_moe_op_graph_equals_pytorch_on_missing_days_and_points(tmp_path):
    """The shipped fp32 graph (com.microsoft.MoE dispatch, the int8 model's source) of each profile
    task equals PyTorch on windows with gaps, missing history days, no history day at all and no
    observed point, at the tolerances above; and the context code stays within its node budget (it
    was 305 nodes for an imputation call of the Pi student before the batched context code, 247 after;
    the tiny model here has half the layers)."""
    import onnx
    import onnxruntime as ort

    from export.bundle_writer import _check_inputs
    from export.onnx_export import OnnxExportConfig, export_onnx

    torch.manual_seed(0)
    for task in TASKS:
        model = TaskModel(ModelConfig.tiny(activation="relu", history_days=D),
                          TaskConfig(task=task, n_covariates=N_COVARIATES if task == "forecast" else 0))
        for p in model.parameters():  # the zero-initialised heads would hide the candidates' weights
            if not p.abs().sum():
                torch.nn.init.normal_(p, std=0.1)
        em = export_module(model, "moe_op")
        path = export_onnx(em, tmp_path / f"{task}.onnx", OnnxExportConfig(dispatch="moe_op"))
        graph = onnx.load(str(path)).graph
        assert "MoE" in {n.op_type for n in graph.node}
        assert len(graph.node) < {"imputation": 230, "anomaly": 340, "forecast": 240}[task]
        feeds = _check_inputs(em, 6)
        if "observed" in feeds:
            feeds["observed"][1, 10:30] = 0.0  # a gap
            feeds["observed"][2] = 0.0  # nothing observed
        feeds[HISTORY_MASK][3, [0, 4, 6]] = 0.0  # missing days, yesterday among them
        feeds[HISTORY_MASK][4] = 0.0  # no history day at all
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
        with torch.no_grad():
            ref = em(*(torch.from_numpy(feeds[n]) for n in em.input_names))
        for g, r in zip(got, ref, strict=True):
            assert np.isfinite(g).all()
            np.testing.assert_allclose(g, r.numpy(), rtol=1e-3, atol=1e-2 * float(np.abs(r.numpy()).mean() + 1))
