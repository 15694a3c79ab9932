"""Sparse against dense at batch 1 across student shapes: how much of a 12-token window's time
the MoE layers are, and so how far sparse routing can speed the whole model up.

    python bench/export_shapes.py            # ~4 min on one core
    python bench/export_shapes.py --quick

For each shape (N_e = 8, k = 2, relu) it exports an untrained imputation student as dense, as
``com.microsoft.MoE`` and as the bundle's int8 QMoE, then times the three in one process, called
in turn (one thread), at batch 1 and 64. Latency does not depend on the weights' values, only on
the routing spread, so the gate weights are drawn wide (as after training) and no training is
needed. Also reported: expert parameters and the int8 ONNX file size (the bundle budget is 1 MB
for all four tasks, ONNX plus TFLite).

Writes bench/results/export_shapes.json and bench/results/export_shapes.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

SHAPES = (  # the shipped student first
    {"d_model": 16, "d_k": 4, "n_layers": 4, "d_expert": 32},
    {"d_model": 16, "d_k": 4, "n_layers": 4, "d_expert": 64},
    {"d_model": 16, "d_k": 4, "n_layers": 2, "d_expert": 128},
    {"d_model": 16, "d_k": 4, "n_layers": 2, "d_expert": 256},
    {"d_model": 32, "d_k": 8, "n_layers": 2, "d_expert": 128},
    {"d_model": 32, "d_k": 8, "n_layers": 4, "d_expert": 64},
)
FORMS = ("dense", "moe_op", "qmoe")


def export_forms(shape: dict, out: Path, history_days: int = 0) -> tuple[dict[str, Path], dict[str, np.ndarray], int]:
    """Dense, MoE-op and QMoE graphs of an untrained imputation student of ``shape`` with
    ``history_days`` D days of context, 64 windows of feeds (with history for D > 0), and its
    expert parameter count."""
    import torch

    from export.onnx_export import OnnxExportConfig, export_onnx
    from export.quantize import quantize_moe_op_int8
    from trainer.model import ModelConfig
    from trainer.tasks import TaskConfig, TaskModel, export_module

    torch.manual_seed(0)
    cfg = ModelConfig(**{**dict(seq_len=48, n_patches=12, n_experts=8, top_k=2, activation="relu", dropout=0.0,
                                history_days=history_days), **shape})
    model = TaskModel(cfg, TaskConfig(task="imputation")).eval()
    for m in model.modules():
        if hasattr(m, "w_g"):
            torch.nn.init.normal_(m.w_g.weight)
    module = export_module(model)
    paths = {f: export_onnx(module, out / f"{f}.onnx", OnnxExportConfig(dispatch=f)) for f in ("dense", "moe_op")}
    paths["qmoe"] = quantize_moe_op_int8(paths["moe_op"], out / "qmoe.onnx")
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * np.pi, 48, dtype=np.float32)
    load_w = (rng.uniform(100, 2000, (64, 1)) * (1 + 0.5 * np.sin(t + rng.uniform(0, 6, (64, 1))))).astype(np.float32)
    observed = (rng.random((64, 48)) > 0.2).astype(np.float32)
    expert_params = 2 * cfg.n_layers * cfg.n_experts * cfg.d_model * cfg.d_expert
    feeds = {"load_w": load_w * observed, "observed": observed}
    if history_days:
        days = np.arange(1, history_days + 1, dtype=np.float32)[None, :, None]
        feeds["history_w"] = (load_w[:, None, :] * (0.8 + 0.05 * days)).astype(np.float32)
        feeds["history_mask"] = np.ones((64, history_days), np.float32)
    return paths, feeds, expert_params


def time_interleaved(paths: dict[str, Path], feeds: dict[str, np.ndarray], iters: int) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {f: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for f, p in paths.items()}
    out: dict[str, float] = {}
    for batch, n in ((1, iters), (64, max(20, iters // 10))):
        x = {k: np.ascontiguousarray(v[:batch]) for k, v in feeds.items()}
        times = {f: np.empty(n) for f in sessions}
        for s in sessions.values():
            s.run(None, x)
        for i in range(n):
            for f, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, x)
                times[f][i] = time.perf_counter() - t0
        out.update({f"{f}_batch{batch}_ms": float(np.median(v) * 1e3) for f, v in times.items()})
    return out


def markdown(res: dict) -> str:
    d = res.get("history_days", 0)
    tokens = 12 + d
    lines = [f"# Sparse vs dense at batch 1 across student shapes\n\nCommand: `nice -n 10 {res['command']}`  \n"
             f"Machine: {res['machine']}  \n" + "".join(
                 f"Load average at the {when} (1/5/15 min, other jobs on the shared cores): "
                 f"{', '.join(f'{x:.1f}' for x in res[f'load_average_at_{when}_1_5_15min'])}  \n"
                 for when in ("start", "end") if f"load_average_at_{when}_1_5_15min" in res)
             + f"N_e = 8, k = 2, relu, imputation task (L = 48, P = 12, D = {d} days "
             f"of context: {tokens} tokens per window), untrained weights, one thread, one interleaved run per shape\n",
             "| d_model | layers | d_expert | expert params | int8 ONNX kB | dense b1 ms | MoE op b1 ms | "
             "dense / MoE op b1 | dense / QMoE b1 | dense / QMoE b64 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    if not res["shapes"]:  # --shapes 0: the N_e comparison only
        lines = lines[:1]
    for r in res["shapes"]:
        s, m = r["shape"], r["ms"]
        lines.append(
            f"| {s['d_model']} | {s['n_layers']} | {s['d_expert']} | {r['expert_params']} | "
            f"{r['int8_onnx_bytes'] / 1e3:.0f} | {m['dense_batch1_ms']:.3f} | {m['moe_op_batch1_ms']:.3f} | "
            f"{m['dense_batch1_ms'] / m['moe_op_batch1_ms']:.2f}x | {m['dense_batch1_ms'] / m['qmoe_batch1_ms']:.2f}x | "
            f"{m['dense_batch64_ms'] / m['qmoe_batch64_ms']:.2f}x |")
    lines.append("" if not res["shapes"] else f"\nThe first row is the shipped student. Batch 1 is one window of {tokens} tokens: the MoE "
                 "layers' share of its time, not their own speed-up (see export.md, one layer alone), "
                 "bounds the whole-model ratio.")
    ne = res.get("n_experts_8_vs_32")
    if ne:
        ms = ne["ms"]
        lines += ["\n## N_e 8 -> 32 at k = 2 (the shipped shape, all six graphs in one interleaved run)\n",
                  "| form | N_e=8 b1 ms | N_e=32 b1 ms | x (32/8) b1 | N_e=8 b64 ms | N_e=32 b64 ms | x (32/8) b64 |",
                  "|---|---|---|---|---|---|---|"]
        for f in FORMS:
            lines.append(f"| {f} | {ms[f'ne8_{f}_batch1_ms']:.3f} | {ms[f'ne32_{f}_batch1_ms']:.3f} | "
                         f"{ne[f'{f}_batch1_ne32_over_ne8']:.2f} | {ms[f'ne8_{f}_batch64_ms']:.3f} | "
                         f"{ms[f'ne32_{f}_batch64_ms']:.3f} | {ne[f'{f}_batch64_ne32_over_ne8']:.2f} |")
    return "\n".join(lines) + "\n"


def experts_ratio(out: Path, history_days: int, iters: int) -> dict:
    """The shipped shape at N_e = 8 and 32 (k = 2): all six graphs in one process, called in turn."""
    paths, feeds = {}, None
    for ne in (8, 32):
        d = out / f"ne{ne}"
        d.mkdir(parents=True)
        forms, feeds, _ = export_forms({**SHAPES[0], "n_experts": ne}, d, history_days)
        paths.update({f"ne{ne}_{f}": p for f, p in forms.items()})
    ms = time_interleaved(paths, feeds, iters)
    return {"ms": ms, **{f"{f}_batch{b}_ne32_over_ne8": ms[f"ne32_{f}_batch{b}_ms"] / ms[f"ne8_{f}_batch{b}_ms"]
                         for f in FORMS for b in (1, 64)}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="two shapes, few iterations")
    p.add_argument("--history-days", type=int, default=7, metavar="D",
                   help="days of context (default %(default)s, what the default user route ships; results "
                        "export_shapes.* for 7, export_shapes_D<D>.* otherwise)")
    p.add_argument("--shapes", type=int, default=len(SHAPES), metavar="N",
                   help="time the first N shapes only (the first is the shipped student)")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    shapes = SHAPES[:2] if args.quick else SHAPES[:args.shapes]
    iters = 100 if args.quick else args.iters
    d = args.history_days
    res = {"command": "python bench/export_shapes.py " + " ".join(sys.argv[1:]),
           "machine": f"{platform.machine()} {os.cpu_count()} cores (shared), Python {platform.python_version()}",
           "history_days": d, "shapes": [], "load_average_at_start_1_5_15min": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="unimeter-shapes-") as scratch:
        for i, shape in enumerate(tqdm(shapes, desc="shapes", unit="shape")):
            out = Path(scratch) / str(i)
            out.mkdir()
            paths, feeds, expert_params = export_forms(shape, out, d)
            res["shapes"].append({"shape": shape, "expert_params": expert_params,
                                  "int8_onnx_bytes": paths["qmoe"].stat().st_size,
                                  "ms": time_interleaved(paths, feeds, iters)})
        res["n_experts_8_vs_32"] = experts_ratio(Path(scratch) / "ne", d, iters)
    res["load_average_at_end_1_5_15min"] = os.getloadavg()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "export_shapes" if d == 7 else f"export_shapes_D{d}"
    (out_dir / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
