"""int8 ONNX: dynamic quantization with the gate MatMuls kept in float.

Why dynamic, not static: the windows' scale varies by orders of magnitude between households
(50 W to 10 kW), but the graph normalises each window first, so activations are already O(1);
dynamic quantization computes activation scales per call and needs no calibration set, so the
int8 model cannot drift from a calibration that did not see a household type. Weights are 8-bit
per tensor (per-channel scales gave no measurable gain on d_model=16 and cost DequantizeLinear
nodes in the hot path).

Why the weights are uint8, not int8: a dynamic int8 MatMul multiplies uint8 activations by its
weights. With int8 weights, onnxruntime's x86 kernel (MLAS U8S8 on AVX2, and on AVX-512 without
VNNI) adds each pair of neighbouring products in saturating 16-bit arithmetic (``VPMADDUBSW``:
255 x 127 x 2 = 64,770 is clamped to 32,767), so one graph gives different numbers on different
x86 CPUs (microsoft/onnxruntime#5849, #14642). Measured on an AVX2 host without VNNI, onnxruntime
1.31.1 and 1.32.0 alike: 8.5% of a random u8 x s8 MatMulInteger's outputs wrong (exact under
aarch64 emulation, Cortex-A72 and A76); quantizing the test model's backbone kept 81% of the
routes (99.5% when the same graph is computed exactly). uint8 weights take the U8U8 kernel, exact
on every CPU; 7-bit int8 weights (``reduce_range``) are exact too but lose precision, and
onnxruntime's session option ``session.x64quantprecision`` (#12088) only helps sessions that set
it. So the graph itself is made exact, and ``integer_matmul_overflows`` refuses any int8 weights
that could saturate.

Why the gate stays float: a quantized gate flips 1-2% of the top-k routes (a different expert
is a different function, ~10% relative error on those tokens); excluding the gate's MatMul
(``nodes_to_exclude``) keeps routing identical to fp32. ``routing_agreement`` measures it.

What is quantized: the MatMuls (attention, embeddings, heads) and the expert tables' Gather,
which becomes a Gather over uint8 tables plus dequantization of only the k gathered blocks,
so the int8 graph stays sparse (``onnx_export.sparsity_report`` walks it the same way).

The QMoE form (relu students, the bundle's int8 ONNX)
-----------------------------------------------------
``quantize_moe_op_int8`` starts from the ``moe_op`` export instead and turns every
``com.microsoft.MoE`` node into ``com.microsoft.QMoE`` with 8-bit expert weights: symmetric,
one scale per expert and output row (the kernel's "column-wise" layout, zero point 128). The
kernel keeps the MoE op's sparse dispatch (tokens grouped by expert, only the k routed experts
run), dequantizes inside its GEMMs, and replaces the gather form's ~12 nodes per layer with one,
so the int8 model is as fast as the fp32 MoE op at batch 1 and 64 and no longer pays per-token
weight copies. Per-row scales also keep the experts' error well below per-tensor int8's.

What else is int8 (``QuantizeConfig.moe_int8_scope``): by default ("heads") the MatMuls after
the last MoE layer (the task heads, the largest non-expert matrices: the forecast head alone is
~48k weights) are dynamic int8, and the backbone's embedding and attention MatMuls stay float.
Those feed the gates: quantizing them too moved 1.8% of the routes of a d_expert=64 student
(98.2% agreement, against 99.97% with them float) for 7 kB, and at d_model=16 a dynamic int8
MatMul is no faster than a float one (it quantizes its activation on every call). "experts"
leaves the heads float too; "all" quantizes every MatMul but the gates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from export.errors import ExportError
from export.onnx_export import MOE_OPS, _name_nodes, _producers, gate_node_names

log = logging.getLogger(__name__)


@dataclass
class QuantizeConfig:
    op_types: list[str] = field(default_factory=lambda: ["MatMul", "Gemm", "Gather"])
    per_channel: bool = False
    reduce_range: bool = False
    exclude_gate: bool = True
    moe_int8_scope: str = "heads"  # QMoE form: "experts" | "heads" (after the last MoE) | "all"
    # dynamic int8 MatMul weights: "uint8" (exact on every CPU) or "int8", which is refused unless
    # reduce_range keeps it to 7 bits (full-range int8 saturates x86 kernels without VNNI)
    weight_type: str = "uint8"


def _dynamic_int8(model: onnx.ModelProto, int8_path: Path, op_types: list[str], exclude: list[str],
                  cfg: QuantizeConfig, source: Path) -> None:
    """onnxruntime's dynamic int8 quantization of ``model`` into ``int8_path``, nodes renamed."""

    # The exporter's value_info can disagree with onnx's own shape inference (seen on Split);
    # the quantizer re-infers shapes, so hand it the graph without the stale annotations.
    del model.graph.value_info[:]
    # the quantizer rewrites Gemm as MatMul + Add and names the MatMul "<gemm>_MatMul"
    exclude = [*exclude, *(f"{name}_MatMul" for name in exclude)]
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    weight_types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    if cfg.weight_type not in weight_types:
        raise ValueError(f"weight_type must be one of {sorted(weight_types)}, got {cfg.weight_type!r}")
    try:
        quantize_dynamic(
            model, str(int8_path), op_types_to_quantize=op_types, per_channel=cfg.per_channel,
            reduce_range=cfg.reduce_range, weight_type=weight_types[cfg.weight_type],
            nodes_to_exclude=exclude, extra_options={"MatMulConstBOnly": True},
        )
    except Exception as e:  # the quantizer raises bare Exceptions
        raise ExportError(f"int8 quantization of {source} failed: {e}") from e
    quantized = onnx.load(str(int8_path))
    overflows = integer_matmul_overflows(quantized)
    if overflows:
        int8_path.unlink()  # never left where a bundle could pick it up
        raise ExportError(f"int8 quantization of {source}: MatMuls whose int8 weights saturate onnxruntime's "
                          f"x86 kernels on CPUs without VNNI: {overflows}; quantize with uint8 weights "
                          "(QuantizeConfig.weight_type, the default) or 7-bit int8 (reduce_range=True)")
    _name_nodes(quantized)
    onnx.save_model(quantized, str(int8_path))


# integer MatMul ops whose weights (input 1) meet uint8 activations in onnxruntime's u8 x s8 kernels
U8_ACTIVATION_MATMULS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul")
# int8 weights in this range never saturate a 16-bit pair sum: 255 x 64 x 2 = 32,640 <= 32,767
# (onnxruntime's 7-bit reduce_range int8 is [-64, 64]; 65 gives 33,150)
S8_EXACT_RANGE = (-64, 64)


def integer_matmul_overflows(model: onnx.ModelProto) -> list[str]:
    """Integer MatMuls that onnxruntime may compute wrongly on x86 CPUs without VNNI: those with
    constant int8 weights outside [-64, 64] (see the module doc). Returns "node: weight" entries;
    an empty list means every integer MatMul of ``model`` is exact on any CPU."""

    inits = {i.name: i for i in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type not in U8_ACTIVATION_MATMULS or len(node.input) < 2:
            continue
        weight = node.input[3 if node.op_type == "QLinearMatMul" else 1]
        init = inits.get(weight)
        if init is None or init.data_type != onnx.TensorProto.INT8:
            continue
        values = numpy_helper.to_array(init)
        if values.size and (values.min() < S8_EXACT_RANGE[0] or values.max() > S8_EXACT_RANGE[1]):
            found.append(f"{node.name or node.op_type}: {weight}")
    return found


def quantize_onnx_int8(fp32_path: str | Path, int8_path: str | Path,
                       cfg: QuantizeConfig | None = None) -> Path:
    """Dynamic int8 quantization of an exported fp32 model; the gate MatMuls stay float."""
    cfg = cfg or QuantizeConfig()
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    model = onnx.load(str(fp32_path))
    gates = gate_node_names(model) if cfg.exclude_gate else []
    n_topk = sum(n.op_type == "TopK" for n in model.graph.node)
    if cfg.exclude_gate and len(gates) != n_topk:
        raise ExportError(f"{fp32_path}: found {len(gates)} gate MatMuls for {n_topk} TopK nodes")
    _dynamic_int8(model, int8_path, cfg.op_types, gates, cfg, fp32_path)
    log.info("quantized %s -> %s (%d B); gate kept float: %s", fp32_path.name, int8_path.name,
             int8_path.stat().st_size, gates)
    return int8_path


def _quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[E, out, in] float -> (uint8 weights with zero point 128, [E, out] scales): symmetric per row."""
    scale = np.abs(w).max(axis=-1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[..., None]), -127, 127).astype(np.int16) + 128
    return q.astype(np.uint8), scale


def _moe_to_qmoe(model: onnx.ModelProto) -> int:
    """Rewrite every com.microsoft.MoE node as QMoE with 8-bit experts; returns the count."""

    inits = {i.name: i for i in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        if node.op_type != "MoE" or node.domain != "com.microsoft":
            continue
        x, logits, w1, b1, w2, b2 = node.input[:6]
        missing = [n for n in (w1, w2) if n not in inits]
        if missing:
            raise ExportError(f"MoE node {node.name}: expert weights {missing} are not initializers")
        inputs = [x, logits]
        for w, b, tag in ((w1, b1, "fc1"), (w2, b2, "fc2")):
            q, scale = _quantize_rows(numpy_helper.to_array(inits[w]).astype(np.float32))
            model.graph.initializer.extend([numpy_helper.from_array(q, f"{node.name}.{tag}.q8"),
                                            numpy_helper.from_array(scale, f"{node.name}.{tag}.scale")])
            inputs += [f"{node.name}.{tag}.q8", f"{node.name}.{tag}.scale", b]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        qmoe = helper.make_node("QMoE", inputs, list(node.output), name=node.name, domain="com.microsoft",
                                k=attrs["k"], activation_type=attrs["activation_type"],
                                normalize_routing_weights=attrs.get("normalize_routing_weights", 1),
                                expert_weight_bits=8)
        node.CopyFrom(qmoe)
        count += 1
    used = {name for n in model.graph.node for name in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return count


def _upstream_of_moe(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes some MoE/QMoE node depends on (everything ahead of the last gate)."""
    producers = _producers(model.graph)
    seen: set[str] = set()
    stack = [name for n in model.graph.node if n.op_type in MOE_OPS for name in n.input]
    while stack:
        node = producers.get(stack.pop())
        if node is not None and node.name not in seen:
            seen.add(node.name)
            stack.extend(node.input)
    return seen


def quantize_moe_op_int8(moe_fp32_path: str | Path, int8_path: str | Path,
                         cfg: QuantizeConfig | None = None) -> Path:
    """int8 twin of a ``moe_op`` export: QMoE experts (8-bit, per-row scales), plus dynamic int8
    MatMuls in ``cfg.moe_int8_scope`` (see the module doc); the gates always stay float."""
    cfg = cfg or QuantizeConfig()
    if cfg.moe_int8_scope not in ("experts", "heads", "all"):
        raise ValueError(f"moe_int8_scope must be experts, heads or all, got {cfg.moe_int8_scope!r}")
    moe_fp32_path, int8_path = Path(moe_fp32_path), Path(int8_path)
    model = onnx.load(str(moe_fp32_path))
    if _moe_to_qmoe(model) == 0:
        raise ExportError(f"{moe_fp32_path}: no com.microsoft.MoE node to quantize")
    _name_nodes(model)
    matmuls = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
    keep_float = {"experts": set(matmuls), "heads": _upstream_of_moe(model), "all": set()}[cfg.moe_int8_scope]
    exclude = sorted((keep_float | set(gate_node_names(model))) & set(matmuls))
    if set(exclude) >= set(matmuls):
        onnx.checker.check_model(model)
        int8_path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(int8_path))
    else:
        _dynamic_int8(model, int8_path, ["MatMul", "Gemm"], exclude, cfg, moe_fp32_path)
    log.info("quantized %s -> %s (%d B): QMoE experts, %d of %d MatMuls int8", moe_fp32_path.name,
             int8_path.name, int8_path.stat().st_size, len(set(matmuls) - set(exclude)), len(matmuls))
    return int8_path


def _with_route_outputs(path: str | Path) -> tuple[bytes, list[str], list[int]]:
    """The model with each MoE layer's routing exposed as a graph output: a TopK's index output
    (gather form), or the router logits of a MoE/QMoE node (its k is returned alongside; 0 for
    TopK outputs, which are already indices)."""
    model = onnx.load(str(path))
    names, ks = [], []
    for n in model.graph.node:
        if n.op_type == "TopK":
            names.append(n.output[1])
            ks.append(0)
        elif n.op_type in MOE_OPS and n.domain == "com.microsoft":
            names.append(n.input[1])
            ks.append(next(a.i for a in n.attribute if a.name == "k"))
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    return model.SerializeToString(), names, ks


def topk_routes(path: str | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Per MoE layer, the [tokens, k] expert indices the model chose for ``feeds``, sorted per token."""

    blob, names, ks = _with_route_outputs(path)
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    routes = []
    for out, k in zip(session.run(names, feeds), ks, strict=True):
        out = np.asarray(out)
        if k:  # router logits: the op's top k (ties are measure-zero for float logits)
            out = np.argsort(-out.reshape(-1, out.shape[-1]), axis=-1, kind="stable")[:, :k]
        routes.append(np.sort(out.reshape(-1, out.shape[-1]), axis=-1))
    return routes


def routing_agreement(fp32_path: str | Path, int8_path: str | Path,
                      feeds: dict[str, np.ndarray]) -> float:
    """Fraction of (token, layer) pairs whose set of top-k experts is the same in both models."""
    a, b = topk_routes(fp32_path, feeds), topk_routes(int8_path, feeds)
    if len(a) != len(b):
        raise ExportError(f"models differ in MoE layers: {len(a)} vs {len(b)} routed layers")
    same = sum(int((x == y).all(-1).sum()) for x, y in zip(a, b, strict=True))
    total = sum(x.shape[0] for x in a)
    return same / total
