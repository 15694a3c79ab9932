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


def export_forms(shape: dict, out: Path) -> tuple[dict[str, Path], dict[str, np.ndarray], int]:
    import torch

    from export.onnx_export import OnnxExportConfig, export_onnx
    from export.quantize import quantize_moe_op_int8
    from trainer.model import ModelConfig
    from trainer.tasks import TaskConfig, TaskModel, export_module

    torch.manual_seed(0)
    cfg = ModelConfig(seq_len=48, n_patches=12, n_experts=8, top_k=2, activation="relu", dropout=0.0, **shape)
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
    return paths, {"load_w": load_w * observed, "observed": observed}, expert_params


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
    lines = [f"# Sparse vs dense at batch 1 across student shapes\n\nCommand: `{res['command']}`  \n"
             f"Machine: {res['machine']}  \nN_e = 8, k = 2, relu, imputation task (L = 48, P = 12), "
             "untrained weights, one thread, one interleaved run\n",
             "| d_model | layers | d_expert | expert params | int8 ONNX kB | dense b1 ms | MoE op b1 ms | "
             "dense / MoE op b1 | dense / QMoE b1 | dense / QMoE b64 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["shapes"]:
        s, m = r["shape"], r["ms"]
        lines.append(
            f"| {s['d_model']} | {s['n_layers']} | {s['d_expert']} | {r['expert_params']} | "
            f"{r['int8_onnx_bytes'] / 1e3:.0f} | {m['dense_batch1_ms']:.3f} | {m['moe_op_batch1_ms']:.3f} | "
            f"{m['dense_batch1_ms'] / m['moe_op_batch1_ms']:.2f}x | {m['dense_batch1_ms'] / m['qmoe_batch1_ms']:.2f}x | "
            f"{m['dense_batch64_ms'] / m['qmoe_batch64_ms']:.2f}x |")
    lines.append("\nThe first row is the shipped student. Batch 1 is one window of 12 tokens: the MoE "
                 "layers' share of its time, not their own speed-up (see export.md, one layer alone), "
                 "bounds the whole-model ratio.")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="two shapes, few iterations")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    shapes = SHAPES[:2] if args.quick else SHAPES
    iters = 100 if args.quick else args.iters
    res = {"command": "python bench/export_shapes.py " + " ".join(sys.argv[1:]),
           "machine": f"{platform.machine()} {os.cpu_count()} cores (shared), Python {platform.python_version()}",
           "shapes": []}
    with tempfile.TemporaryDirectory(prefix="unimeter-shapes-") as scratch:
        for i, shape in enumerate(tqdm(shapes, desc="shapes", unit="shape")):
            out = Path(scratch) / str(i)
            out.mkdir()
            paths, feeds, expert_params = export_forms(shape, out)
            res["shapes"].append({"shape": shape, "expert_params": expert_params,
                                  "int8_onnx_bytes": paths["qmoe"].stat().st_size,
                                  "ms": time_interleaved(paths, feeds, iters)})
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "export_shapes.json").write_text(json.dumps(res, indent=2) + "\n")
    (out_dir / "export_shapes.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
