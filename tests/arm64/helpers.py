"""Running the arm64 image under emulation: its root, the task runner on both sides, the agent.

Used by the tests of scripts/check_arm64.sh and by bench/arm64.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tests.scripts.helpers import REPO, load_script

CHROOT = REPO / "scripts" / "arm64_chroot.sh"
TASKS_SCRIPT = REPO / "scripts" / "arm64_tasks.py"
IMAGE_UID = 10001  # the image's unimeter user (Dockerfile.arm64)
GATEWAY = "arm64"


def virtual_meters() -> tuple[tuple[str, str], ...]:
    """(meter id, kind): one meter of every virtual kind the tree has (P1 telegrams over a pty, a
    ZigBee device on zigpy's test radio, Modbus RTU over a pty bridge, ...) and an in-process one."""
    from edge.agent.meters import IN_PROCESS_KIND
    from firmware_bridge.sources import VIRTUAL_KINDS

    return tuple((kind.replace("-", "_"), kind) for kind in (*VIRTUAL_KINDS, IN_PROCESS_KIND))


METERS = virtual_meters()
# Model rounds every 10 s on windows of 1 s bins: every task runs on live readings within a minute
# (the production schedule runs them every 30 min to a day on half-hour bins).
FAST_SCHEDULE = {"profile_every_s": 10, "nilm_every_s": 10, "forecast_every_s": 10, "quality_every_s": 10,
                 "report_every_s": 10, "status_every_s": 5, "profile_resolution_s": 1, "nilm_resolution_s": 1}

oci_image = load_script("oci_image")


def example_bundle_path() -> str:
    """``model.bundle`` of deploy/agent.example.toml: where a gateway keeps its current bundle."""
    import tomllib

    return tomllib.loads((REPO / "deploy" / "agent.example.toml").read_text())["model"]["bundle"]


class ArmRoot:
    """An unpacked arm64 root filesystem and the image config (``config`` object) it came with."""

    def __init__(self, path: Path, image_config: dict):
        self.path = Path(path)
        self.config = image_config["config"]

    @classmethod
    def unpack(cls, archive: Path, dest: Path) -> ArmRoot:
        """The archive's root filesystem in ``dest`` (as root: owners kept)."""
        image = oci_image.unpack(archive, dest)
        Path(dest).chmod(0o755)
        return cls(dest, image.config)

    def command(self, argv: Sequence[str], *, user: str | None = None, env: dict[str, str] | None = None,
                workdir: str | None = None, as_image: bool = True) -> list[str]:
        """``arm64_chroot.sh`` argv; ``as_image`` applies the image's User, Env and WorkingDir."""
        cmd = ["bash", str(CHROOT), str(self.path)]
        user = user or (self.config.get("User") if as_image else None)
        workdir = workdir or (self.config.get("WorkingDir") if as_image else None)
        if user:
            cmd += ["--user", user]
        if workdir:
            cmd += ["--workdir", workdir]
        merged = dict(e.split("=", 1) for e in self.config.get("Env", [])) if as_image else {}
        merged.update(env or {})
        for key, value in merged.items():
            cmd += ["--env", f"{key}={value}"]
        return [*cmd, "--", *argv]

    def run(self, argv: Sequence[str], *, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv, **kwargs), capture_output=True, text=True, timeout=timeout)

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(argv, **kwargs), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def install_bundle(self, bundle_dir: Path, version: str = "v1") -> str:
        """Install a bundle as deploy/README.md does on a gateway: the directory
        ``<bundles>/<version>`` and the symlink the example config's ``model.bundle`` names
        (``/var/lib/unimeter-bundles/current``) pointing at it. Returns that symlink's path."""
        current = example_bundle_path()
        self.put(bundle_dir, f"{Path(current).parent}/{version}")
        link = self.path / current.lstrip("/")
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(version)
        return current

    def put(self, src: Path, dest: str, owner: tuple[int, int] = (0, 0)) -> str:
        """Copy a file or directory into the root, readable by everyone; returns its path inside."""
        target = self.path / dest.lstrip("/")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(src).is_dir():
            shutil.copytree(src, target)
        else:
            shutil.copy2(src, target)
        for path in [target, *(target.rglob("*") if target.is_dir() else [])]:
            os.chown(path, *owner)
            path.chmod(0o755 if path.is_dir() else 0o644)
        return dest


def build_check_bundle(out_dir: Path) -> Path:
    """A bundle with every task, trained and exported from this tree on the host (preset "quick",
    ONNX fp32/int8 and LiteRT int8, seed 0, one thread). Returns its directory."""
    from export.pipeline import PipelineConfig, run_pipeline

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cfg = PipelineConfig.preset("quick", Path(out_dir), seed=0, include_tflite=True, include_fp32=True,
                                progress=False)
    return Path(run_pipeline(cfg).bundle_dir)


def arm64_cache() -> Path:
    """$UNIMETER_ARM64_CACHE (default ~/.cache/unimeter-arm64): scripts/build_arm64_image.sh's cache,
    whose entries unused for 30 days it removes."""
    return Path(os.environ.get("UNIMETER_ARM64_CACHE") or Path.home() / ".cache" / "unimeter-arm64")


def check_bundle_key() -> str:
    """What the check bundle is a function of: every file of trainer/, export/ and edge/ (path and
    content), pyproject.toml and the version of every installed distribution (torch, onnx, the
    LiteRT converter, ...). 16 hex digits."""
    from importlib import metadata

    h = hashlib.sha256()
    files = [REPO / "pyproject.toml", *(f for d in ("trainer", "export", "edge") for f in (REPO / d).rglob("*")
                                        if f.is_file() and "__pycache__" not in f.parts)]
    for f in sorted(files):
        h.update(f"{f.relative_to(REPO)}\0".encode() + f.read_bytes() + b"\0")
    h.update("\n".join(sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())).encode())
    return h.hexdigest()[:16]


def cached_check_bundle() -> Path:
    """The check bundle of this tree from the cache (``check_bundle_key``), built there first if
    absent: a submission that changes no trainer, export or edge file reuses it."""
    cache = arm64_cache()
    entry = cache / f"bundle-{check_bundle_key()}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock-bundle", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (entry / ".complete").exists():
            shutil.rmtree(entry, ignore_errors=True)
            bundle = build_check_bundle(entry / "out")
            (entry / ".complete").write_text(str(bundle.relative_to(entry)))
    os.utime(entry)  # in use: kept by the cache's clean-up
    return entry / (entry / ".complete").read_text()


def prepare_host_side() -> Path:
    """What the tests need from the x86-64 side, made before they start (scripts/check_arm64.sh
    runs it beside the image build): the x86-64 edge venv (``x86_edge_python``) and the check
    bundle (``cached_check_bundle``). Returns the bundle's directory."""
    x86_edge_python()
    return cached_check_bundle()


# --- tasks ----------------------------------------------------------------------------------------


def task_inputs(bundle_dir: Path, batch: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for every task of a bundle from its task specs (names, shapes, units): powers (unit
    W) as a noisy daily shape, observation masks with 20 % missing (missing powers set to 0, as the
    task contract says), anything else standard normal. ``<task>/<input name>`` -> float32."""
    from edge.bundle import load_bundle

    rng = np.random.default_rng(seed)
    out = {}
    for task, spec in load_bundle(bundle_dir).tasks.items():
        masks = [t.name for t in spec.inputs if t.unit.startswith("1 observed")]
        arrays = {}
        for t in spec.inputs:
            shape = (batch, *t.shape[1:])
            if t.name in masks:
                x = (rng.random(shape) > 0.2).astype(np.float64)
            elif t.unit == "W":
                phase = np.linspace(0, 2 * np.pi, shape[-1]) + rng.uniform(0, 2 * np.pi, (batch, 1))
                x = 500 + 400 * np.sin(phase) + rng.gamma(2.0, 150.0, shape)
            else:
                x = rng.standard_normal(shape)
            arrays[t.name] = x.astype(np.float32)
        for t in spec.inputs:
            if t.unit == "W" and masks:
                arrays[t.name] *= arrays[masks[0]]
        out.update({f"{task}/{name}": x for name, x in arrays.items()})
    return out


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _exact_matmul_integer(model) -> int:
    """Rewrite every MatMulInteger of ``model`` as Cast to float64, Sub zero points, MatMul, Cast
    to int32: the exact integer product (every partial sum is an integer below 2**53). Returns the
    number of nodes rewritten."""
    from onnx import TensorProto, helper

    nodes, rewritten = [], 0
    for node in model.graph.node:
        if node.op_type != "MatMulInteger":
            nodes.append(node)
            continue
        rewritten += 1
        a, b, *zero_points = [*node.input, "", ""][:4]
        base = node.name or node.output[0]
        centred = []
        for side, x, zp in (("a", a, zero_points[0]), ("b", b, zero_points[1])):
            nodes.append(helper.make_node("Cast", [x], [f"{base}_{side}_f64"], to=TensorProto.DOUBLE))
            if zp:
                nodes.append(helper.make_node("Cast", [zp], [f"{base}_{side}zp_f64"], to=TensorProto.DOUBLE))
                nodes.append(helper.make_node("Sub", [f"{base}_{side}_f64", f"{base}_{side}zp_f64"],
                                              [f"{base}_{side}_centred"]))
                centred.append(f"{base}_{side}_centred")
            else:
                centred.append(f"{base}_{side}_f64")
        nodes.append(helper.make_node("MatMul", centred, [f"{base}_f64_product"]))
        nodes.append(helper.make_node("Cast", [f"{base}_f64_product"], [node.output[0]], to=TensorProto.INT32))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten


def exact_integer_bundle(bundle_dir: Path, out_dir: Path) -> tuple[Path, list[str]]:
    """A copy of a bundle whose ONNX models compute their int8 MatMuls (MatMulInteger) exactly.

    The x86-64 reference for aarch64: onnxruntime's u8 x s8 MatMulInteger kernel for AVX2 without
    VNNI sums adjacent products in int16 with saturation (VPMADDUBSW), so an x86 host without
    VNNI computes some int8 products inexactly, where the aarch64 kernels (and VNNI) are exact.
    The rest of each graph is untouched. Returns the copy and the artifacts rewritten; the
    manifest's sha256 and sizes follow the rewritten files."""
    import onnx

    out_dir = Path(out_dir)
    shutil.copytree(bundle_dir, out_dir)
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    changed = []
    for name, entry in manifest["artifacts"].items():
        path = out_dir / name
        if not name.endswith(".onnx"):
            continue
        model = onnx.load(str(path))
        if _exact_matmul_integer(model) == 0:
            continue
        onnx.save_model(model, str(path))
        entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        entry["bytes"] = path.stat().st_size
        changed.append(name)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return out_dir, changed


def x86_edge_python() -> str:
    """Python of an x86-64 venv holding exactly deploy/requirements-edge.txt (the image's versions,
    x86-64 wheels from the package index), so that both sides of a comparison run the same
    interpreter versions. Cached next to the arm64 root ($UNIMETER_ARM64_CACHE), keyed by the
    requirements' hash."""
    req = REPO / "deploy" / "requirements-edge.txt"
    cache = arm64_cache()
    venv = cache / f"x86-edge-{hashlib.sha256(req.read_bytes()).hexdigest()[:16]}"
    python, done = venv / "bin" / "python", venv / ".complete"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock-x86", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                  "--only-binary=:all:", "-r", str(req)], capture_output=True, text=True,
                                 timeout=1800)
            if pip.returncode != 0:
                raise RuntimeError(f"installing {req} into {venv} failed:\n{pip.stdout}{pip.stderr}")
            done.touch()
    os.utime(venv)  # in use: kept by the cache's clean-up of entries unused for 30 days
    return str(python)


def run_tasks_x86(bundle_dir: Path, inputs_path: Path, out_path: Path, repeat: int = 0) -> dict[str, np.ndarray]:
    """scripts/arm64_tasks.py natively, this tree's edge package on the pinned edge requirements."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run([x86_edge_python(), str(TASKS_SCRIPT), str(bundle_dir), str(inputs_path), str(out_path),
                    "--repeat", str(repeat)], check=True, env=env, timeout=1800)
    return _load_npz(out_path)


def run_tasks_arm64(root: ArmRoot, bundle_dir: Path, inputs_path: Path, repeat: int = 0) -> dict[str, np.ndarray]:
    """scripts/arm64_tasks.py in the image (its installed edge package), as the image's user."""
    root.put(bundle_dir, "/tmp/tasks/bundle")
    root.put(inputs_path, "/tmp/tasks/inputs.npz")
    root.put(TASKS_SCRIPT, "/tmp/tasks/arm64_tasks.py")
    os.chown(root.path / "tmp/tasks", IMAGE_UID, IMAGE_UID)
    out = root.run(["python", "/tmp/tasks/arm64_tasks.py", "/tmp/tasks/bundle", "/tmp/tasks/inputs.npz",
                    "/tmp/tasks/out.npz", "--repeat", str(repeat)], timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"the task runner failed on aarch64:\n{out.stdout}{out.stderr}")
    return _load_npz(root.path / "tmp/tasks/out.npz")


def meta(results: dict[str, np.ndarray]) -> dict:
    return json.loads(str(results["_meta"]))


# --- agent ----------------------------------------------------------------------------------------


def signing_keys(directory: Path) -> tuple[object, Path]:
    """A new ed25519 bundle-signing key pair in ``directory`` (as ``unimeter bundle keygen``
    makes on the workstation): the private key and the public key's PEM file."""
    from edge.signing import generate_keypair, load_private_key

    directory.mkdir(parents=True, exist_ok=True)
    generate_keypair(directory / "bundle-signing.key", directory / "bundle-signing.pub")
    return load_private_key(directory / "bundle-signing.key"), directory / "bundle-signing.pub"


def agent_toml(port: int, bundle: str, state_dir: str = "/var/lib/unimeter", meters=METERS,
               interval_s: float = 1.0, schedule: dict[str, float] | None = None,
               public_key_file: str = "") -> str:
    """An agent config (TOML): the broker on 127.0.0.1:``port``, the bundle (signed with the key of
    ``public_key_file``, or unsigned and allowed), the meters at ``interval_s``, the ``schedule``
    section as given (default: the agent's own schedule)."""
    trust = ([f'public_key_file = "{public_key_file}"', 'unsigned_bundles = "refuse"'] if public_key_file
             else ['unsigned_bundles = "allow"'])
    lines = [
        "[gateway]", f'id = "{GATEWAY}"', f'state_dir = "{state_dir}"', 'log_level = "info"',
        "[mqtt]", 'host = "127.0.0.1"', f"port = {port}", "tls = false", "keepalive_s = 10",
        "reconnect_max_s = 2",
        "[model]", f'bundle = "{bundle}"', 'backend = "auto"', 'precision = "int8"', "threads = 1", *trust,
        "[schedule]", *(f"{k} = {float(v)}" for k, v in (schedule or {}).items()),
    ]
    for seed, (meter_id, kind) in enumerate(meters, 1):
        lines += ["[[meters]]", f'id = "{meter_id}"', f'name = "{kind} meter"', f'kind = "{kind}"',
                  "[meters.options]", 'profile = "household"', f"seed = {seed}", f"interval_s = {interval_s}"]
    return "\n".join(lines) + "\n"


class AgentProcess:
    """An agent process (``argv``), its combined output collected by a thread."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(proc.stdout), daemon=True)
        self._reader.start()

    @classmethod
    def in_image(cls, root: ArmRoot, config_text: str) -> AgentProcess:
        """Start as ``docker run`` would: the image's entrypoint + command, the config at its path."""
        (root.path / "etc/unimeter/agent.toml").write_text(config_text)
        return cls(root.popen([*root.config["Entrypoint"], *root.config["Cmd"]]))

    @classmethod
    def native(cls, config_path: Path) -> AgentProcess:
        """This tree's agent on the host (x86-64)."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "agent", "--config", str(config_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        return cls(proc)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_s(self) -> float:
        """User + system CPU time of the process so far (s), from /proc (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout_s: float = 120.0) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            if self.alive:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)

    def log(self) -> str:
        return "".join(self.lines)


def readings_by_meter(rec) -> dict[str, dict[int, float]]:
    """Per meter, the sequence number -> reading timestamp (s) of every reading a ``Recorder``
    received (a message may carry several in ``samples``; duplicates count once)."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for m in rec.json("/reading"):
        samples = m.get("samples") or {"seq": [m["seq"]], "ts_s": [m["ts_s"]]}
        out[m["meter"]].update(zip(samples["seq"], samples["ts_s"], strict=True))
    return out


if __name__ == "__main__":  # python -m tests.arm64.helpers: prints the check bundle's directory
    print(prepare_host_side())
