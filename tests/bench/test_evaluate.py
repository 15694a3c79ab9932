"""bench/evaluate.py at D = 7 scores the student as the product ships it: exported by the export
layer (int8 ONNX) and run through onnxruntime. One task, a tiny fleet, a few methods."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_evaluate", ROOT / "bench" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_int8_student_is_exported_and_scored_through_onnxruntime(tmp_path):
    from trainer.evaluation.config import EvalConfig
    from trainer.evaluation.run import evaluate

    cfg = EvalConfig.tiny(out_dir=str(tmp_path), name="evaluation", tasks=("imputation",), ablations=False,
                          n_households=8, methods=("linear_interp", "previous_week_fill", "unimeter",
                                                            "unimeter_teacher"))
    results = evaluate(cfg, command="python bench/evaluate.py --tiny", exporter=_bench().export_students)
    errors = results["tasks"]["imputation"].get("errors", {})
    assert all("(day 100%)" in k for k in errors), errors  # only linear interpolation of a whole day
    assert results["unified"]["unimeter"] == "int8 student, exported ONNX through onnxruntime"
    cell = json.loads((tmp_path / "evaluation.json").read_text())["tasks"]["imputation"]["random"]["0.10"]
    student, teacher, linear = (cell[k]["mae_w"] for k in ("unimeter", "unimeter_teacher", "linear_interp"))
    # a 1-epoch tiny model: the point is the int8 path runs and fills sensibly, not its quality
    assert 0 < student < 10 * linear and 0 < teacher < 10 * linear
    assert "int8 student" in (tmp_path / "evaluation.md").read_text()
