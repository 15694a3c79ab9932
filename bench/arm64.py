"""ARM64 under emulation beside x86-64 native, in one run: per-window latency of every task and
the agent's CPU share per meter.

    sudo python bench/arm64.py [--image dist/unimeter-agent-arm64.oci.tar] [--bundle DIR] \
        [--repeat 200] [--agent-s 60] [--meters-per-kind 4]

EMULATED TIME SAYS NOTHING ABOUT A REAL RASPBERRY PI. qemu-user translates every aarch64
instruction into x86-64 code at run time; NEON kernels become scalar or SSE sequences, system
calls and memory are the host's. The ratio emulated / native only says how much slower the check
runs and which paths suffer most under translation; a Pi's own figures have to be measured
on a Pi. The emulated milliseconds are printed beside the native ones, labelled as emulated; the
ratio is the figure to read.

1. Tasks: every task of the bundle with every model file (ONNX int8/fp32, LiteRT int8) on one
   window (batch 1), one thread: p50 over ``--repeat`` runs after a warm-up, natively before and
   after the emulated run (their mean is the reference; both are kept), then emulated in the image
   (scripts/arm64_tasks.py on both sides, QEMU_CPU=cortex-a72).
2. Agent: the image's entrypoint under emulation and this tree's agent natively, one after the
   other, each with ``--meters-per-kind`` meters of one simulated kind at 1 reading/s (P1 over a
   pty, ZigBee test radio, Modbus over a pty, in-process), then with one of each and the model
   rounds every 10 s on 1 s windows. CPU time of the agent process over ``--agent-s`` s of steady
   state (after every meter delivered and a 10 s settle), as a share of one core per meter. The
   simulated meters run inside the agent process, so their cost is included (a real meter's is not).

Writes bench/results/arm64.json and arm64.md. Needs root (chroot) and, without --image, builds the
image with scripts/build_arm64_image.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.arm64.helpers import (  # noqa: E402
    FAST_SCHEDULE,
    METERS,
    AgentProcess,
    ArmRoot,
    agent_toml,
    meta,
    readings_by_meter,
    run_tasks_arm64,
    run_tasks_x86,
    task_inputs,
)

RESULTS = ROOT / "bench" / "results"
NOTE = ("Emulated time says nothing about a real Raspberry Pi: qemu-user translates every aarch64 "
        "instruction at run time (NEON kernels become scalar/SSE code). Ratios say how much slower the "
        "arm64 check runs under emulation and which paths suffer most; measure a Pi on a Pi.")


def p50_ms(results: dict, key: str) -> float:
    return float(np.median(results[key]) * 1e3)


def bench_tasks(root: ArmRoot, bundle: Path, repeat: int, tmp: Path) -> dict:
    np.savez(tmp / "inputs.npz", **task_inputs(bundle, batch=1))
    before = run_tasks_x86(bundle, tmp / "inputs.npz", tmp / "x86_before.npz", repeat)
    arm = run_tasks_arm64(root, bundle, tmp / "inputs.npz", repeat)
    after = run_tasks_x86(bundle, tmp / "inputs.npz", tmp / "x86_after.npz", repeat)
    rows = []
    for key in sorted(k for k in arm if k.endswith("/_seconds")):
        task, kind, _ = key.split("/")
        native = [p50_ms(before, key), p50_ms(after, key)]
        emulated = p50_ms(arm, key)
        rows.append({"task": task, "kind": kind, "x86_p50_ms": native, "emulated_p50_ms": emulated,
                     "emulated_over_native": emulated / np.mean(native)})
    return {"rows": rows, "served": {"x86": meta(before)["served"], "aarch64": meta(arm)["served"]}}


def _steady_cpu(agent: AgentProcess, rec, meter_ids: list[str], seconds: float) -> dict:
    start = time.time()
    rec.wait_for(lambda: set(readings_by_meter(rec)) >= set(meter_ids) or not agent.alive, timeout_s=300)
    if not agent.alive:
        raise RuntimeError(f"the agent exited:\n{agent.log()[-3000:]}")
    first_s = time.time() - start
    time.sleep(10.0)
    c0, t0 = agent.cpu_s(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = agent.cpu_s(), time.monotonic()
    return {"start_to_all_meters_s": first_s, "cpu_share": (c1 - c0) / (t1 - t0), "wall_s": t1 - t0}


def run_agent(where: str, root: ArmRoot, bundle_in_root: str, bundle: Path, meters, schedule, seconds: float,
              tmp: Path) -> dict:
    from export.broker import LocalBroker
    from tests.edge.agent.helpers import Recorder

    with LocalBroker(kind="mosquitto") as broker:
        rec = Recorder(broker.port, ["unimeter/#"], client_id=f"bench-{where}")
        if where == "aarch64":
            state = root.path / "var/lib/unimeter"
            for child in state.iterdir():  # a fresh store for every run
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            agent = AgentProcess.in_image(root, agent_toml(broker.port, bundle_in_root, meters=meters,
                                                           schedule=schedule))
        else:
            state = tmp / f"state-{time.monotonic_ns()}"
            state.mkdir()
            config = state / "agent.toml"
            config.write_text(agent_toml(broker.port, str(bundle), state_dir=str(state), meters=meters,
                                         schedule=schedule))
            agent = AgentProcess.native(config)
        try:
            out = _steady_cpu(agent, rec, [m for m, _ in meters], seconds)
        finally:
            code = agent.stop()
            rec.stop()
        if code != 0:
            raise RuntimeError(f"the {where} agent exited with {code}:\n{agent.log()[-3000:]}")
    out["cpu_share_per_meter"] = out["cpu_share"] / len(meters)
    return out


def bench_agent(root: ArmRoot, bundle: Path, per_kind: int, seconds: float, tmp: Path) -> list[dict]:
    bundle_in_root = root.install_bundle(bundle)
    setups = [(kind, [(f"{kind.replace('-', '')}{i}", kind) for i in range(per_kind)], None)
              for _, kind in METERS]
    setups.append(("one of each, model rounds every 10 s", list(METERS), FAST_SCHEDULE))
    rows = []
    for label, meters, schedule in setups:
        arm = run_agent("aarch64", root, bundle_in_root, bundle, meters, schedule, seconds, tmp)
        x86 = run_agent("x86", root, bundle_in_root, bundle, meters, schedule, seconds, tmp)
        rows.append({"meters": label, "n": len(meters), "aarch64_emulated": arm, "x86": x86,
                     "cpu_ratio": arm["cpu_share"] / max(x86["cpu_share"], 1e-9),
                     "start_ratio": arm["start_to_all_meters_s"] / max(x86["start_to_all_meters_s"], 1e-9)})
        print(f"{label}: CPU per meter {100 * arm['cpu_share_per_meter']:.2f} % emulated, "
              f"{100 * x86['cpu_share_per_meter']:.2f} % native", flush=True)
    return rows


def write_results(res: dict, command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "arm64.json").write_text(json.dumps(res, indent=2))
    md = ["# ARM64 under emulation beside x86-64 native", "", f"Command: `{command}`", "",
          f"**{NOTE}**", "",
          f"Host: {res['host']}. Image `{res['image']}`; bundle {res['bundle']} (tasks: "
          f"{', '.join(sorted({r['task'] for r in res['tasks']['rows']}))}). Interpreters: x86 "
          f"{res['tasks']['served']['x86']}, aarch64 {res['tasks']['served']['aarch64']}.", "",
          f"## Tasks: one window (batch 1), one thread, p50 of {res['repeat']} runs", "",
          "x86-64 runs natively on this host; aarch64 runs in the image under qemu-user on the same "
          "host (EMULATED, not a Raspberry Pi: its milliseconds are the emulator's, not a Pi's).", "",
          "| task | model file | x86-64 native p50 (ms, before / after) | aarch64 EMULATED p50 (ms) "
          "| emulated / native |", "|---|---|---|---|---|"]
    for r in res["tasks"]["rows"]:
        md.append(f"| {r['task']} | {r['kind']} | {r['x86_p50_ms'][0]:.3f} / {r['x86_p50_ms'][1]:.3f} | "
                  f"{r['emulated_p50_ms']:.3f} | {r['emulated_over_native']:.1f}x |")
    if not res["agent"]:
        md += ["", "Agent CPU share: not measured in this run (`--skip-agent`)."]
        (RESULTS / "arm64.md").write_text("\n".join(md) + "\n")
        return
    md += ["", f"## Agent: CPU share per meter at 1 reading/s ({res['agent_s']:.0f} s of steady state)", "",
           "Share of one core used by the agent process, divided by the number of meters; the simulated "
           "meters run inside the process. Production schedule unless the row says otherwise.", "",
           "| meters | n | x86 native, per meter | emulated / native (CPU) | emulated / native (start to all meters publishing) |",
           "|---|---|---|---|---|"]
    for r in res["agent"]:
        md.append(f"| {r['meters']} | {r['n']} | {100 * r['x86']['cpu_share_per_meter']:.2f} % | "
                  f"{r['cpu_ratio']:.1f}x | {r['start_ratio']:.1f}x |")
    (RESULTS / "arm64.md").write_text("\n".join(md) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="", help="OCI archive (default: build one with scripts/build_arm64_image.sh)")
    ap.add_argument("--bundle", default="", help="bundle directory (default: the quick pipeline, with LiteRT)")
    ap.add_argument("--repeat", type=int, default=200, help="timed runs per task and model file")
    ap.add_argument("--agent-s", type=float, default=60.0, help="steady-state seconds per agent run")
    ap.add_argument("--meters-per-kind", type=int, default=4)
    ap.add_argument("--skip-agent", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/arm64.py needs root (chroot, mount namespaces)", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench-arm64-") as tmp_name:
        tmp = Path(tmp_name)
        image = Path(args.image) if args.image else tmp / "image.oci.tar"
        if not args.image:
            subprocess.run(["bash", str(ROOT / "scripts/build_arm64_image.sh"), "--out", str(image)], check=True)
        bundle = Path(args.bundle) if args.bundle else None
        if bundle is None:
            from export.pipeline import PipelineConfig, run_pipeline

            cfg = PipelineConfig.preset("quick", tmp / "pipeline", seed=0, include_tflite=True,
                                        include_fp32=True, progress=False)
            bundle = Path(run_pipeline(cfg).bundle_dir)
        root = ArmRoot.unpack(image, tmp / "rootfs")
        res = {"host": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
                       f"QEMU_CPU={os.environ.get('QEMU_CPU', 'cortex-a72')}",
               "image": str(image) if args.image else "built by scripts/build_arm64_image.sh",
               "bundle": "given" if args.bundle else "the quick pipeline (ONNX fp32/int8, LiteRT int8)",
               "repeat": args.repeat, "agent_s": args.agent_s, "note": NOTE}
        res["tasks"] = bench_tasks(root, bundle, args.repeat, tmp)
        res["agent"] = [] if args.skip_agent else bench_agent(root, bundle, args.meters_per_kind, args.agent_s, tmp)
    write_results(res, "sudo python bench/arm64.py " + " ".join(sys.argv[1:]))
    print((RESULTS / "arm64.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
