"""ONNX export with the MoE routing kept sparse, a dense reference export, and a graph walk that
proves the sparsity.

Sparse dispatches: the gather form, and onnxruntime's contrib MoE op for relu students
--------------------------------------------------------------------------------------
``"sparse"`` (gather form): each MoE layer exports as ``TopK`` over the gate logits, ``Gather``
of each token's k expert blocks from the flattened expert tables ``W.reshape(E, -1)``
(``F.embedding``), and batched ``MatMul`` (``trainer.model.MoEFeedForward._gather``). Only k of
N_e expert blocks are read and multiplied per token; no MatMul operand spans all experts
(``sparsity_report`` walks the graph and checks it). It exports with ``torch.onnx.export(dynamo=
True, opset 18)``, matches PyTorch to float rounding, quantizes with the stock ORT quantizer
(gate excluded) and converts with litert-torch: it is the form of the TFLite models (and of the
int8 ONNX for students the contrib kernels cannot run).

``"moe_op"``: the whole layer as one ``com.microsoft.MoE`` node (router logits in, softmax over
the top k inside, experts run only on their tokens: sparse by construction, grouped by expert,
so the per-token weight copies of the gather form disappear). torch.onnx cannot emit it, so the
layer's ``"moe_op"`` dispatch calls the custom op ``unimeter::moe_ffn`` (``trainer.model``) and
the translation table here emits the node.
Measured here (onnxruntime 1.31.1, one thread, d_model=16, d_expert=64, k=2, one layer, us):

=============================  =========  =========  =========  ==========
per layer                      E=8 T=12   E=8 T=768  E=32 T=12  E=32 T=768
=============================  =========  =========  =========  ==========
dense (all experts, masked)    13         345        33         1794
com.microsoft MoE, relu        17         201        22         323
com.microsoft MoE, gelu        35         2289       42         2392
=============================  =========  =========  =========  ==========

bench/results/export.md (student: d_model=16, d_expert=32, 4 layers): one layer at N_e=8, batch 1 /
64 windows, the MoE op is 2.8x / 4.2x faster than dense and the gather form 1.4x / 0.8x; the
whole model is 1.27x / 1.65x faster than dense with the MoE op and 0.99x / 0.82x with the gather
form; from N_e=8 to 32 the MoE op's batch-1 latency grows 10%, dense's 44%. Its gelu is the tanh approximation (1e-3 off PyTorch's erf gelu)
and 10x slower, so it is used for relu models only. TFLite cannot run it. The ORT quantizer does
not produce its int8 twin (``com.microsoft.QMoE``), so ``export.quantize.quantize_moe_op_int8``
rewrites the nodes itself. The bundle ships, for relu students: fp32 ONNX = MoE op, int8 ONNX =
QMoE, TFLite = gather form; for others the gather form throughout. The choice is per artifact
and recorded in the manifest (``topk.dispatch``), with the onnxruntime version the contrib
kernels need (``artifact_requirements``; an older onnxruntime falls back to TFLite).

Batch dimension: dynamic (``Dim("batch")``), everything else static (L, P, covariates). One file
serves the agent's batch 1 and backfills of many windows, which keeps the bundle small; the
graph contains no batch-dependent constant (checked by running batch 1 and 64 in the tests).

Instance normalisation and de-normalisation are part of the task models' forward, so they are in
the graph; gating noise is off because the module is exported in eval mode.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from export.errors import ExportError
from trainer.model import MoEFeedForward
from trainer.tasks import ExportModule

log = logging.getLogger(__name__)

OPSET = 18
IR_VERSION = 10  # what onnxruntime >= 1.17 reads; also what the contrib MoE ops need
MOE_OPS = ("MoE", "QMoE")  # onnxruntime contrib ops (domain com.microsoft) that route sparsely
DISPATCHES = ("sparse", "dense", "moe_op")
# Ops that only move or re-type a tensor: a weight seen through them is still that weight.
PASS_THROUGH_OPS = {
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Expand", "Cast", "Identity", "Flatten",
    "DequantizeLinear", "Contiguous",
}
MATMUL_OPS = {"MatMul", "Gemm", "Einsum", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul",
              "MatMulIntegerToFloat", "FusedMatMul"}


@dataclass
class OnnxExportConfig:
    opset: int = OPSET
    dynamic_batch: bool = True
    dispatch: str = "sparse"  # "sparse" (gather) | "moe_op" (contrib MoE) | "dense" (reference)
    example_batch: int = 2


def _moe_translation() -> dict:
    """torch.ops.unimeter.moe_ffn -> com.microsoft.MoE (weights transposed to [E, out, in])."""
    import onnxscript
    from onnx.defs import OpSchema
    from onnxscript import opset18 as op
    from onnxscript._internal.values import Op

    param = OpSchema.FormalParameter
    schema = OpSchema(
        "MoE", "com.microsoft", 1,
        inputs=[param(n, "T") for n in ("input", "router_probs", "fc1_experts_weights",
                                          "fc1_experts_bias", "fc2_experts_weights", "fc2_experts_bias")],
        outputs=[param("output", "T")], type_constraints=[("T", ["tensor(float)"], "")],
        attributes=[OpSchema.Attribute("k", OpSchema.AttrType.INT, ""),
                    OpSchema.Attribute("activation_type", OpSchema.AttrType.STRING, ""),
                    OpSchema.Attribute("normalize_routing_weights", OpSchema.AttrType.INT, "")],
    )
    moe = Op(onnxscript.values.Opset("com.microsoft", 1), "MoE", schema)

    def moe_onnx(x, logits, w1, b1, w2, b2, k: int, activation: str):
        return moe(x, logits, op.Transpose(w1, perm=[0, 2, 1]), b1, op.Transpose(w2, perm=[0, 2, 1]), b2,
                   k=k, activation_type=activation, normalize_routing_weights=1)

    return {torch.ops.unimeter.moe_ffn.default: moe_onnx}


# the exporter's dispatch names -> the model's (trainer.model.MoEFeedForward.dispatch)
MODEL_DISPATCH = {"sparse": "gather", "moe_op": "moe_op", "dense": "dense"}


def with_dispatch(module: torch.nn.Module, dispatch: str) -> torch.nn.Module:
    """``module`` with every MoE layer on ``dispatch`` (see the module doc): itself if it already
    is, else a copy whose layers were given it (a module attribute; nothing is patched on the
    class and the caller's module is left as it was)."""
    if dispatch not in DISPATCHES:
        raise ValueError(f"dispatch must be one of {DISPATCHES}, got {dispatch!r}")
    layers = [m for m in module.modules() if isinstance(m, MoEFeedForward)]
    if dispatch == "moe_op" and any(m.cfg.activation != "relu" for m in layers):
        raise ExportError("the com.microsoft MoE dispatch matches PyTorch for relu experts only")
    wanted = MODEL_DISPATCH[dispatch]
    if all(m.dispatch == wanted for m in layers):
        return module
    module = copy.deepcopy(module)
    for m in module.modules():
        if isinstance(m, MoEFeedForward):
            m.dispatch = wanted
    return module


# ---------------------------------------------------------------------------------------------
# Export


def export_onnx(module: ExportModule, path: str | Path, cfg: OnnxExportConfig | None = None) -> Path:
    """Export a contract-shaped task module (``trainer.tasks.export_module``) to ONNX."""
    cfg = cfg or OnnxExportConfig()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = with_dispatch(module.eval(), cfg.dispatch)
    example = module.example_inputs(cfg.example_batch)
    dynamic_shapes = None
    if cfg.dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dynamic_shapes = (tuple({0: batch} for _ in example),)
    with torch.no_grad():
        try:
            program = torch.onnx.export(
                module, example, input_names=list(module.input_names),
                output_names=list(module.output_names), dynamo=True, opset_version=cfg.opset,
                dynamic_shapes=dynamic_shapes, optimize=True, verbose=False,
                custom_translation_table=_moe_translation() if cfg.dispatch == "moe_op" else None,
            )
        except Exception as e:  # torch.onnx raises several private types
            raise ExportError(f"torch.onnx.export of task {module.task!r} ({cfg.dispatch}) failed: {e}") from e
    model = program.model_proto
    model.ir_version = min(model.ir_version, IR_VERSION)
    _name_nodes(model)
    strip_debug_info(model)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    log.info("exported %s (%s) to %s (%d B)", module.task, cfg.dispatch, path, path.stat().st_size)
    return path


def strip_debug_info(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node metadata (FX node text, stack, class path: ~75% of a small
    model's file) and its value_info annotations (re-inferred at load; the exporter's can
    disagree with onnx's own inference, which trips the quantizer)."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.graph.value_info[:]
    model.doc_string = ""


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name (the quantizer's nodes_to_exclude refers to names)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


# ---------------------------------------------------------------------------------------------
# Graph walk: the sparsity proof


@dataclass
class MoeShape:
    n_experts: int
    top_k: int
    d_model: int
    d_expert: int

    @classmethod
    def of(cls, module: torch.nn.Module) -> MoeShape:
        layer = next(m for m in module.modules() if isinstance(m, MoEFeedForward))
        c = layer.cfg
        return cls(c.n_experts, c.top_k, c.d_model, c.d_expert)

    @property
    def expert_table_numel(self) -> int:
        return self.n_experts * self.d_model * self.d_expert


@dataclass
class SparsityReport:
    n_topk: int
    expert_gathers: list[str]  # Gather nodes reading an expert table with routed indices
    dense_operands: list[str]  # "node: initializer" pairs where a MatMul reads all experts
    expert_macs_per_token: float  # measured from the shapes of a batch-1 run
    expert_matmuls: list[str] = field(default_factory=list)
    # contrib MoE/QMoE nodes whose k < N_e, and expert tables read by anything else
    moe_nodes: list[str] = field(default_factory=list)
    moe_table_leaks: list[str] = field(default_factory=list)

    @property
    def is_sparse(self) -> bool:
        if self.dense_operands or self.moe_table_leaks:
            return False
        return (self.n_topk > 0 and bool(self.expert_gathers)) or bool(self.moe_nodes)


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _trace_to_initializer(name: str, producers, inits, depth: int = 0) -> list[str]:
    """Initializers a tensor is, seen through pass-through ops (first data input only)."""
    if name in inits:
        return [name]
    node = producers.get(name)
    if node is None or depth > 16:
        return []
    if node.op_type == "Constant":
        return [name]
    if node.op_type not in PASS_THROUGH_OPS or not node.input:
        return []
    return _trace_to_initializer(node.input[0], producers, inits, depth + 1)


def _is_expert_table(arr_shape: tuple[int, ...], moe: MoeShape) -> bool:
    numel = int(np.prod(arr_shape)) if arr_shape else 1
    return numel == moe.expert_table_numel and moe.n_experts in arr_shape


def _initializer_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = tuple(a.t.dims)
    return shapes


def _expert_matmuls(model: onnx.ModelProto, moe: MoeShape) -> tuple[list, list, list]:
    graph = model.graph
    producers = _producers(graph)
    shapes = _initializer_shapes(model)
    gathers, dense, matmuls = [], [], []
    gathered = set()
    for node in graph.node:
        if node.op_type == "Gather":
            src = _trace_to_initializer(node.input[0], producers, shapes)
            if src and _is_expert_table(shapes[src[0]], moe):
                gathers.append(node.name)
                gathered.update(node.output)
    # tensors downstream of a gathered expert block, through pass-through ops
    frontier = set(gathered)
    for node in graph.node:
        if node.op_type in PASS_THROUGH_OPS and node.input and node.input[0] in frontier:
            frontier.update(node.output)
    for node in graph.node:
        if node.op_type not in MATMUL_OPS:
            continue
        for operand in node.input[:2]:
            for src in _trace_to_initializer(operand, producers, shapes):
                if _is_expert_table(shapes[src], moe):
                    dense.append(f"{node.name}: {src} {list(shapes[src])}")
                    matmuls.append(node)
            if operand in frontier:
                matmuls.append(node)
    return gathers, dense, matmuls


def _matmul_macs(model: onnx.ModelProto, nodes: list, feeds: dict[str, np.ndarray]) -> float:
    """MACs of the given MatMul nodes, from the operand shapes of a real onnxruntime run."""

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    wanted = []
    existing = {o.name for o in probe.graph.output}
    for node in nodes:
        for name in node.input[:2]:
            if name not in existing and name not in wanted:
                wanted.append(name)
    for name in wanted:
        probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inits = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    values = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    total = 0.0
    seen = set()
    for node in nodes:
        if node.name in seen:
            continue
        seen.add(node.name)
        a, b = (values[n].shape if n in values else inits[n] for n in node.input[:2])
        if node.op_type == "Gemm":
            total += a[0] * a[1] * (b[0] if any(x.name == "transB" and x.i for x in node.attribute) else b[1])
            continue
        a = (1,) + tuple(a) if len(a) == 1 else tuple(a)
        b = tuple(b) + (1,) if len(b) == 1 else tuple(b)
        batch = np.broadcast_shapes(a[:-2], b[:-2])
        total += float(np.prod(batch)) * a[-2] * a[-1] * b[-1]
    return total


def _contrib_moe(model: onnx.ModelProto, moe: MoeShape) -> tuple[list[str], list[str], float]:
    """The com.microsoft MoE/QMoE nodes: those routing k < N_e experts per token, any consumer
    other than such a node of their expert tables, and their expert MACs per token. The kernels
    run each token through its k routed experts only (grouped by expert), so per token and layer
    they cost k x (d_model x d_expert) x 2 MACs, read off the node's k and its weight shapes."""
    shapes = _initializer_shapes(model)
    sparse_nodes, leaks, macs = [], [], 0.0
    tables: set[str] = set()
    for node in model.graph.node:
        if node.domain != "com.microsoft" or node.op_type not in MOE_OPS:
            continue
        k = next((a.i for a in node.attribute if a.name == "k"), 0)
        w1_name, w2_name = node.input[2], node.input[4 if node.op_type == "MoE" else 5]  # QMoE: +scales
        w1, w2 = shapes.get(w1_name), shapes.get(w2_name)
        if w1 is None or w2 is None or w1[0] != moe.n_experts or not 0 < k < moe.n_experts:
            continue
        sparse_nodes.append(node.name)
        tables.update({w1_name, w2_name})
        macs += k * (w1[1] * moe.d_model + w2[1] * moe.d_expert)
    for node in model.graph.node:
        if node.name not in sparse_nodes:
            leaks += [f"{node.name}: {name}" for name in node.input if name in tables]
    return sparse_nodes, leaks, macs


def sparsity_report(model_path: str | Path, moe: MoeShape, feeds: dict[str, np.ndarray],
                    n_tokens: int) -> SparsityReport:
    """Walk an exported graph: count TopK nodes, find Gathers of expert tables, flag any MatMul
    operand that is a whole expert table, and measure expert-layer MACs per token with ``feeds``
    (``n_tokens`` = batch x P tokens in that run). Contrib MoE/QMoE nodes are sparse when k < N_e
    and nothing else reads their expert tables; their MACs come from k and the weight shapes."""
    model = onnx.load(str(model_path))
    gathers, dense, matmuls = _expert_matmuls(model, moe)
    macs = _matmul_macs(model, matmuls, feeds) / n_tokens if matmuls else 0.0
    moe_nodes, leaks, moe_macs = _contrib_moe(model, moe)
    return SparsityReport(
        n_topk=sum(n.op_type == "TopK" for n in model.graph.node),
        expert_gathers=gathers,
        dense_operands=sorted(set(dense)),
        expert_macs_per_token=macs + moe_macs,
        expert_matmuls=sorted({n.name for n in matmuls}),
        moe_nodes=moe_nodes,
        moe_table_leaks=leaks,
    )


def gate_node_names(model: str | Path | onnx.ModelProto) -> list[str]:
    """The MatMul/Gemm nodes that compute gate logits: the first matmul upstream of each TopK's
    input (gather form) or of each contrib MoE/QMoE node's router logits."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    producers = _producers(model.graph)
    names = []
    for node in model.graph.node:
        if node.op_type == "TopK":
            name = node.input[0]
        elif node.op_type in MOE_OPS and node.domain == "com.microsoft":
            name = node.input[1]
        else:
            continue
        depth = 0
        while name in producers and depth < 16:
            src = producers[name]
            if src.op_type in MATMUL_OPS:
                names.append(src.name)
                break
            name, depth = src.input[0], depth + 1
    return names
