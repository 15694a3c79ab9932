"""Deployment files: the systemd unit, the arm64 image and the pinned edge requirements."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _unit_directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (REPO / "deploy" / "unimeter-agent.service").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_systemd_unit_hardening_and_lifecycle():
    d = _unit_directives()
    assert d["Type"] == ["notify"] and d["Restart"] == ["on-failure"]
    assert int(d["WatchdogSec"][0]) >= 10
    assert d["DynamicUser"] == ["yes"] and d["NoNewPrivileges"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"] and d["StateDirectory"] == ["unimeter"]
    assert d["DevicePolicy"] == ["closed"]
    assert set(d["DeviceAllow"]) == {"char-ttyUSB rw", "char-ttyACM rw"}
    assert d["SupplementaryGroups"] == ["dialout"]
    assert "agent --config /etc/unimeter/agent.toml" in d["ExecStart"][0]
    assert d["KillSignal"] == ["SIGTERM"]
    assert d["RestartPreventExitStatus"] == ["2 3"]  # bad config, unopenable store: no restart loop
    for key, value in (("PrivateUsers", "yes"), ("ProtectProc", "invisible"), ("ProtectKernelLogs", "yes"),
                       ("MemoryDenyWriteExecute", "yes"), ("UMask", "0077"), ("IPAddressDeny", "any"),
                       ("PrivateMounts", "yes"), ("SystemCallErrorNumber", "EPERM")):
        assert d[key] == [value], key
    assert "AF_NETLINK" not in d["RestrictAddressFamilies"][0]
    assert d["ReadOnlyPaths"] == ["-/var/lib/unimeter-bundles"]


def test_arm64_image_is_multistage_nonroot_with_volume_and_healthcheck():
    text = (REPO / "Dockerfile.arm64").read_text()
    froms = re.findall(r"^FROM --platform=linux/arm64 \$\{PYTHON_IMAGE\} AS (\w+)", text, re.M)
    assert froms == ["build", "runtime"]
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    assert re.search(r"^USER unimeter", text, re.M)
    assert 'VOLUME ["/var/lib/unimeter"]' in text
    assert re.search(r'HEALTHCHECK .*\n?.*"agent", "health"', text)
    assert "--only-binary=:all:" in text and "requirements-edge.txt" in text


def test_pinned_edge_requirements_have_no_workstation_packages():
    pins = [line for line in (REPO / "deploy" / "requirements-edge.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    names = {p.split("==")[0] for p in pins}
    assert all("==" in p for p in pins)
    assert {"onnxruntime", "ai-edge-litert", "paho-mqtt", "numpy", "zigpy"} <= names
    assert not names & {"torch", "onnx", "litert-torch", "jax", "matplotlib", "pyarrow"}
    wheels = (REPO / "bench" / "results" / "aarch64_wheels.md").read_text()
    assert "**none**" not in wheels and "ai_edge_litert" in wheels


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    import shutil
    import subprocess

    analyze = shutil.which("systemd-analyze")
    unimeter = shutil.which("unimeter")
    assert analyze and unimeter, "systemd-analyze (systemd) and the unimeter console script are needed"
    unit = tmp_path / "unimeter-agent.service"
    unit.write_text((REPO / "deploy" / "unimeter-agent.service").read_text()
                    .replace("/usr/local/bin/unimeter", unimeter))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if "unimeter-agent" in line]
    assert proc.returncode == 0 and not problems, problems


def _unit_for_tools(tmp_path, extra: str = "") -> Path:
    import shutil

    unimeter = shutil.which("unimeter")
    assert unimeter, "the unimeter console script is needed"
    unit = tmp_path / "unimeter-agent.service"
    text = (REPO / "deploy" / "unimeter-agent.service").read_text().replace("/usr/local/bin/unimeter", unimeter)
    unit.write_text(text.replace("IPAddressAllow=localhost\n", f"IPAddressAllow=localhost\n{extra}"))
    return unit


def _exposure(unit: Path) -> float:
    import shutil
    import subprocess

    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (systemd) is needed"
    proc = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))


def test_systemd_security_exposure_is_at_most_1_5(tmp_path):
    shipped = _exposure(_unit_for_tools(tmp_path))
    (tmp_path / "with-broker").mkdir()
    with_broker = _exposure(_unit_for_tools(tmp_path / "with-broker", "IPAddressAllow=192.168.1.10\n"))
    print(f"\nsystemd-analyze security --offline=true: exposure {shipped} (as shipped), "
          f"{with_broker} (with the broker drop-in)")
    assert shipped <= 1.5 and with_broker <= 1.5


MDWE_CHECK = r"""
import ctypes, json, mmap, sqlite3, ssl, sys, tempfile
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(f"prctl(PR_SET_MDWE) failed (errno {ctypes.get_errno()}): kernel older than 6.3?")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("W+X memory was still allowed: the restriction is not in force")
except OSError:
    pass
import numpy as np
from edge.runtime import InferenceRuntime
out = {}
for backend, precision in (("onnx", "int8"), ("onnx", "fp32"), ("tflite", "int8")):
    rt = InferenceRuntime(sys.argv[1], backend=backend, precision=precision, threads=1)
    res = rt.run("anomaly", {"load_w": np.full((1, 48), 300.0, np.float32)})
    out[f"{backend}-{precision}"] = [rt.backend_name, bool(np.isfinite(res["window_logit"]).all())]
db = sqlite3.connect(tempfile.mktemp()); db.execute("PRAGMA journal_mode=WAL"); db.execute("CREATE TABLE t(x)")
ssl.create_default_context()
from cryptography.hazmat.primitives.asymmetric import ed25519
k = ed25519.Ed25519PrivateKey.generate(); k.public_key().verify(k.sign(b"m"), b"m")
import paho.mqtt.client, serial, zigpy, pymodbus
print(json.dumps(out))
"""


def test_models_run_without_writable_executable_memory():
    """MemoryDenyWriteExecute=yes: the kernel's own W^X switch (prctl PR_SET_MDWE, what systemd's
    seccomp filter enforces too) on, then ONNX Runtime (int8 QMoE, fp32 MoE contrib kernels), LiteRT,
    SQLite, OpenSSL and cryptography still run the real tiny bundle."""
    import json
    import os
    import subprocess
    import sys

    from tests.export._tiny import tiny

    proc = subprocess.run([sys.executable, "-c", MDWE_CHECK, str(tiny().bundle)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(results) == {"onnx-int8", "onnx-fp32", "tflite-int8"}
    assert all(ok for _, ok in results.values()), results


def test_dialout_still_opens_serial_devices_in_a_private_user_namespace():
    """PrivateUsers=yes leaves the dialout group unmapped (it shows as nogroup), yet the kernel checks
    the real group id: a 0660 root:dialout device node stays usable. Shown with setpriv + unshare
    (no systemd here), as the unit's DynamicUser would run."""
    import grp
    import os
    import shutil
    import subprocess
    import tempfile

    assert os.geteuid() == 0, "needs root (setpriv) to run as another user"
    where = Path(tempfile.mkdtemp(prefix="unimeter-dev-"))  # pytest's tmp_path is 0700 to others
    where.chmod(0o755)
    device = where / "ttyUSB-standin"
    device.write_text("")
    os.chown(device, 0, grp.getgrnam("dialout").gr_gid)
    device.chmod(0o660)
    cmd = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--groups=dialout", "--",
           shutil.which("unshare"), "--user", "--map-user=65534", "--map-group=65534",
           "sh", "-c", f"id -G; echo reading >> {device} && echo opened"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(where)
    assert proc.returncode == 0 and "opened" in proc.stdout, proc.stderr
    assert str(grp.getgrnam("dialout").gr_gid) not in proc.stdout.split()  # unmapped inside
