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
