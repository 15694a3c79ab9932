"""``unimeter signal ...`` end to end on CSV files, and the no-torch rule for the signal layer."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np

from edge.cli import main


def _write(path, ts, power, extra=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts_s", "power_w", *(extra or {})])
        for i, (t, p) in enumerate(zip(ts, power, strict=True)):
            cells = [t, "" if np.isnan(p) else p]
            cells += [v[i] for v in (extra or {}).values()]
            w.writerow(cells)


def test_fill_quality_and_report_commands(tmp_path, capsys):
    ts = np.arange(120) * 60.0
    p = 200 + 2.0 * np.arange(120)
    counter = 1000 + np.cumsum(p * 60 / 3600)
    holes = p.copy()
    holes[30:40] = np.nan
    src = tmp_path / "meter.csv"
    _write(src, ts, holes, {"import_wh": counter})
    before = src.read_bytes()
    out = tmp_path / "filled.csv"
    assert main(["signal", "fill", str(src), "-o", str(out), "--counter-column", "import_wh"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    filled = np.array([float(r["power_w"]) for r in rows])
    np.testing.assert_allclose(filled, p, rtol=1e-4)  # a line, and the counters agree
    assert sum(int(r["filled"]) for r in rows) == 10
    assert src.read_bytes() == before

    capsys.readouterr()
    assert main(["signal", "quality", str(src), "--sample-period-s", "60", "--compact"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["observed_samples"] == 110 and summary["n_gaps"] == 1

    sessions = tmp_path / "sessions.csv"
    sessions.write_text("appliance,start_s,end_s\ntv,1430503200,1430513100\n")
    assert main(["signal", "report", str(sessions), "--home", "Home 2"]) == 0
    assert capsys.readouterr().out.strip() == (
        "Home 2 was watching TV from 18:00 to 20:45 on 1 May 2015.")


def test_bad_input_gives_a_clear_error_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "bad.csv"
    src.write_text("ts_s,watts\n0,1\n")
    out = tmp_path / "out.csv"
    assert main(["signal", "fill", str(src), "-o", str(out)]) == 2
    assert "missing column" in capsys.readouterr().err
    assert not out.exists()
    src.write_text("ts_s,power_w\n0,1\n60,abc\n")
    assert main(["signal", "fill", str(src), "-o", str(out)]) == 2
    assert "bad.csv:3" in capsys.readouterr().err
    assert main(["signal", "fill", str(src), "-o", str(src)]) == 2  # never overwrite the input
    assert main(["signal", "fill", "--list"]) == 0
    assert "papoulis" in capsys.readouterr().out


def test_signal_layer_never_loads_torch():
    code = ("import sys, edge.signal.gapfill, edge.signal.nilm, edge.signal.quality, "
            "edge.signal.patterns, edge.signal.reports, edge.signal.metrics, edge.signal.cli; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
