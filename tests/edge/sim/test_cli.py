"""``unimeter simulate`` end to end: shards, manifest and the week plot."""

from __future__ import annotations

import json

from edge.cli import main
from edge.data.shards import iter_nilm_batches, iter_profile_batches


def test_simulate_writes_dataset_and_plot(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["simulate", "--households", "5", "--days", "8", "--resolution", "1min", "--out", str(out),
               "--seed", "3", "--plot", "--nilm-windows", "2", "--workers", "1", "--attack-fraction", "0.5"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["profiles"] == 5 * 8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resolution_s"] == 60 and manifest["nilm"]["L"] == 240
    png = (out / "simulated_week.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    rows = sum(len(b["date"]) for s in manifest["profiles"]["splits"] for b in iter_profile_batches(out, s, 7))
    assert rows == 40
    kinds = [b["anomaly_kind"] for s in manifest["profiles"]["splits"] for b in iter_profile_batches(out, s, 64)]
    assert sum(int((k > 0).sum()) for k in kinds) > 5
    nilm = sum(len(b["load_w"]) for s in manifest["nilm"]["splits"] for b in iter_nilm_batches(out, s, 3))
    assert nilm == 10


def test_simulate_rejects_bad_resolution(tmp_path, capsys):
    assert main(["simulate", "--households", "1", "--days", "1", "--resolution", "7s", "--out", str(tmp_path)]) == 2
    assert "86400" in capsys.readouterr().err
