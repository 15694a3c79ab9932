"""The evaluation harness: metrics on hand-computed examples, data construction, target checks,
and one end-to-end run on a tiny simulated fleet (real simulator, real training, real files)."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from trainer import evaluate as ev

# ----------------------------------------------------------------------------- metrics by hand


def test_regression_metrics_by_hand():
    m = ev.regression_metrics([100.0, 200.0, 10.0], [110.0, 180.0, 20.0], mape_floor_w=50.0)
    assert m["mae_w"] == pytest.approx((10 + 20 + 10) / 3)
    assert m["rmse_w"] == pytest.approx(math.sqrt((100 + 400 + 100) / 3))
    assert m["mape_pct"] == pytest.approx((10 / 100 + 20 / 200) / 2 * 100)  # 10 W is under the floor
    assert m["n_points"] == 3


def test_regression_metrics_reject_bad_predictions():
    with pytest.raises(ev.EvaluationError):
        ev.regression_metrics([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(ev.EvaluationError):
        ev.regression_metrics([1.0, 2.0], [1.0])


def test_classification_metrics_by_hand():
    m = ev.classification_metrics([1, 1, 0, 0, 1], [1, 0, 1, 0, 1])
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert ev.classification_metrics([0, 0], [0, 0])["f1"] == 0.0  # nothing to find: no credit


def test_nilm_metrics_by_hand():
    true_w = np.zeros((2, 1, 4))
    true_w[0, 0, :2] = 1000  # 2 steps x 1000 W x 60 s = 33.3 Wh
    pred_w = np.zeros((2, 1, 4))
    pred_w[0, 0, :1] = 1000
    pred_w[1, 0, 3] = 1000
    m = ev.nilm_metrics(true_w, true_w > 0, pred_w, pred_w > 0, ["kettle"], 60)
    k = m["per_appliance"]["kettle"]
    assert k["f1"] == pytest.approx(2 * 0.5 * 0.5 / 1.0)  # 1 TP, 1 FP, 1 FN
    assert k["energy_mae_wh"] == pytest.approx((1000 / 60 + 1000 / 60) / 2)
    assert m["mean_f1"] == pytest.approx(k["f1"])


# ----------------------------------------------------------------------------- data construction


@pytest.mark.parametrize("pattern", ["random", "block"])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_missing_masks_have_the_exact_rate(pattern, rate):
    obs = ev.make_missing_mask(50, rate, pattern, np.random.default_rng(0))
    assert ((~obs).sum(1) == round(rate * 48)).all()
    if pattern == "block":  # one contiguous run per day
        runs = np.sum(np.diff((~obs).astype(int), axis=1) == 1, axis=1) + (~obs[:, 0])
        assert (runs == 1).all()


def test_unknown_missing_pattern_is_rejected():
    with pytest.raises(ev.EvaluationError):
        ev.make_missing_mask(2, 0.1, "diagonal", np.random.default_rng(0))


def test_attacks_change_exactly_the_labelled_points():
    cfg = ev.EvalConfig()
    window = np.full(48, 500.0)
    for kind in ("scaling", "ramp_ii"):
        attacked, label = ev.inject_attack(window, kind, np.random.default_rng(1), cfg)
        changed = ~np.isclose(attacked, window)
        assert changed.sum() > 0 and not changed[label == 0].any()
        assert cfg.attack_steps_range[0] <= label.sum() <= cfg.attack_steps_range[1]
        if kind == "scaling":  # one factor across the interval
            assert np.unique(np.round(attacked[label == 1], 6)).size == 1


def test_household_split_is_disjoint_and_complete():
    split = ev.split_households(200, (0.6, 0.2, 0.2), seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [120, 40, 40]
    together = np.concatenate(list(split.values()))
    assert np.array_equal(np.sort(together), np.arange(200))
    with pytest.raises(ev.EvaluationError):
        ev.split_households(2, (0.6, 0.2, 0.2), seed=0)


def test_check_targets_against_best_baseline_and_linear():
    row = lambda mae: {"mae_w": mae, "rmse_w": mae * 1.2, "mape_pct": 10.0}  # noqa: E731
    results = {"tasks": {
        "forecast": {"day_ahead": {"lstm": row(100.0), "dlinear": row(90.0), "unimeter": row(92.0)},
                     "hour_ahead": {"lstm": row(50.0), "unimeter": row(60.0)}},
        "imputation": {"random": {"0.30": {"linear_interp": row(80.0), "unimeter": row(79.0)}}},
    }}
    checks = {(c["check"], c["metric"]): c for c in ev.check_targets(results)}
    day = checks[("forecast day_ahead", "mae_w")]
    assert day["best_baseline"] == "dlinear" and day["gap_pct"] == pytest.approx(100 * 2 / 90)
    assert day["pass"]  # within 3%
    assert not checks[("forecast hour_ahead", "mae_w")]["pass"]  # 20% worse
    assert checks[("imputation random 0.30 vs linear", "mae_w")]["pass"]


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    cfg = ev.EvalConfig.tiny(out_dir=str(out), name="evaluation")
    return cfg, ev.evaluate(cfg, command="unimeter train evaluate --tiny"), out


def test_end_to_end_writes_every_task_and_method(tiny_run):
    cfg, results, out = tiny_run
    on_disk = json.loads((out / "evaluation.json").read_text())
    assert set(on_disk["tasks"]) == set(ev.TASKS)
    for task in ev.TASKS:
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
    ev.add_arguments(parser)
    args = parser.parse_args(["--households", "12", "--tasks", "forecast,anomaly", "--missing-rates",
                              "0.2,0.4", "--no-ablations", "--tiny"])
    cfg = ev.config_from_args(args)
    assert cfg.n_households == 12 and cfg.tasks == ("forecast", "anomaly")
    assert cfg.missing_rates == (0.2, 0.4) and not cfg.ablations
    assert cfg.unified_model == "tiny"  # --tiny keeps its small budgets where not overridden


def test_unknown_task_is_a_clear_error(tmp_path):
    with pytest.raises(ev.EvaluationError, match="unknown tasks"):
        ev.evaluate(ev.EvalConfig.tiny(tasks=("weather",), out_dir=str(tmp_path)))


def test_cli_render_only_rewrites_the_report(tiny_run):
    """``unimeter train evaluate --render-only`` through the real console-script parser."""
    from edge.cli import main

    _, _, out = tiny_run
    md = out / "evaluation.md"
    md.unlink()
    assert main(["train", "evaluate", "--render-only", "--out-dir", str(out), "--name", "evaluation"]) == 0
    assert "## Targets" in md.read_text()
    assert main(["train", "evaluate", "--render-only", "--out-dir", str(out), "--name", "missing"]) == 2
