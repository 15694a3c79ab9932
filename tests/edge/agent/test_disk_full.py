"""Disk full while the broker acknowledges a backlog: the agent stalls no more.

The real agent runs in its own mount namespace (``unshare --mount``) with its state directory on a
12 MB tmpfs: a real small filesystem. The broker goes away, the outbox grows, a ballast file fills
the disk, the broker comes back and acknowledges the backlog while nothing can be written. Then the
ballast goes. Every task must stay alive through the spell, the spell must be logged once when it
starts and once when it ends and be reported on the status topic, and afterwards every stored
reading must reach the subscriber and the outbox must drain to zero.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.edge.agent.helpers import Recorder, toml_text, wait_for

UNSHARE = shutil.which("unshare")
NSENTER = shutil.which("nsenter")


class SmallDisk:
    """The agent in a private mount namespace with ``state_dir`` on a tmpfs of ``size_mb``."""

    def __init__(self, state_dir: Path, config: Path, log_path: Path, size_mb: int = 12):
        state_dir.mkdir(parents=True, exist_ok=True)
        user_ns = [] if os.geteuid() == 0 else ["--map-root-user"]
        script = f'mount -t tmpfs -o size={size_mb}m unimeter-test "$0" && exec "$@"'
        self.state_dir = state_dir
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [UNSHARE, "--mount", "--propagation", "private", *user_ns, "sh", "-c", script,
             str(state_dir), sys.executable, "-m", "edge.agent", "--config", str(config)],
            stdout=self.log, stderr=subprocess.STDOUT)

    def path(self, name: str) -> Path:
        """A file on the tmpfs, seen from outside through the agent's mount namespace."""
        return Path(f"/proc/{self.proc.pid}/root{self.state_dir}") / name

    def free_bytes(self) -> int:
        st = os.statvfs(self.path("."))
        return st.f_bavail * st.f_frsize

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.log.close()


def _store_last(disk: SmallDisk) -> tuple[dict[str, int], int]:
    """(last seq per meter, outbox rows) read inside the agent's mount namespace (SQLite resolves
    /proc/<pid>/root to this namespace's own files, so it has to run there)."""
    code = ("import json, sqlite3, sys; db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True, "
            "timeout=10); print(json.dumps([dict(db.execute('SELECT meter_id, last_seq FROM meters')), "
            "db.execute('SELECT COUNT(*) FROM outbox').fetchone()[0]]))")
    user_ns = [] if os.geteuid() == 0 else ["--user", "--preserve-credentials"]
    out = subprocess.run([NSENTER, "--target", str(disk.proc.pid), "--mount", *user_ns, sys.executable,
                          "-c", code, str(disk.state_dir / "agent.sqlite")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    last, outbox = json.loads(out)
    return last, outbox


def _statuses(rec: Recorder) -> list[dict]:
    return [m.get("health", {}) for m in rec.json("/status") if m.get("state") == "online"]


@pytest.mark.slow
def test_disk_full_while_the_broker_acknowledges_a_backlog(mosquitto, tmp_path):
    assert UNSHARE and NSENTER, "unshare and nsenter (util-linux) are needed to give the agent a small filesystem"
    meters = [{"id": f"f{i}", "kind": "virtual", "options": {"profile": "sine", "interval_s": 0.05, "seed": i}}
              for i in range(4)]
    config = tmp_path / "agent.toml"
    state = tmp_path / "state"
    config.write_text(toml_text(state, mosquitto.port, meters, "[schedule]\nstatus_every_s = 1\n"))
    rec = Recorder(mosquitto.port, ["unimeter/gw1/+/reading", "unimeter/gw1/status"],
                   client_id="diskfull-sub", persistent=True)
    log = tmp_path / "agent.log"
    disk = SmallDisk(state, config, log)
    try:
        assert rec.wait_for(lambda: len(rec.seqs()) == 4, 60), "no readings before the spell"
        mosquitto.stop()
        time.sleep(3)  # a backlog builds up in the outbox
        ballast = disk.path("ballast")
        ballast.write_bytes(b"\0" * max(0, disk.free_bytes() - 256_000))
        assert wait_for(lambda: "store writes failing" in log.read_text(errors="replace"), 60), \
            "commits did not fail on the full disk"
        mosquitto.start()  # the broker acknowledges the backlog while nothing can be written
        assert rec.wait_for(lambda: any("store writes failing" in p
                                        for h in _statuses(rec) for p in h.get("problems", [])), 30)
        time.sleep(5)
        assert disk.proc.poll() is None, "the agent exited during the spell"
        ballast.unlink()
        assert rec.wait_for(lambda: (_statuses(rec) or [{}])[-1].get("ok") is True, 60), \
            "health did not recover after the spell"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            last, outbox = _store_last(disk)
            if outbox == 0 and all(set(rec.seqs().get(m, [])) >= set(range(1, n + 1)) for m, n in last.items()):
                break
            time.sleep(1)
        health = _statuses(rec)[-1]
        assert health["ok"] and health["store"]["write_error"] == ""
        assert all(t["state"] == "running" and t["restarts"] == 0 for t in health["tasks"].values()), \
            {n: t for n, t in health["tasks"].items() if t["restarts"]}
    finally:
        if disk.proc.poll() is None:
            assert disk.stop() == 0
        rec.stop()
    assert outbox == 0, f"{outbox} messages stuck in the outbox after the spell"
    for meter, n in last.items():
        missing = set(range(1, n + 1)) - set(rec.seqs()[meter])
        assert not missing, f"{meter}: {len(missing)} stored readings never reached the subscriber"
    log_text = log.read_text()
    assert "Traceback" not in log_text
    assert log_text.count("store writes failing") == 1
    assert "store writes recovered after" in log_text
    assert json.loads(json.dumps(health))  # the health report is plain JSON
