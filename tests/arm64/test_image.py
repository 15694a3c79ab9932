"""The OCI archive of the arm64 image: its config, its layout, and its entrypoint under emulation."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import tarfile

from tests.arm64.helpers import example_bundle_path, oci_image, signing_keys
from tests.scripts.helpers import REPO


def _blob(tar: tarfile.TarFile, descriptor: dict) -> bytes:
    algorithm, digest = descriptor["digest"].split(":")
    data = tar.extractfile(f"blobs/{algorithm}/{digest}").read()
    assert hashlib.sha256(data).hexdigest() == digest and len(data) == descriptor["size"]
    return data


def test_archive_config_runs_the_agent_as_a_non_root_user_with_state_volume_and_healthcheck(image_archive):
    with tarfile.open(image_archive) as tar:
        assert json.loads(tar.extractfile("oci-layout").read()) == {"imageLayoutVersion": "1.0.0"}
        index = json.loads(tar.extractfile("index.json").read())
        (entry,) = index["manifests"]
        assert entry["platform"] == {"architecture": "arm64", "os": "linux"}
        manifest = json.loads(_blob(tar, entry))
        config = json.loads(_blob(tar, manifest["config"]))
        layer_sizes = [len(_blob(tar, layer)) for layer in manifest["layers"]]
    assert config["architecture"] == "arm64" and config["os"] == "linux"
    assert len(config["rootfs"]["diff_ids"]) == len(layer_sizes) >= 1
    c = config["config"]
    assert c["User"] == "unimeter:unimeter"
    assert c["Entrypoint"] == ["unimeter", "agent"]
    assert c["Cmd"] == ["--config", "/etc/unimeter/agent.toml"]
    assert c["Volumes"] == {"/var/lib/unimeter": {}}
    assert c["WorkingDir"] == "/var/lib/unimeter"
    assert c["StopSignal"] == "SIGTERM"
    health = c["Healthcheck"]
    assert health["Test"][:4] == ["CMD", "unimeter", "agent", "health"]
    assert "--config" in health["Test"] and health["Retries"] >= 1
    assert health["Interval"] == 60 * 10**9 and health["StartPeriod"] > 0
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["PATH"].startswith("/opt/unimeter/bin:") and env["OMP_NUM_THREADS"] == "1"


def test_archive_config_is_the_dockerfile_runtime_stage(image):
    """The image built here and `docker buildx build -f Dockerfile.arm64` carry the same settings."""
    expected = oci_image.stage_config(REPO / "Dockerfile.arm64", "runtime",
                                      {**oci_image.DEFAULT_ENV, "LANG": "C.UTF-8"})
    assert image.config["config"] == expected


def test_skopeo_reads_and_verifies_the_archive(image_archive, image, tmp_path):
    """An independent reader (containers/image, what podman and skopeo use) accepts the archive."""
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is missing: scripts/check_arm64.sh installs it"
    ref = f"oci-archive:{image_archive}"

    def skopeo_json(*args):
        out = subprocess.run([skopeo, "--insecure-policy", *args], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert json.loads(skopeo_json("inspect", "--raw", ref)) == image.manifest
    assert json.loads(skopeo_json("inspect", "--config", "--raw", ref)) == image.config
    info = json.loads(skopeo_json("inspect", ref))
    assert info["Architecture"] == "arm64" and info["Os"] == "linux"
    skopeo_json("copy", "--quiet", ref, f"dir:{tmp_path / 'copy'}")  # reads every blob, checks digests
    assert len(list((tmp_path / "copy").iterdir())) >= 3


def test_layout_user_groups_state_dir_and_files(arm_root):
    root = arm_root.path
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    user = passwd["unimeter"]
    assert user[2:4] == ["10001", "10001"] and user[5] == "/var/lib/unimeter" and user[6] == "/usr/sbin/nologin"
    assert groups["unimeter"][2] == "10001"
    assert "unimeter" in groups["dialout"][3].split(",")  # serial meters (/dev/ttyUSB*) are group dialout
    state = (root / "var/lib/unimeter").stat()
    assert (state.st_uid, state.st_gid, state.st_mode & 0o777) == (10001, 10001, 0o750)
    bundles = (root / example_bundle_path().lstrip("/")).parent.stat()  # mounted read-only, as the unit has it
    assert (bundles.st_uid, bundles.st_mode & 0o777) == (0, 0o755)
    assert (root / "etc/unimeter/agent.example.toml").read_text() == (REPO / "deploy/agent.example.toml").read_text()
    assert (root / "opt/unimeter/bin/unimeter").is_file()
    assert (root / "etc/ssl/certs/ca-certificates.crt").is_file()  # the example config's TLS CA file
    assert not (root / "etc/resolv.conf").exists()  # the build host's resolver stays out of the image


def _pyc_is_current(pyc, source) -> bool:
    """What the import system checks before it uses a .pyc (PEP 552 header: flags, then the
    source's hash, or its mtime and size)."""
    header = pyc.read_bytes()[:16]
    flags = int.from_bytes(header[4:8], "little")
    if flags & 0b01:  # hash-based
        return not flags & 0b10 or header[8:16] == importlib.util.source_hash(source.read_bytes())
    st = source.stat()
    return (int.from_bytes(header[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(header[12:16], "little") == st.st_size & 0xFFFFFFFF)


def test_compiled_python_files_are_current_so_no_start_compiles_again(arm_root):
    """The image runs with PYTHONDONTWRITEBYTECODE: a .pyc that does not match its source is
    compiled again in memory at every start (every health check); under qemu that doubled the CPU
    of `unimeter agent --help`. The archive's mtimes are clamped, so the .pyc files must check
    their sources by hash."""
    site = next((arm_root.path / "opt/unimeter/lib").glob("python3.*/site-packages"))
    checked, stale = 0, []
    for pyc in site.rglob("__pycache__/*.pyc"):
        source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
        if source.exists():
            checked += 1
            if not _pyc_is_current(pyc, source):
                stale.append(str(pyc.relative_to(site)))
    assert (site / "edge/agent/__pycache__").is_dir() and checked > 1000, checked
    assert not stale, f"{len(stale)} of {checked} .pyc files are stale, e.g. {stale[:5]}"


def _entrypoint(arm_root, *argv, env=None):
    return arm_root.run([*arm_root.config["Entrypoint"], *argv], env=env, timeout=600)


def test_entrypoint_starts_under_emulation_help_and_check_config(arm_root, tmp_path):
    out = _entrypoint(arm_root, "--help")
    assert out.returncode == 0, out.stderr
    assert "check-config" in out.stdout and "health" in out.stdout

    # the example config reads its broker password from $CREDENTIALS_DIRECTORY (systemd, or a
    # container secret mounted there) and trusts bundles signed with /etc/unimeter's public key;
    # give it both as a user would
    _, public_key = signing_keys(tmp_path / "keys")
    arm_root.put(public_key, "/etc/unimeter/bundle-signing.pub")
    creds = arm_root.path / "run/credentials"
    creds.mkdir(parents=True, exist_ok=True)
    (creds / "mqtt-password").write_text("example-password\n")
    (creds / "mqtt-password").chmod(0o644)
    out = _entrypoint(arm_root, "check-config", "--config", "/etc/unimeter/agent.example.toml",
                      env={"CREDENTIALS_DIRECTORY": "/run/credentials"})
    assert out.returncode == 0, out.stderr
    effective = json.loads(out.stdout)
    assert effective["mqtt"]["password"] == "***" and "example-password" not in out.stdout
    assert effective["meters"][0]["kind"] == "dsmr"
    assert "config OK" in out.stderr

    # a config error names the key and exits 2, under emulation as on x86
    (arm_root.path / "tmp/bad.toml").write_text('[gateway]\nid = "bad id"\n[[meters]]\nid = "m"\nkind = "virtual"\n')
    out = _entrypoint(arm_root, "check-config", "--config", "/tmp/bad.toml")
    assert out.returncode == 2 and "gateway.id" in out.stderr
