"""TFLite export: litert-torch conversion of the same sparse (gather-form) module, then int8
weights with ai-edge-quantizer's ``weight_only_wi8_afp32`` recipe and the gate left float.

The TFLite graph has a fixed batch (1 by default: the agent's per-window call); the runtime runs
larger batches in chunks of that size. litert-torch names the signature inputs ``args_0, ...``
and the outputs ``output_0, ...`` for a tuple-returning module; ``tflite_io_map`` reads the
signature and maps them to the contract names, and the bundle writer stores that map.

Gate: the quantizer's regex matches an op's output tensor name, which litert-torch builds from
the module path, so ``.*NoisyTopKGate_gate.*Linear_w_g.*`` picks exactly the gate projections;
they get ``no_quantize`` (a quantized gate flips routes, see ``export.quantize``).

Tolerance of the converted float model against PyTorch: 1e-4 relative to the output scale (the
same graph in another runtime, float32 rounding only); of the int8 weight-only model: a few
percent relative, stated and checked in tests/export.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from export.errors import ExportError
from export.onnx_export import with_dispatch
from trainer.tasks import ExportModule

log = logging.getLogger(__name__)

GATE_REGEX = r".*NoisyTopKGate_gate.*Linear_w_g.*"


@dataclass
class TfliteExportConfig:
    batch: int = 1
    gate_regex: str = GATE_REGEX


def export_tflite(module: ExportModule, path: str | Path, cfg: TfliteExportConfig | None = None) -> Path:
    """Convert the sparse task module to a float32 .tflite with litert-torch."""
    import litert_torch

    cfg = cfg or TfliteExportConfig()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = with_dispatch(module.eval(), "sparse")
    # litert-torch prints its stage timings to stdout; they go to stderr, with the rest of the
    # progress, so a command's stdout holds only its result
    with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):
        try:
            edge_model = litert_torch.convert(module, module.example_inputs(cfg.batch))
        except Exception as e:  # the converter raises many types
            raise ExportError(f"litert-torch conversion of task {module.task!r} failed: {e}") from e
        edge_model.export(str(path))
    log.info("converted %s to %s (%d B)", module.task, path, path.stat().st_size)
    return path


def quantize_tflite_int8(fp32_path: str | Path, int8_path: str | Path,
                         cfg: TfliteExportConfig | None = None) -> Path:
    """int8 weights (float activations) for every supported op except the gate projections."""
    from ai_edge_quantizer import qtyping, quantizer, recipe

    cfg = cfg or TfliteExportConfig()
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    qt = quantizer.Quantizer(str(fp32_path), recipe.weight_only_wi8_afp32())
    qt.update_quantization_recipe(
        regex=cfg.gate_regex,
        operation_name=qtyping.TFLOperationName.FULLY_CONNECTED,
        algorithm_key="no_quantize",
    )
    try:
        result = qt.quantize(enable_progress_report=False)
    except Exception as e:
        raise ExportError(f"ai-edge-quantizer failed on {fp32_path}: {e}") from e
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    if int8_path.exists():
        int8_path.unlink()
    result.export_model(str(int8_path))
    shorten_tensor_names(int8_path)
    log.info("quantized %s -> %s (%d B)", fp32_path.name, int8_path.name, int8_path.stat().st_size)
    return int8_path


def shorten_tensor_names(path: str | Path) -> None:
    """Replace litert-torch's tensor names (full module paths, ~60% of a small model's file) by
    short ones; gate tensors keep a ``gate`` marker. Signatures refer to tensors by index, so
    the signature runner is unaffected."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(Path(path))
    for g, subgraph in enumerate(model.subgraphs):
        for i, tensor in enumerate(subgraph.tensors):
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name or "")
            tensor.name = f"gate_w_g/{g}.{i}" if "Linear_w_g" in name else f"{g}.{i}"
    fb.write_model(model, str(path))


def _index(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 0


def tflite_io_map(path: str | Path, input_names: tuple[str, ...], output_names: tuple[str, ...],
                  batch: int = 1) -> dict:
    """Signature names of a converted model mapped to the contract names (by position)."""
    from ai_edge_litert.interpreter import Interpreter

    signature = Interpreter(model_path=str(path)).get_signature_list()["serving_default"]
    ins = sorted(signature["inputs"], key=_index)
    outs = sorted(signature["outputs"], key=_index)
    if len(ins) != len(input_names) or len(outs) != len(output_names):
        raise ExportError(
            f"{path}: signature {signature} does not match contract {input_names} -> {output_names}"
        )
    return {
        "batch": batch,
        "inputs": dict(zip(input_names, ins, strict=True)),
        "outputs": dict(zip(output_names, outs, strict=True)),
    }
