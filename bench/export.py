"""Export benchmark: latency, throughput, file sizes and memory of the Pi-sized student in every
form the bundle ships, sparse against dense, N_e = 8 against 32 at k = 2, with the days of context
the product ships (D = 7: ``history_w`` [B, D, 48] and ``history_mask`` [B, D] beside the window).

    python bench/export.py                      # full run, D = 7 (~30-45 min on 2 shared cores)
    python bench/export.py --history-days 0     # the one-day model (results: export_D0.*)
    python bench/export.py --quick              # smoke run (small training, fewer iterations)

For each N_e it trains the student (``trainer.distill.default_student_config``: d_model=16,
4 layers, k=2, d_expert=32, relu, D days of context) on simulated households (the context sets of
``export.pipeline.build_profile_sets``: each household one meter, windows with the D days before
them) for the imputation and anomaly tasks, and at N_e = 8 also forecast and NILM (the four-task
bundle whose size is the target), writes a real bundle (``export.bundle_writer.write_bundle`` with
the dense reference), then times every artifact in its own subprocess (one thread; peak RSS from
that process):

* torch fp32 (eval, gather dispatch), ONNX fp32 dense, ONNX fp32 sparse (gather form and
  com.microsoft.MoE), ONNX int8 sparse (com.microsoft.QMoE: the bundle's int8 model; and the
  gather form), TFLite int8 (ai-edge-litert; batch 64 = 64 calls of the batch-1 graph);
* batch 1 and batch 64: p50/p99 latency per call and windows/s;
* ratios (sparse vs dense, N_e 32 vs 8) from one interleaved run: every ONNX session of both N_e
  in one process, called in turn, so a busy moment of this shared host hits all forms alike;
  the per-process figures above them are absolute latencies and peak memory;
* where a batch-1 call's time goes (onnxruntime's node profile by op type: the MoE op's share);
* the int8 model's task metrics against fp32 on held-out households and its routing agreement.

Writes bench/results/export.json, export.md and export.png (``--history-days`` other than 7:
export_D<D>.*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

FORMS = ("torch_fp32", "onnx_fp32_dense", "onnx_fp32_gather", "onnx_fp32_moe_op", "onnx_int8_qmoe",
         "onnx_int8_gather", "tflite_int8")
ONNX_FORMS = tuple(f for f in FORMS if f.startswith("onnx"))
SPARSE_FP32 = ("onnx_fp32_gather", "onnx_fp32_moe_op")
SHIPPED_INT8 = "onnx_int8_qmoe"  # the bundle's int8 ONNX (relu student)
TASKS = ("imputation", "anomaly")  # the tasks timed and judged int8 against fp32
PROFILE_TASKS = ("imputation", "anomaly", "forecast")  # trained with context; + NILM: the four-task bundle
NILM_STEPS = 100
DEFAULT_HISTORY_DAYS = 7  # D of the default user route (unimeter train all)


# ---------------------------------------------------------------------------------------------
# Worker: one form, one process (so peak memory is that form's)


def _session(form: str, model_path: str, task: str):
    """A callable feeds -> outputs for one form, single-threaded."""
    if form == "torch_fp32":
        import torch

        from trainer.checkpoint import load_task_model
        from trainer.tasks import export_module

        torch.set_num_threads(1)
        module = export_module(load_task_model(model_path)).eval()

        def run_torch(feeds):
            with torch.no_grad():
                return module(*(torch.from_numpy(feeds[n]) for n in module.input_names))
        return run_torch
    if form.startswith("onnx"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(None, feeds)
    from edge.bundle import load_bundle
    from edge.runtime import InferenceRuntime

    runtime = InferenceRuntime(load_bundle(model_path), backend="tflite", precision="int8", threads=1)
    return lambda feeds: runtime.run(task, feeds)


def _time(call, feeds: dict, iters: int) -> dict:
    for _ in range(max(5, iters // 10)):
        call(feeds)
    times = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        call(feeds)
        times[i] = time.perf_counter() - t0
    batch = next(iter(feeds.values())).shape[0]
    return {"p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3),
            "mean_ms": float(times.mean() * 1e3), "windows_per_s": float(batch / times.mean()),
            "p50_ms_per_window": float(np.percentile(times, 50) * 1e3 / batch)}


def _vm_kb(field: str) -> float:
    """VmHWM (peak) / VmRSS of this process in kB (ru_maxrss survives exec, VmHWM does not)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def worker(spec: dict) -> dict:
    rss_before = _vm_kb("VmRSS")
    call = _session(spec["form"], spec["path"], spec["task"])
    data = np.load(spec["feeds"])
    result = {}
    for batch, iters in ((1, spec["iters"]), (64, max(20, spec["iters"] // 10))):
        feeds = {k: np.ascontiguousarray(data[k][:batch]) for k in data.files}
        result[f"batch{batch}"] = _time(call, feeds, iters)
    result["peak_rss_mb"] = _vm_kb("VmHWM") / 1024
    result["import_rss_mb"] = rss_before / 1024
    return result


def run_worker(spec: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['form']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Building the students and their bundles


def build(n_experts: int, out: Path, steps: int, households: int, history_days: int, seed: int = 0,
          reuse: bool = False, four_tasks: bool = False) -> dict:
    """Train the student for the timed tasks (``TASKS``, with ``history_days`` D days of context:
    the sets of ``export.pipeline.build_profile_sets``) and write their bundle; ``four_tasks``:
    forecast and NILM too, for the four-task bundle size (``reuse``: take the checkpoints and
    bundle a previous run left in ``out``, to re-time on a quieter machine). NILM has no context
    and is trained only ``NILM_STEPS`` steps: file sizes do not depend on training, and its latency
    is not what this benchmark times."""
    from export.bundle_writer import BundleConfig, write_bundle
    from export.onnx_export import OnnxExportConfig, export_onnx
    from export.pipeline import PipelineConfig, build_nilm_sets, build_profile_sets
    from export.quantize import quantize_onnx_int8
    from trainer.checkpoint import load_task_model
    from trainer.distill import default_student_config
    from trainer.finetune import FinetuneConfig, finetune
    from trainer.model import ModelConfig
    from trainer.tasks import export_module

    pcfg = PipelineConfig(out_dir=out, households=households, days=30, seed=seed, history_days=history_days)
    profile_sets = build_profile_sets(pcfg)
    sets = {t: (profile_sets[t]["train"], profile_sets[t]["val"], profile_sets[t]["test"]) for t in PROFILE_TASKS}
    model_cfg = default_student_config(ModelConfig.table1(history_days=history_days), n_experts=n_experts)
    ckpts = {task: out / "ckpt" / f"{task}.pt" for task in ((*PROFILE_TASKS, "nilm") if four_tasks else TASKS)}
    built = {"ckpts": ckpts, "bundle": out / "bundle", "gather": {t: out / f"{t}.gather.onnx" for t in TASKS},
             "gather_int8": {t: out / f"{t}.gather.int8.onnx" for t in TASKS},
             "test": {t: s[2] for t, s in sets.items()}, "config": model_cfg, "history_days": history_days}
    if reuse and (out / "bundle" / "manifest.json").exists() and all(p.exists() for p in ckpts.values()):
        return built
    if four_tasks:
        nilm = build_nilm_sets(pcfg)
        sets["nilm"] = (nilm["train"], nilm["val"], nilm["test"])
    nilm_cfg = default_student_config(ModelConfig.table1(seq_len=pcfg.nilm_window, n_patches=pcfg.nilm_patches),
                                      n_experts=n_experts)
    for task in ckpts:
        cfg = FinetuneConfig(task=task, out_dir=str(out / "ckpt"), epochs=1000, batch_size=64, lr=2e-3,
                             regularizer="none", max_steps=steps if task != "nilm" else min(steps, NILM_STEPS),
                             progress=True, plot=False, model=nilm_cfg if task == "nilm" else model_cfg,
                             patience=1000, seed=seed,
                             appliances=list(pcfg.nilm_appliances) if task == "nilm" else [])
        ckpts[task] = finetune(cfg, None, sets[task][0], sets[task][1])
    write_bundle(ckpts, out / "bundle", model_version=f"bench-ne{n_experts}-d{history_days}",
                 cfg=BundleConfig(include_dense=True), overwrite=True)
    for t in TASKS:
        export_onnx(export_module(load_task_model(ckpts[t])), built["gather"][t], OnnxExportConfig())
        quantize_onnx_int8(built["gather"][t], built["gather_int8"][t])
    return built


def input_names(task: str, history_days: int) -> tuple[str, ...]:
    """The graph inputs of ``task`` for a model with ``history_days`` days of context."""
    from edge.task_io import task_io

    return tuple(t.name for t in task_io(task, history_days).inputs)


def quality(built: dict) -> dict:
    """int8 (ONNX and TFLite) against fp32 on held-out households: task metrics and routing."""
    import onnxruntime as ort

    from edge.bundle import load_bundle
    from edge.runtime import InferenceRuntime
    from export.quantize import routing_agreement
    from trainer.distill import HEADLINE, task_metric

    bundle = built["bundle"]
    tflite = InferenceRuntime(load_bundle(bundle), backend="tflite", precision="int8")
    out = {}
    for task in TASKS:
        data = built["test"][task]
        feeds = {k: data.arrays[k].astype(np.float32) for k in input_names(task, built["history_days"])}
        metrics = {}
        for form, path in (("fp32", bundle / f"{task}.fp32.onnx"), ("int8", bundle / f"{task}.int8.onnx"),
                           ("int8_gather", built["gather_int8"][task])):
            s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            metrics[f"onnx_{form}"] = task_metric(task, dict(zip([o.name for o in s.get_outputs()],
                                                                  s.run(None, feeds), strict=True)), data.arrays)
        metrics["tflite_int8"] = task_metric(task, tflite.run(task, feeds), data.arrays)
        key, _ = HEADLINE[task]
        ref = metrics["onnx_fp32"][key]
        out[task] = {"metrics": metrics, "headline": key,
                     "onnx_int8_rel_change": abs(metrics["onnx_int8"][key] - ref) / max(abs(ref), 1e-9),
                     "onnx_int8_gather_rel_change": abs(metrics["onnx_int8_gather"][key] - ref) / max(abs(ref), 1e-9),
                     "tflite_int8_rel_change": abs(metrics["tflite_int8"][key] - ref) / max(abs(ref), 1e-9),
                     "routing_agreement": routing_agreement(built["gather"][task],
                                                            bundle / f"{task}.int8.onnx", feeds),
                     "routing_agreement_int8_gather": routing_agreement(built["gather"][task],
                                                                        built["gather_int8"][task], feeds),
                     "n_windows": len(data)}
    return out


def form_paths(built: dict, task: str = "imputation") -> dict[str, Path]:
    b = built["bundle"]
    return {"torch_fp32": built["ckpts"][task], "onnx_fp32_dense": b / f"{task}.dense.fp32.onnx",
            "onnx_fp32_gather": built["gather"][task], "onnx_fp32_moe_op": b / f"{task}.fp32.onnx",
            "onnx_int8_qmoe": b / f"{task}.int8.onnx", "onnx_int8_gather": built["gather_int8"][task],
            "tflite_int8": b}


def feeds_file(built: dict, scratch: Path, task: str = "imputation") -> Path:
    """64 held-out windows of ``task``, every input its graph takes (with history for D > 0)."""
    data = built["test"][task].arrays
    path = scratch / "feeds.npz"
    np.savez(path, **{k: data[k][:64].astype(np.float32) for k in input_names(task, built["history_days"])})
    return path


def measure(built: dict, iters: int, scratch: Path) -> dict:
    feeds_path, paths = feeds_file(built, scratch), form_paths(built)
    results = {}
    for form in FORMS:
        print(f"  timing {form} ...", flush=True)
        results[form] = run_worker({"form": form, "path": str(paths[form]), "task": "imputation",
                                    "feeds": str(feeds_path), "iters": iters})
    return results


def interleaved(models: dict[str, Path], feeds_path: Path, iters: int) -> dict:
    """p50 ms per call of every ONNX model in ``models``, all in this process and called in turn
    (one thread each), at batch 1 and 64: the run the ratios are taken from."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sessions = {n: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for n, p in models.items()}
    data = np.load(feeds_path)
    out: dict[str, dict] = {n: {} for n in models}
    for batch, n_iter in ((1, iters), (64, max(20, iters // 10))):
        feeds = {k: np.ascontiguousarray(data[k][:batch]) for k in data.files}
        times = {n: np.empty(n_iter) for n in models}
        for s in sessions.values():
            for _ in range(5):
                s.run(None, feeds)
        for i in range(n_iter):
            for n, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, feeds)
                times[n][i] = time.perf_counter() - t0
        for n in models:
            out[n][f"batch{batch}_p50_ms"] = float(np.percentile(times[n], 50) * 1e3)
    return out


def layer_bench(iters: int, scratch: Path, tokens_per_window: int) -> dict:
    """One MoE layer alone (student width, d_expert=32): gather vs MoE op vs QMoE vs dense, at the token
    counts of batch 1 and 64 windows (``tokens_per_window`` each: P = 12 patches + D history days),
    N_e 8 and 32; p50 us per call (keys ``ne{N_e}_{form}_t{tokens}_us``)."""
    import onnxruntime as ort
    import torch

    from export.onnx_export import OnnxExportConfig, export_onnx
    from export.quantize import QuantizeConfig, quantize_moe_op_int8
    from trainer.distill import default_student_config
    from trainer.model import ModelConfig, MoEFeedForward

    class LayerModule(torch.nn.Module):
        task, input_names, output_names, n_covariates = "moe_layer", ("x",), ("y",), 0

        def __init__(self, cfg: ModelConfig):
            super().__init__()
            self.layer = MoEFeedForward(cfg)
            torch.nn.init.normal_(self.layer.gate.w_g.weight)  # spread routing as after training
            self.d_model = cfg.d_model

        def forward(self, *inputs):  # positional inputs, as trainer.tasks.ExportModule
            return (self.layer(inputs[0])[0],)

        def example_inputs(self, n: int):
            return (torch.randn(n * tokens_per_window, self.d_model),)

    out = {}
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    for ne in (8, 32):
        torch.manual_seed(0)
        module = LayerModule(default_student_config(ModelConfig.table1(), n_experts=ne)).eval()
        for form, dispatch in (("gather", "sparse"), ("moe_op", "moe_op"), ("qmoe", "moe_op"), ("dense", "dense")):
            path = export_onnx(module, scratch / f"layer_{ne}_{form}.onnx", OnnxExportConfig(dispatch=dispatch))
            if form == "qmoe":
                path = quantize_moe_op_int8(path, path, QuantizeConfig(moe_int8_scope="experts"))
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for tokens in (tokens_per_window, 64 * tokens_per_window):
                x = {"x": np.random.default_rng(0).normal(size=(tokens, module.d_model)).astype(np.float32)}
                r = _time(lambda f, s=session: s.run(None, f), x, iters if tokens == tokens_per_window else iters // 10)
                out[f"ne{ne}_{form}_t{tokens}_us"] = r["p50_ms"] * 1e3
    return out


def runtime_overhead(built: dict, iters: int) -> dict:
    """edge.runtime.InferenceRuntime.run (validation, dict plumbing) against a bare onnxruntime
    session on the same int8 model, batch 1 (the agent's per-window call)."""
    import onnxruntime as ort

    from edge.bundle import load_bundle
    from edge.runtime import InferenceRuntime

    data = built["test"]["imputation"].arrays
    feeds = {k: np.ascontiguousarray(data[k][:1], dtype=np.float32)
             for k in input_names("imputation", built["history_days"])}
    runtime = InferenceRuntime(load_bundle(built["bundle"]), backend="onnx", precision="int8", threads=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    bare = ort.InferenceSession(str(built["bundle"] / "imputation.int8.onnx"), options,
                                providers=["CPUExecutionProvider"])
    wrapped = _time(lambda f: runtime.run("imputation", f), feeds, iters)
    raw = _time(lambda f: bare.run(None, f), feeds, iters)
    return {"runtime_p50_ms": wrapped["p50_ms"], "bare_session_p50_ms": raw["p50_ms"],
            "overhead_us": (wrapped["p50_ms"] - raw["p50_ms"]) * 1e3,
            "runtime_windows_per_s": wrapped["windows_per_s"]}


def sizes(bundle: Path) -> dict:
    """Bytes of the bundle's model files: all of them, without the dense reference (int8 and fp32
    ONNX, TFLite) and int8 only (ONNX and TFLite: what ``unimeter train all`` and the pipeline ship,
    ``include_fp32=False``), per task and in total."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    per = {name: a["bytes"] for name, a in manifest["artifacts"].items()}
    shipped = {n: s for n, s in per.items() if ".dense." not in n}
    int8_only = {n: s for n, s in shipped.items() if ".int8." in n}
    tasks = sorted({n.split(".")[0] for n in per})
    return {"files": per, "tasks": tasks, "bundle_bytes_without_dense": sum(shipped.values()),
            "bundle_bytes_int8_only": sum(int8_only.values()),
            "per_task_bytes": {t: sum(s for n, s in shipped.items() if n.startswith(t + ".")) for t in tasks},
            "per_task_bytes_int8_only": {t: sum(s for n, s in int8_only.items() if n.startswith(t + "."))
                                         for t in tasks}}


def op_profile(models: dict[str, Path], feeds_path: Path, iters: int) -> dict:
    """Where a batch-1 call's time goes: onnxruntime's node profile of each model in ``models``
    (one thread, ``iters`` calls after a warm-up), summed per op type; us per call by op type,
    largest first, and the share of the MoE op (MoE / QMoE or, in the dense graph, its MatMuls
    are not separable, so the dense graph is reported by op type only)."""
    import onnx
    import onnxruntime as ort

    data = np.load(feeds_path)
    feeds = {k: np.ascontiguousarray(data[k][:1]) for k in data.files}
    out = {}
    for name, path in models.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(20):
            session.run(None, feeds)
        options.enable_profiling = True
        options.profile_file_prefix = str(feeds_path.parent / f"profile_{name.replace('/', '_')}")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(iters):
            session.run(None, feeds)
        trace = json.loads(Path(session.end_profiling()).read_text())
        per_op: dict[str, float] = {}
        kernels_run = 0
        for ev in trace:
            if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
                op = ev.get("args", {}).get("op_name", "?")
                per_op[op] = per_op.get(op, 0.0) + ev["dur"] / iters
                kernels_run += 1
        calls = [ev["dur"] for ev in trace if ev.get("cat") == "Session" and ev.get("name") == "model_run"]
        total = float(np.median(calls)) if calls else sum(per_op.values())
        nodes = sum(per_op.values())
        moe = sum(v for k, v in per_op.items() if k in ("MoE", "QMoE"))
        out[name] = {"graph_nodes": len(onnx.load(str(path)).graph.node),
                     "nodes_run_per_call": kernels_run / iters,  # after onnxruntime's graph optimisation
                     "model_run_p50_us": total, "kernels_us": nodes, "moe_us": moe,
                     "moe_share_of_kernels": moe / nodes if nodes else 0.0,
                     "per_op_us": dict(sorted(per_op.items(), key=lambda kv: -kv[1]))}
    return out


# ---------------------------------------------------------------------------------------------
# Report


def targets(res: dict) -> dict:
    """Ratios from the interleaved run; absolute latency from the per-process run."""
    e8 = res["n_experts"]["8"]
    il = res["interleaved"]

    def ratio(num: str, den: str, batch: int) -> float:
        return il[num][f"batch{batch}_p50_ms"] / il[den][f"batch{batch}_p50_ms"]

    sparse = (*SPARSE_FP32, SHIPPED_INT8)
    out = {}
    for batch in (1, 64):
        for f in (*sparse, "onnx_int8_gather"):
            out[f"{f}_vs_dense_batch{batch}_speedup"] = ratio("ne8/onnx_fp32_dense", f"ne8/{f}", batch)
        best = max(SPARSE_FP32, key=lambda f, b=batch: out[f"{f}_vs_dense_batch{b}_speedup"])
        out[f"sparse_vs_dense_batch{batch}_speedup"] = out[f"{best}_vs_dense_batch{batch}_speedup"]
        out[f"sparse_batch{batch}_dispatch"] = best
        for f in (*sparse, "onnx_int8_gather", "onnx_fp32_dense"):
            if f"ne32/{f}" in il:
                out[f"{f}_batch{batch}_ne32_over_ne8"] = ratio(f"ne32/{f}", f"ne8/{f}", batch)
    layer, tokens = res["moe_layer_p50_us"], res["tokens_per_window"]
    for f in ("moe_op", "qmoe", "dense"):
        out[f"layer_{f}_batch1_ne32_over_ne8"] = layer[f"ne32_{f}_t{tokens}_us"] / layer[f"ne8_{f}_t{tokens}_us"]
    out["onnx_int8_batch1_p50_ms"] = e8["latency"][SHIPPED_INT8]["batch1"]["p50_ms"]
    out["bundle_tasks"] = e8["sizes"]["tasks"]
    out["bundle_bytes_with_fp32"] = e8["sizes"]["bundle_bytes_without_dense"]
    out["bundle_bytes_int8_only"] = e8["sizes"]["bundle_bytes_int8_only"]
    out["bundle_bytes_per_task_max"] = max(e8["sizes"]["per_task_bytes_int8_only"].values())
    out["worst_int8_metric_rel_change"] = max(q["onnx_int8_rel_change"] for q in e8["quality"].values())
    out["worst_routing_agreement"] = min(q["routing_agreement"] for q in e8["quality"].values())
    return out


def markdown(res: dict, command: str) -> str:
    t = res["targets"]
    d, tokens = res["history_days"], res["tokens_per_window"]
    lines = [f"# Export benchmark\n\nCommand: `nice -n 10 {command}`  \nMachine: {res['machine']}  \n"
             f"Student: {res['student']}  \n" + (f"Load average at the end (1/5/15 min): "
             f"{', '.join(f'{x:.1f}' for x in res['load_average_1_5_15min'])}  \n" if "load_average_1_5_15min" in res else "")
             + (f"Load average at the start (1/5/15 min): "
                f"{', '.join(f'{x:.1f}' for x in res['load_average_at_start_1_5_15min'])}  \n"
                if "load_average_at_start_1_5_15min" in res else "")
             + f"Context: D = {d} days of history (`history_w` [B, {d}, 48], "
             f"`history_mask` [B, {d}]), {tokens} tokens per window (12 patches + {d} day tokens)\n" + ("\nThe students and bundles are a previous run's (the same command "
                                                "without `--reuse`), re-timed (`--reuse`).\n"
                                                if res.get("reused") else ""),
             "## Latency (imputation task, one thread, p50 / p99 ms per call)\n",
             "| N_e | form | batch 1 p50 | batch 1 p99 | batch 64 p50 | batch 64 p99 | windows/s @64 | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for ne, r in res["n_experts"].items():
        for form, m in r["latency"].items():
            b1, b64 = m["batch1"], m["batch64"]
            lines.append(f"| {ne} | {form} | {b1['p50_ms']:.3f} | {b1['p99_ms']:.3f} | {b64['p50_ms']:.3f} | "
                         f"{b64['p99_ms']:.3f} | {b64['windows_per_s']:.0f} | {m['peak_rss_mb']:.0f} |")
    il = res["interleaved"]
    lines += ["\n## Interleaved run: the ratios (p50 ms per call; all ONNX sessions in one process, "
              "called in turn)\n",
              "| form | N_e=8 batch 1 | N_e=32 batch 1 | x (32/8) | N_e=8 batch 64 | N_e=32 batch 64 | x (32/8) | "
              "dense / form, batch 1 / 64 (N_e=8) |", "|---|---|---|---|---|---|---|---|"]
    for form in ONNX_FORMS:
        if f"ne32/{form}" not in il:  # one N_e (--n-experts 8)
            a1, a64 = il[f"ne8/{form}"]["batch1_p50_ms"], il[f"ne8/{form}"]["batch64_p50_ms"]
            d1, d64 = il["ne8/onnx_fp32_dense"]["batch1_p50_ms"], il["ne8/onnx_fp32_dense"]["batch64_p50_ms"]
            lines.append(f"| {form} | {a1:.3f} | - | - | {a64:.3f} | - | - | {d1 / a1:.2f}x / {d64 / a64:.2f}x |")
            continue
        a1, b1 = il[f"ne8/{form}"]["batch1_p50_ms"], il[f"ne32/{form}"]["batch1_p50_ms"]
        a64, b64 = il[f"ne8/{form}"]["batch64_p50_ms"], il[f"ne32/{form}"]["batch64_p50_ms"]
        d1, d64 = il["ne8/onnx_fp32_dense"]["batch1_p50_ms"], il["ne8/onnx_fp32_dense"]["batch64_p50_ms"]
        lines.append(f"| {form} | {a1:.3f} | {b1:.3f} | {b1 / a1:.2f} | {a64:.3f} | {b64:.3f} | {b64 / a64:.2f} | "
                     f"{d1 / a1:.2f}x / {d64 / a64:.2f}x |")
    layer = res["moe_layer_p50_us"]
    lines += ["\n## One MoE layer alone (p50 us per call, one thread)\n",
              "| N_e | tokens | gather | MoE op | QMoE int8 | dense | dense / best sparse |",
              "|---|---|---|---|---|---|---|"]
    for ne in (8, 32):
        for tokens in (res["tokens_per_window"], 64 * res["tokens_per_window"]):
            g, m, q, d = (layer[f"ne{ne}_{f}_t{tokens}_us"] for f in ("gather", "moe_op", "qmoe", "dense"))
            lines.append(f"| {ne} | {tokens} | {g:.1f} | {m:.1f} | {q:.1f} | {d:.1f} | {d / min(g, m, q):.2f}x |")
    lines += ["\n## int8 against fp32 on held-out households (N_e = 8)\n",
              "| task | metric | ONNX fp32 | ONNX int8 (QMoE, shipped) | TFLite int8 | int8 rel. change | "
              "routing agreement | int8 gather form: value, rel. change, routing |",
              "|---|---|---|---|---|---|---|---|"]
    for task, q in res["n_experts"]["8"]["quality"].items():
        k, m = q["headline"], q["metrics"]
        lines.append(f"| {task} | {k} | {m['onnx_fp32'][k]:.4g} | {m['onnx_int8'][k]:.4g} | "
                     f"{m['tflite_int8'][k]:.4g} | {q['onnx_int8_rel_change']:.2%} | {q['routing_agreement']:.4f} | "
                     f"{m['onnx_int8_gather'][k]:.4g}, {q['onnx_int8_gather_rel_change']:.2%}, "
                     f"{q['routing_agreement_int8_gather']:.4f} |")
    rt = res["n_experts"]["8"]["runtime"]
    lines += [f"\nedge.runtime.InferenceRuntime, int8, batch 1: p50 {rt['runtime_p50_ms']:.3f} ms "
              f"({rt['runtime_windows_per_s']:.0f} windows/s; bare session {rt['bare_session_p50_ms']:.3f} ms, "
              f"validation and plumbing {rt['overhead_us']:.0f} us per call)\n"]
    lines += _profile_md(res["op_profile"])
    lines += ["\n## Files (N_e = 8)\n", "| file | bytes |", "|---|---|"]
    lines += [f"| {n} | {b} |" for n, b in res["n_experts"]["8"]["sizes"]["files"].items()]
    lines += ["\n## Targets\n", "| target | measured | met |", "|---|---|---|"]
    checks = [_ne_check(t)] + [
        ("sparse >= 1.5x faster than dense, batch 1 (whole model, N_e=8)",
         f"{t['sparse_vs_dense_batch1_speedup']:.2f}x ({t['sparse_batch1_dispatch']}; int8 QMoE: "
         f"{t[f'{SHIPPED_INT8}_vs_dense_batch1_speedup']:.2f}x)", t["sparse_vs_dense_batch1_speedup"] >= 1.5),
        ("sparse no slower than dense, batch 64 (whole model, N_e=8)",
         f"{t['sparse_vs_dense_batch64_speedup']:.2f}x ({t['sparse_batch64_dispatch']}; int8 QMoE: "
         f"{t[f'{SHIPPED_INT8}_vs_dense_batch64_speedup']:.2f}x; gather: "
         f"{t['onnx_fp32_gather_vs_dense_batch64_speedup']:.2f}x)", t["sparse_vs_dense_batch64_speedup"] >= 1.0),
        ("ONNX int8 batch-1 p50 <= 0.5 ms (QMoE, own process)", f"{t['onnx_int8_batch1_p50_ms']:.3f} ms", t["onnx_int8_batch1_p50_ms"] <= 0.5),
        ("int8 task metric within 2% of fp32", f"{t['worst_int8_metric_rel_change']:.2%}",
         t["worst_int8_metric_rel_change"] <= 0.02),
        ("int8 routing agreement >= 99%", f"{t['worst_routing_agreement']:.2%}", t["worst_routing_agreement"] >= 0.99),
        (f"bundle <= 1.5 MB for the four tasks ({', '.join(t['bundle_tasks'])}; int8 ONNX + int8 TFLite, "
         "as shipped)", f"{t['bundle_bytes_int8_only'] / 1e6:.3f} MB (largest task "
         f"{t['bundle_bytes_per_task_max'] / 1e6:.3f} MB; with the fp32 ONNX too: "
         f"{t['bundle_bytes_with_fp32'] / 1e6:.3f} MB)", t["bundle_bytes_int8_only"] <= 1_500_000),
    ]
    lines += [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, value, ok in checks]
    return "\n".join(lines) + "\n"


def _ne_check(t: dict) -> tuple[str, str, bool]:
    """The N_e 8 -> 32 row: the whole models' ratio when both were built, else one MoE layer's."""
    if "onnx_fp32_moe_op_batch1_ne32_over_ne8" not in t:
        flat = max(t["layer_moe_op_batch1_ne32_over_ne8"], t["layer_qmoe_batch1_ne32_over_ne8"])
        return ("latency nearly flat N_e 8 -> 32 (batch 1, one MoE layer at a window's tokens, MoE op / "
                "QMoE; whole models: bench/export_shapes.py)",
                f"x{t['layer_moe_op_batch1_ne32_over_ne8']:.2f} / x{t['layer_qmoe_batch1_ne32_over_ne8']:.2f} "
                f"(dense layer: x{t['layer_dense_batch1_ne32_over_ne8']:.2f})", flat <= 1.25)
    flat = max(t["onnx_fp32_moe_op_batch1_ne32_over_ne8"], t[f"{SHIPPED_INT8}_batch1_ne32_over_ne8"])
    return ("latency nearly flat N_e 8 -> 32 (batch 1, MoE op / int8 QMoE)",
            f"x{t['onnx_fp32_moe_op_batch1_ne32_over_ne8']:.2f} / x{t[f'{SHIPPED_INT8}_batch1_ne32_over_ne8']:.2f} "
            f"(dense: x{t['onnx_fp32_dense_batch1_ne32_over_ne8']:.2f}; batch 64: "
            f"x{t['onnx_fp32_moe_op_batch64_ne32_over_ne8']:.2f} / x{t[f'{SHIPPED_INT8}_batch64_ne32_over_ne8']:.2f}, "
            f"dense x{t['onnx_fp32_dense_batch64_ne32_over_ne8']:.2f})", flat <= 1.25)


def _profile_md(prof: dict) -> list[str]:
    """Where a batch-1 call's time goes, per graph: the five costliest op types."""
    lines = ["\n## Where batch 1 goes (onnxruntime node profile, N_e = 8, us per call)\n",
             "| graph | nodes in the file / run per call | call p50 | kernels | MoE / QMoE op | MoE share of kernels "
             "| costliest op types (us) |",
             "|---|---|---|---|---|---|---|"]
    for name, r in prof.items():
        top = ", ".join(f"{op} {us:.1f}" for op, us in list(r["per_op_us"].items())[:6])
        nodes = f"{r['graph_nodes']} / {r['nodes_run_per_call']:.0f}" if "graph_nodes" in r else "-"
        lines.append(f"| {name} | {nodes} | {r['model_run_p50_us']:.1f} | {r['kernels_us']:.1f} | {r['moe_us']:.1f} | "
                     f"{r['moe_share_of_kernels']:.0%} | {top} |")
    return lines


def plot(res: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, batch in zip(axes, (1, 64), strict=True):
        x = np.arange(len(FORMS))
        for i, (ne, r) in enumerate(res["n_experts"].items()):
            ax.bar(x + (i - 0.5) * 0.4, [r["latency"][f][f"batch{batch}"]["p50_ms"] for f in FORMS], 0.4,
                   label=f"N_e={ne}")
        ax.set_xticks(x, [f.replace("_", "\n", 1) for f in FORMS], fontsize=8)
        ax.set_ylabel("p50 ms per call")
        ax.set_title(f"batch {batch}, one thread")
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small training and few iterations (smoke run)")
    p.add_argument("--history-days", type=int, default=DEFAULT_HISTORY_DAYS, metavar="D",
                   help="days of context of the profile models (default %(default)s, what the default user "
                        "route ships; 0: the one-day model). Results: export.* for the default, "
                        "export_D<D>.* otherwise")
    p.add_argument("--n-experts", type=int, nargs="+", default=[8, 32], choices=[8, 32], metavar="N_E",
                   help="students to build (8 is always built: the shipped one and the bundle size)")
    p.add_argument("--steps", type=int, default=600, help="training steps per task and N_e")
    p.add_argument("--households", type=int, default=60)
    p.add_argument("--iters", type=int, default=2000, help="timed calls at batch 1 (batch 64: /10)")
    p.add_argument("--out", default=str(RESULTS), help="results directory")
    p.add_argument("--work", default="/tmp/unimeter-bench-export", help="scratch directory")
    p.add_argument("--reuse", action="store_true",
                   help="re-time the students and bundles a previous run left in --work (no training)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.steps, args.iters, args.households = 100, 200, 20
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    command = "python bench/export.py " + " ".join(sys.argv[1:])
    d = args.history_days
    work = Path(args.work) / f"D{d}"
    res = {"command": command, "machine": f"{platform.machine()} {platform.processor() or ''} "
           f"{os.cpu_count()} cores (shared), Python {platform.python_version()}", "n_experts": {},
           "reused": args.reuse, "history_days": d, "tokens_per_window": 12 + d,
           "load_average_at_start_1_5_15min": os.getloadavg()}
    models: dict[str, Path] = {}
    for ne in sorted({8, *args.n_experts}):
        print(f"N_e = {ne}: training the students and writing their bundle", flush=True)
        built = build(ne, work / f"ne{ne}", args.steps, args.households, d, reuse=args.reuse, four_tasks=ne == 8)
        models.update({f"ne{ne}/{f}": p for f, p in form_paths(built).items() if f in ONNX_FORMS})
        feeds_path = feeds_file(built, work)
        res["student"] = {k: v for k, v in built["config"].to_dict().items()
                          if k in ("d_model", "n_layers", "top_k", "d_expert", "activation", "history_days")}
        res["n_experts"][str(ne)] = {"latency": measure(built, args.iters, work / f"ne{ne}"),
                                     "sizes": sizes(built["bundle"]), "quality": quality(built),
                                     "runtime": runtime_overhead(built, args.iters)}
    print("interleaved run ...", flush=True)
    res["interleaved"] = interleaved(models, feeds_path, args.iters)
    print("op profile ...", flush=True)
    res["op_profile"] = op_profile({f: models[f"ne8/{f}"] for f in ("onnx_int8_qmoe", "onnx_fp32_moe_op",
                                                                     "onnx_fp32_dense")},
                                   feeds_path, max(50, args.iters // 4))
    print("MoE layer alone ...", flush=True)
    res["moe_layer_p50_us"] = layer_bench(args.iters, work, res["tokens_per_window"])
    res["targets"] = targets(res)
    res["load_average_1_5_15min"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "export" if d == DEFAULT_HISTORY_DAYS else f"export_D{d}"
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown(res, command))
    plot(res, out / f"{stem}.png")
    print((out / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
