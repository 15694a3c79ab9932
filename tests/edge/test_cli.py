"""The ``unimeter`` console script: an error of ours reaching it is one clear line and an exit code."""

from __future__ import annotations

import subprocess
import sys

from edge.cli import main


def test_a_loader_error_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "File1.txt"
    bad.write_text("1000 19501 0.14\nnot a cer line\n")
    assert main(["import-data", "cer", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"unimeter import-data: {bad}:2")
    assert not (tmp_path / "out").exists()


def test_a_simulator_error_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["simulate", "--resolution", "7 parsecs", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unimeter simulate:") and "7 parsecs" in err[0]


def test_the_console_script_prints_no_traceback(tmp_path):
    """Through a real process: stderr holds the one line, not a traceback."""
    bad = tmp_path / "meter.csv"
    bad.write_text("ts_s,power_w\n0,100\n60,abc\n")
    result = subprocess.run([sys.executable, "-m", "edge.cli", "signal", "quality", str(bad),
                             "--sample-period-s", "60"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"unimeter signal: {bad}:3: column power_w: "
                                                  "could not convert string to float: 'abc'"]


def test_layers_register_in_order_and_share_command_groups():
    """train (trainer/) registers before export/, which adds ``train all`` to the group trainer
    opened; a group opens once."""
    import argparse

    import pytest

    from edge.cli import LAYER_ORDER, CommandGroups, _load_registrars

    names = [n for n, _ in _load_registrars() if not n.startswith("edge.")]
    assert [n for n in names if n in LAYER_ORDER] == list(LAYER_ORDER)
    groups = CommandGroups()
    sub = argparse.ArgumentParser().add_subparsers()
    assert groups.open("train", sub) is sub and groups.get("train") is sub and groups.get("x") is None
    with pytest.raises(ValueError, match="opened twice"):
        groups.open("train", sub)
