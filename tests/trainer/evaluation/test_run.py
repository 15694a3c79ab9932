"""One end-to-end run of the evaluation on a tiny simulated fleet (real simulator, real training,
real files), and its command line."""

from __future__ import annotations

import argparse
import json

import pytest

from trainer.evaluation.cli import add_arguments, config_from_args
from trainer.evaluation.config import TASKS, EvalConfig, EvaluationError
from trainer.evaluation.run import evaluate

# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    cfg = EvalConfig.tiny(out_dir=str(out), name="evaluation", history_days=0)  # the one-day path (D = 7: test_context.py)
    return cfg, evaluate(cfg, command="unimeter train evaluate --tiny"), out


def test_end_to_end_writes_every_task_and_method(tiny_run):
    cfg, results, out = tiny_run
    on_disk = json.loads((out / "evaluation.json").read_text())
    assert set(on_disk["tasks"]) == set(TASKS)
    for task in TASKS:
        assert "errors" not in on_disk["tasks"][task], on_disk["tasks"][task].get("errors")
    fc = on_disk["tasks"]["forecast"]
    assert {"seasonal_naive", "lstm", "dlinear", "unimeter"} <= set(fc["day_ahead"]) == set(fc["hour_ahead"])
    imp = on_disk["tasks"]["imputation"]
    for pattern in ("random", "block"):
        for rate in ("0.10", "0.30", "0.50"):
            names = set(imp[pattern][rate])
            assert {"linear_interp", "bilstm", "signal_wiener", "unimeter", "unimeter_no_moe",
                    "unimeter_no_ib"} <= names
            assert all(v["mae_w"] >= 0 for v in imp[pattern][rate].values())
    an = on_disk["tasks"]["anomaly"]
    assert {"zscore", "cnn", "unimeter"} <= set(an["scaling"]) == set(an["ramp_ii"])
    nilm = on_disk["tasks"]["nilm"]
    assert {"cnn_seq2seq", "signal_fhmm", "unimeter"} <= set(nilm["methods"])
    assert "router" not in nilm["appliances"]  # always-on loads have no ON/OFF to detect
    assert on_disk["targets"] and all("pass" in t for t in on_disk["targets"])


def test_end_to_end_markdown_names_the_command_and_plots(tiny_run):
    _, _, out = tiny_run
    md = (out / "evaluation.md").read_text()
    assert "unimeter train evaluate --tiny" in md
    assert "## Targets" in md and "| `unimeter` |" in md
    for task in ("forecast", "imputation", "anomaly", "nilm"):
        png = out / f"evaluation_{task}.png"
        assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


def test_linear_interpolation_fills_only_the_missing_points_in_the_run(tiny_run):
    """Sanity of the harness itself: with 10% random missing, linear interpolation on
    simulated households is far better than predicting zero."""
    _, results, _ = tiny_run
    r = results["tasks"]["imputation"]["random"]["0.10"]["linear_interp"]
    assert 0 < r["mae_w"] < 2000


def test_cli_arguments_build_the_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--households", "12", "--tasks", "forecast,anomaly", "--missing-rates",
                              "0.2,0.4", "--no-ablations", "--tiny"])
    cfg = config_from_args(args)
    assert cfg.n_households == 12 and cfg.tasks == ("forecast", "anomaly")
    assert cfg.missing_rates == (0.2, 0.4) and not cfg.ablations
    assert cfg.unified_model == "tiny"  # --tiny keeps its small budgets where not overridden


def test_unknown_task_is_a_clear_error(tmp_path):
    with pytest.raises(EvaluationError, match="unknown tasks"):
        evaluate(EvalConfig.tiny(tasks=("weather",), out_dir=str(tmp_path)))


def test_cli_render_only_rewrites_the_report(tiny_run):
    """``unimeter train evaluate --render-only`` through the real console-script parser."""
    from edge.cli import main

    _, _, out = tiny_run
    md = out / "evaluation.md"
    md.unlink()
    assert main(["train", "evaluate", "--render-only", "--out-dir", str(out), "--name", "evaluation"]) == 0
    assert "## Targets" in md.read_text()
    assert main(["train", "evaluate", "--render-only", "--out-dir", str(out), "--name", "missing"]) == 2
