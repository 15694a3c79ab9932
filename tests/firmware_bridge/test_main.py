import json
import subprocess
import sys

from firmware_bridge.__main__ import main


def test_cli_prints_json_readings_of_a_simulated_meter(capsys):
    assert main(["virtual-dsmr", "interval_s=0.05", "meter_id=cli", "--count", "2"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and all(r["meter_id"] == "cli" and r["power_w"] > 0 for r in lines)
    assert '"frames_ok": 2' in err and "connected" in err


def test_cli_bad_option_is_a_clear_error(capsys):
    assert main(["dsmr", "port=/dev/null", "speed=9600"]) == 2
    assert "unknown options" in capsys.readouterr().err


def test_cli_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "firmware_bridge", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "virtual-zigbee" in proc.stdout
