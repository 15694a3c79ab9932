"""int8 ONNX: dynamic quantization with the gate MatMuls kept in float.

Why dynamic, not static: the windows' scale varies by orders of magnitude between households
(50 W to 10 kW), but the graph normalises each window first, so activations are already O(1);
dynamic quantization computes activation scales per call and needs no calibration set, so the
int8 model cannot drift from a calibration that did not see a household type. Weights are int8
(symmetric, per tensor: per-channel scales gave no measurable gain on d_model=16 and cost
DequantizeLinear nodes in the hot path).

Why the gate stays float: a quantized gate flips 1-2% of the top-k routes (a different expert
is a different function, ~10% relative error on those tokens); excluding the gate's MatMul
(``nodes_to_exclude``) keeps routing identical to fp32. ``routing_agreement`` measures it.

What is quantized: the MatMuls (attention, embeddings, heads) and the expert tables' Gather,
which becomes a Gather over uint8 tables plus dequantization of only the k gathered blocks,
so the int8 graph stays sparse (``onnx_export.sparsity_report`` walks it the same way).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from export.onnx_export import ExportError, _name_nodes, gate_node_names

log = logging.getLogger(__name__)


@dataclass
class QuantizeConfig:
    op_types: list[str] = field(default_factory=lambda: ["MatMul", "Gemm", "Gather"])
    per_channel: bool = False
    reduce_range: bool = False
    exclude_gate: bool = True


def quantize_onnx_int8(fp32_path: str | Path, int8_path: str | Path,
                       cfg: QuantizeConfig | None = None) -> Path:
    """Dynamic int8 quantization of an exported fp32 model; the gate MatMuls stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    cfg = cfg or QuantizeConfig()
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    gates = gate_node_names(fp32_path) if cfg.exclude_gate else []
    # the quantizer rewrites Gemm as MatMul + Add and names the MatMul "<gemm>_MatMul"
    exclude = [*gates, *(f"{name}_MatMul" for name in gates)]
    n_topk = sum(n.op_type == "TopK" for n in onnx.load(str(fp32_path)).graph.node)
    if cfg.exclude_gate and len(gates) != n_topk:
        raise ExportError(f"{fp32_path}: found {len(gates)} gate MatMuls for {n_topk} TopK nodes")
    # The exporter's value_info can disagree with onnx's own shape inference (seen on Split);
    # the quantizer re-infers shapes, so hand it the graph without the stale annotations.
    clean = onnx.load(str(fp32_path))
    del clean.graph.value_info[:]
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        quantize_dynamic(
            clean, str(int8_path), op_types_to_quantize=cfg.op_types,
            per_channel=cfg.per_channel, reduce_range=cfg.reduce_range, weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude, extra_options={"MatMulConstBOnly": True},
        )
    except Exception as e:  # the quantizer raises bare Exceptions
        raise ExportError(f"int8 quantization of {fp32_path} failed: {e}") from e
    model = onnx.load(str(int8_path))
    _name_nodes(model)
    onnx.save_model(model, str(int8_path))
    log.info("quantized %s -> %s (%d B); gate kept float: %s", fp32_path.name, int8_path.name,
             int8_path.stat().st_size, gates)
    return int8_path


def _with_topk_outputs(path: str | Path) -> tuple[bytes, list[str]]:
    """The model with every TopK's index output added as a graph output."""
    model = onnx.load(str(path))
    names = [n.output[1] for n in model.graph.node if n.op_type == "TopK"]
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    return model.SerializeToString(), names


def topk_routes(path: str | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Per MoE layer, the [tokens, k] expert indices the model chose for ``feeds``, sorted per token."""
    import onnxruntime as ort

    blob, names = _with_topk_outputs(path)
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    out = session.run(names, feeds)
    return [np.sort(np.asarray(o).reshape(-1, o.shape[-1]), axis=-1) for o in out]


def routing_agreement(fp32_path: str | Path, int8_path: str | Path,
                      feeds: dict[str, np.ndarray]) -> float:
    """Fraction of (token, layer) pairs whose set of top-k experts is the same in both models."""
    a, b = topk_routes(fp32_path, feeds), topk_routes(int8_path, feeds)
    if len(a) != len(b):
        raise ExportError(f"models differ in MoE layers: {len(a)} vs {len(b)} TopK nodes")
    same = sum(int((x == y).all(-1).sum()) for x, y in zip(a, b, strict=True))
    total = sum(x.shape[0] for x in a)
    return same / total
