"""trainer.distill: the student learns from every teacher head, is saved in the task checkpoint
format, and the report states each task metric for teacher and student."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge.cli import main
from tests.export._tiny import tiny
from trainer.checkpoint import load_task_model
from trainer.data import ArrayDataset
from trainer.distill import (
    DistillConfig,
    HiddenTokens,
    default_student_config,
    distill,
    distill_loss,
    expert_usage,
    init_from_teacher,
    layer_map,
    predict,
    student_from_teacher,
    teacher_initialisable,
)
from trainer.model import ModelConfig
from trainer.tasks import TaskModel

STUDENT = dict(d_model=8, d_k=4, n_layers=1, n_experts=4, top_k=2, d_expert=8, activation="relu", dropout=0.0)


@pytest.fixture(scope="module")
def t():
    return tiny()


@pytest.fixture(scope="module")
def distilled(t, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill")
    cfg = DistillConfig(out_dir=str(out), epochs=3, batch_size=32, lr=3e-3, max_steps=60, progress=False,
                        w_z=0.5, seed=0, init="teacher", select_on="metric")
    teacher = load_task_model(t.checkpoints["imputation"])
    student_cfg = ModelConfig(seq_len=48, n_patches=12, **STUDENT)
    path = distill(t.checkpoints["imputation"], student_cfg, t.train["imputation"],
                   t.held_out["imputation"], cfg)
    return path, out, teacher, student_cfg


def _kd(student: TaskModel, teacher: TaskModel, data: ArrayDataset) -> float:
    batch = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in data.arrays.items()}
    student.eval()
    with torch.no_grad():
        t_out, t_enc = teacher.outputs(batch)
        s_out = student(batch)
        return float(distill_loss("imputation", s_out, t_out, t_enc.stats.std_w, 2.0))


def test_student_checkpoint_loads_and_is_smaller(distilled):
    path, _, teacher, student_cfg = distilled
    student = load_task_model(path)
    assert student.task == "imputation" and student.model_cfg == student_cfg
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())


def test_student_moves_towards_the_teacher(t, distilled):
    path, _, teacher, student_cfg = distilled
    torch.manual_seed(0)
    untrained = TaskModel(student_cfg, teacher.task_cfg)
    trained = load_task_model(path)
    held_out = t.held_out["imputation"]
    assert _kd(trained, teacher, held_out) < 0.8 * _kd(untrained, teacher, held_out)


def test_report_states_teacher_and_student_metrics(t, distilled):
    path, out, teacher, _ = distilled
    report = json.loads((out / "imputation_distill_report.json").read_text())
    for who in ("teacher", "student"):
        assert set(report[who]) >= {"mae_w", "rmse_w"} and report[who]["mae_w"] > 0
    assert report["student_parameters"] < report["teacher_parameters"]
    assert load_task_model(path).checkpoint["metrics"]["distill"]["teacher"] == report["teacher"]
    assert (out / "imputation_distill.png").stat().st_size > 1000
    # the teacher metric in the report is the teacher's real MAE on the validation windows
    held_out = t.held_out["imputation"]
    pred = predict(teacher, held_out)["load_w_filled"]
    miss = held_out.arrays["observed"] < 0.5
    mae = float(np.abs(pred[miss] - held_out.arrays["target_w"][miss]).mean())
    assert report["teacher"]["mae_w"] == pytest.approx(mae, rel=1e-5)


def test_distill_loss_covers_watts_and_logits():
    std = torch.tensor([[100.0], [1000.0]])
    same = {"pred_w": torch.full((2, 48), 500.0)}
    assert float(distill_loss("imputation", same, same, std, 2.0)) == 0.0
    off = {"pred_w": same["pred_w"] + 100.0}
    # 100 W off is 1 std for the first window and 0.1 std for the second: mean of 1 and 0.01
    assert float(distill_loss("imputation", off, same, std, 2.0)) == pytest.approx(0.505)
    logits = torch.randn(2, 48)
    s = logits.clone().requires_grad_(True)
    loss = distill_loss("anomaly", {"point_logit": s}, {"point_logit": logits}, std, 2.0)
    loss.backward()
    assert s.grad.abs().max() < 1e-6  # minimum where the student equals the teacher
    moved = distill_loss("anomaly", {"point_logit": logits + 1}, {"point_logit": logits}, std, 2.0)
    assert float(moved) > float(loss.detach())


def test_default_student_is_table1_width_with_relu():
    s = default_student_config(ModelConfig.teacher())
    assert (s.d_model, s.n_experts, s.top_k, s.activation) == (16, 8, 2, "relu")
    assert s.n_layers < ModelConfig.teacher().n_layers


def test_cli_train_distill(t, tmp_path, capsys):
    npy = tmp_path / "profiles.npy"
    np.save(npy, t.train["imputation"].arrays["target_w"][:256])
    rc = main(["train", "distill", "--teacher", str(t.checkpoints["imputation"]), "--profiles-npy", str(npy),
               "--epochs", "1", "--max-steps", "4", "--batch-size", "32", "--out", str(tmp_path / "out"),
               "--no-progress", "--student-json", json.dumps(STUDENT)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "mae_w teacher" in printed and "student" in printed
    assert load_task_model(tmp_path / "out" / "imputation.pt").model_cfg.d_model == 8


def test_a_full_depth_copy_of_the_teacher_gives_the_teachers_outputs(t):
    teacher = load_task_model(t.checkpoints["imputation"])
    same = ModelConfig(**{**teacher.model_cfg.to_dict(), "dropout": 0.0})
    assert teacher_initialisable(same, teacher.model_cfg)
    student = TaskModel(same, teacher.task_cfg)
    init_from_teacher(student, teacher, layer_map(2, 2))
    held_out = t.held_out["imputation"].subset(np.arange(64))
    np.testing.assert_array_equal(predict(student, held_out)["load_w_filled"],
                                  predict(teacher, held_out)["load_w_filled"])


def test_a_shallower_student_with_fewer_experts_takes_the_teachers_layers_and_most_used_experts(t):
    teacher = load_task_model(t.checkpoints["imputation"])
    s_cfg = ModelConfig(**{**teacher.model_cfg.to_dict(), "n_layers": 1, "n_experts": 2, "dropout": 0.0})
    student, kept = student_from_teacher(teacher, s_cfg, t.train["imputation"].subset(np.arange(256)))
    assert kept["layers"] == [1] and layer_map(4, 2) == [0, 3] and layer_map(4, 3) == [0, 2, 3]
    usage = expert_usage(teacher, t.train["imputation"].subset(np.arange(256)))[1]
    assert kept["experts"] == [sorted(torch.argsort(usage, descending=True)[:2].tolist())]
    s_ffn, t_ffn = student.backbone.layers[0].ffn, teacher.backbone.layers[1].ffn
    idx = torch.tensor(kept["experts"][0])
    assert torch.equal(s_ffn.w1, t_ffn.w1[idx]) and torch.equal(s_ffn.gate.w_g.weight, t_ffn.gate.w_g.weight[idx])
    assert torch.equal(student.head.out.weight, teacher.head.out.weight) if hasattr(student.head, "out") \
        else torch.equal(student.head.weight, teacher.head.weight)
    assert s_cfg.top_k == teacher.model_cfg.top_k == 2  # routing stays sparse top-k


def test_the_distilled_student_starts_from_the_teacher_and_learns_its_hidden_tokens(t, distilled):
    path, out, teacher, _ = distilled
    report = json.loads((out / "imputation_distill_report.json").read_text())
    assert report["init"]["from"] == "teacher" and report["init"]["layers"] == [1]
    assert report["selected_on"] == "mae_w"
    # the kept weights are never worse on validation than the teacher-initialised start
    assert report["best_val_loss"] <= report["start_val_loss"]
    assert report["student"]["mae_w"] == pytest.approx(report["best_val_loss"], rel=1e-5)
    # TinyBERT's hidden-token term: lower after distillation than at the teacher-initialised start
    start, _ = student_from_teacher(teacher, load_task_model(path).model_cfg, t.train["imputation"])
    assert _hidden(load_task_model(path), teacher, t) < 0.8 * _hidden(start, teacher, t)


def _hidden(student: TaskModel, teacher: TaskModel, t) -> float:
    hooks = HiddenTokens(student, teacher, [1])
    batch = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in t.held_out["imputation"].arrays.items()}
    student.eval()
    with torch.no_grad():
        teacher.outputs(batch)
        student.outputs(batch)
        loss = float(hooks.loss())
    hooks.remove()
    return loss
