"""The end-to-end pipeline (the "quick" preset behind the tiny_bundle fixture): simulate, pretrain
both backbones, fine-tune four tasks, distill, export one verified bundle, and say what it did."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.task_io import TASK_IO, TASKS
from export.pipeline import (
    DEFAULT_NILM_APPLIANCES,
    NILM_RESOLUTION_S,
    PipelineConfig,
    simulate_seasons,
)


def test_the_quick_pipeline_writes_one_bundle_of_all_four_tasks(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert set(bundle.tasks) == set(TASKS) and bundle.model_version == "quick-1"
    for task, spec in bundle.tasks.items():
        assert tuple(t.name for t in spec.outputs) == TASK_IO[task].output_names
        assert "onnx_int8" in spec.artifacts
    assert set(bundle.appliances) <= set(DEFAULT_NILM_APPLIANCES) and bundle.appliances
    assert bundle.tasks["nilm"].input_spec["resolution_s"] == 60  # the quick model; full and bench: 10 s
    assert PipelineConfig.preset("full", ".").nilm_resolution_s == NILM_RESOLUTION_S == 10  # native rate
    assert bundle.tasks["imputation"].input_spec["resolution_s"] == 1800


def test_the_pipeline_summary_names_every_stage_and_student(tiny_bundle):
    summary = json.loads((tiny_bundle.parent / "pipeline.json").read_text())
    assert summary["config"]["seed"] == 0 and summary["config"]["households"] == 8
    text = json.dumps(summary)
    for stage in ("pretrain profile backbone", "pretrain NILM backbone", "export bundle"):
        assert stage in text


def test_the_simulated_fleet_spreads_its_households_over_the_seasons(tmp_path):
    """Households in groups, one per season start (different fleet seeds), so a model trained and
    calibrated on them has seen summer days too; the demo's default spans the year."""
    cfg = PipelineConfig(out_dir=tmp_path, households=4, days=2, season_starts=("2024-01-01", "2024-07-01"))
    a = simulate_seasons(cfg).arrays
    months = a["day"].astype("datetime64[D]").astype("datetime64[M]").astype(int) % 12 + 1
    assert {int(h): set(months[a["household"] == h].tolist()) for h in np.unique(a["household"])} == {
        0: {1}, 1: {1}, 2: {7}, 3: {7}}
    assert len(PipelineConfig.preset("demo", tmp_path).season_starts) == 4


def test_presets_and_unknown_preset(tmp_path):
    quick = PipelineConfig.preset("quick", tmp_path)
    assert quick.pretrain_steps < PipelineConfig(out_dir=tmp_path).pretrain_steps
    with pytest.raises((KeyError, ValueError)):
        PipelineConfig.preset("enormous", tmp_path)


def test_context_sets_give_each_window_the_days_before_it_in_its_household(tmp_path):
    """D > 0: each simulated household is one meter; a window's history day k is the L points
    (D - k) * L before it in the same household, the first days of a household lack some."""
    import numpy as np

    from export.pipeline import build_profile_sets

    D = 3
    cfg = PipelineConfig.preset("quick", tmp_path, households=6, days=8, history_days=D)
    sets = build_profile_sets(cfg)
    series = {m.household_id: m.load_w.reshape(-1) for split in sets["meters"].values() for m in split}
    for task in ("pretrain", "imputation", "anomaly", "forecast"):
        for split in ("train", "val", "test") if task != "pretrain" else ("train", "val"):
            a = sets[task][split].arrays
            n, L = a["load_w"].shape
            assert a["history_w"].shape == (n, D, L) and a["history_mask"].shape == (n, D), (task, split)
    a = sets["pretrain"]["train"].arrays
    mask = a["history_mask"]
    assert mask.all(axis=1).any() and not mask.all()  # full history later, less in the first days
    checked = 0
    for i in np.flatnonzero(mask.all(axis=1))[:20]:
        hits = [(h, s) for h, x in series.items() for s in range(D * L, len(x) - L + 1, L // cfg.windows_per_day)
                if np.array_equal(x[s:s + L], a["load_w"][i])]
        assert len(hits) == 1
        h, s = hits[0]
        assert np.array_equal(a["history_w"][i].reshape(-1), series[h][s - D * L:s])
        checked += 1
    assert checked


def test_the_one_day_sets_stay_without_history(tmp_path):
    from export.pipeline import build_profile_sets

    sets = build_profile_sets(PipelineConfig.preset("quick", tmp_path, households=6, days=4))
    assert "history_w" not in sets["anomaly"]["train"].arrays
    assert sets["imputation"]["train"].arrays["load_w"].shape[1] == 48


def test_the_anomaly_threshold_keeps_clean_validation_households_within_the_budget(tiny_bundle, tmp_path):
    """The calibration hook on the exported int8 graph: at the fitted window logit, the clean days
    of the validation households (every window, as the agent slides) fire at most the budget's
    share of 1 per 30 days."""
    import numpy as np

    from edge.bundle import load_bundle
    from edge.data.userdata import TimeSplit
    from export.pipeline import SIMULATED_COVARIATES, anomaly_calibrator, build_profile_sets
    from trainer.user_eval import BundleRunner, UserData, clean_windows

    cfg = PipelineConfig.preset("quick", tmp_path, households=10, days=12)
    meters = build_profile_sets(cfg)["meters"]["val"]
    figures = anomaly_calibrator(meters, 0, 1.0)(load_bundle(tiny_bundle))["anomaly"]
    threshold = figures["window_threshold_logit"]
    n_days = sum(len(m) - 1 for m in meters)  # the first day of each is history only
    assert np.isfinite(threshold) and figures["window"]["n_days"] == n_days
    splits = [TimeSplit(len(m), (0, 1), (1, len(m)), (len(m), len(m))) for m in meters]
    wins, day = clean_windows(UserData(meters, splits, SIMULATED_COVARIATES, [None] * len(meters), 1800), "val")
    logits = BundleRunner(tiny_bundle).run("anomaly", wins)["window_logit"].ravel()
    assert len(set(day[logits > threshold])) <= n_days // 30
