"""The end-to-end pipeline (the "quick" preset behind the tiny_bundle fixture): simulate, pretrain
both backbones, fine-tune four tasks, distill, export one verified bundle, and say what it did."""

from __future__ import annotations

import json

import pytest

from edge.bundle import load_bundle
from edge.task_io import TASK_IO, TASKS
from export.pipeline import DEFAULT_NILM_APPLIANCES, PipelineConfig


def test_the_quick_pipeline_writes_one_bundle_of_all_four_tasks(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert set(bundle.tasks) == set(TASKS) and bundle.model_version == "quick-1"
    for task, spec in bundle.tasks.items():
        assert tuple(t.name for t in spec.outputs) == TASK_IO[task].output_names
        assert "onnx_int8" in spec.artifacts
    assert set(bundle.appliances) <= set(DEFAULT_NILM_APPLIANCES) and bundle.appliances
    assert bundle.tasks["nilm"].input_spec["resolution_s"] == 60
    assert bundle.tasks["imputation"].input_spec["resolution_s"] == 1800


def test_the_pipeline_summary_names_every_stage_and_student(tiny_bundle):
    summary = json.loads((tiny_bundle.parent / "pipeline.json").read_text())
    assert summary["config"]["seed"] == 0 and summary["config"]["households"] == 8
    text = json.dumps(summary)
    for stage in ("pretrain profile backbone", "pretrain NILM backbone", "export bundle"):
        assert stage in text


def test_presets_and_unknown_preset(tmp_path):
    quick = PipelineConfig.preset("quick", tmp_path)
    assert quick.pretrain_steps < PipelineConfig(out_dir=tmp_path).pretrain_steps
    with pytest.raises((KeyError, ValueError)):
        PipelineConfig.preset("enormous", tmp_path)
