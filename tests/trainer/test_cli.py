"""``unimeter train ...`` through the real console entry point (edge.cli.main), in-process."""

from __future__ import annotations

import pytest

from edge.cli import build_parser, main
from trainer.checkpoint import load_pretrained_model, load_task_model


def test_train_subcommands_are_registered():
    parser = build_parser()
    args = parser.parse_args(["train", "pretrain", "--sim-households", "3"])
    assert args.train_command == "pretrain" and callable(args.func)
    for cmd in ("finetune", "evaluate", "distill"):
        with pytest.raises(SystemExit):  # each exists and has its own --help
            parser.parse_args(["train", cmd, "--help"])


def test_pretrain_then_finetune_from_the_command_line(tmp_path, capsys):
    pre = tmp_path / "pre"
    rc = main(["train", "pretrain", "--model", "tiny", "--sim-households", "4", "--sim-days", "6",
               "--epochs", "2", "--batch-size", "8", "--val-fraction", "0.25", "--out", str(pre),
               "--threads", "1", "--no-progress"])
    assert rc == 0
    model, ckpt = load_pretrained_model(pre / "pretrain.pt")
    assert ckpt["data_spec"]["source"].startswith("sim:4x6d")
    assert (pre / "pretrain.png").is_file() and (pre / "metrics.jsonl").is_file()
    rc = main(["train", "finetune", "--task", "anomaly", "--pretrained", str(pre / "pretrain.pt"),
               "--sim-households", "4", "--sim-days", "6", "--epochs", "1", "--batch-size", "8",
               "--out", str(tmp_path / "ft"), "--threads", "1", "--no-progress"])
    assert rc == 0
    assert load_task_model(tmp_path / "ft" / "anomaly.pt").task == "anomaly"
    assert str(tmp_path / "ft" / "anomaly.pt") in capsys.readouterr().out


def test_missing_data_source_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "pretrain", "--model", "tiny", "--out", str(tmp_path)]) == 2
    assert "unimeter train: give a data source" in capsys.readouterr().err


def test_a_users_import_trains_every_task_without_temperature(tmp_path, capsys):
    """The route that failed with "array 'temperature_c' holds 3216 non-finite values" and
    "54 training windows < one batch of 64": one meter's hourly CSV without a temperature column,
    imported, pre-trained and fine-tuned with the defaults; validation on its latest days."""
    from tests.edge.data import userfiles as U

    trace = U.household(days=45, resolution_s=3600, tz="Europe/London", start="2024-03-01")
    csv = U.write_generic(tmp_path / "house.csv", trace, unit="kW", tz="Europe/London")
    shards = tmp_path / "shards"
    assert main(["import-data", "generic", str(csv), "--out", str(shards), "--tz", "Europe/London",
                 "--country", "GB", "--split", "train=1"]) == 0
    capsys.readouterr()
    common = ["--shards", str(shards), "--max-steps", "4", "--threads", "1", "--no-progress"]
    assert main(["train", "pretrain", "--model", "tiny", "--seq-len", "24", "--out", str(tmp_path / "pre"),
                 *common]) == 0
    err = capsys.readouterr().err
    assert "house: time-ordered split train 39 days (2024-03-01 .. 2024-04-08), val 7 days" in err
    assert "889 windows -> batch 16" in err and "from the data size" in err
    _, ckpt = load_pretrained_model(tmp_path / "pre" / "pretrain.pt")
    assert ckpt["data_spec"]["resolution_s"] == 3600 and ckpt["data_spec"]["seq_len"] == 24
    for task in ("forecast", "anomaly", "imputation"):
        assert main(["train", "finetune", "--task", task, "--pretrained", str(tmp_path / "pre" / "pretrain.pt"),
                     "--out", str(tmp_path / "ft"), *common]) == 0
    model = load_task_model(tmp_path / "ft" / "forecast.pt")
    assert model.task_cfg.day_ahead_steps == 24 and model.task_cfg.hour_ahead_steps == 1
    spec = model.checkpoint["data_spec"]["covariates"]
    assert spec["weather"] is None and spec["tz"] == "Europe/London" and spec["country"] == "GB"


def test_profiles_npy_validates_on_the_latest_days(tmp_path, capsys):
    import numpy as np

    from trainer.data import synthetic_profiles

    np.save(tmp_path / "days.npy", synthetic_profiles(67, 48, seed=1))
    assert main(["train", "pretrain", "--model", "tiny", "--profiles-npy", str(tmp_path / "days.npy"),
                 "--out", str(tmp_path / "pre"), "--max-steps", "3", "--threads", "1", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "the latest 13 of 67 days validate (time-ordered)" in err and "54 windows -> batch 8" in err
    assert main(["train", "finetune", "--task", "forecast", "--pretrained", str(tmp_path / "pre" / "pretrain.pt"),
                 "--profiles-npy", str(tmp_path / "days.npy"), "--out", str(tmp_path / "ft"), "--no-progress"]) == 2
    assert "forecasting needs dated days" in capsys.readouterr().err
