"""What one evaluation run depends on (stored in its results.json), and its constants."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from edge.task_io import TASKS
from trainer.errors import TrainerError

__all__ = ["ATTACK_KINDS", "HISTORY_DAYS", "RNG_STREAMS", "STEPS_PER_DAY", "TASKS", "TEACHER", "UNIFIED",
           "UNIFIED_VARIANTS", "EvalConfig", "EvaluationError", "UnifiedVariant", "config_dict"]

STEPS_PER_DAY = 48  # 30-min profiles (seed 000: L = 48)
HISTORY_DAYS = 7  # forecast and anomaly windows come with a week of history
SPLITS = ("train", "val", "test")
# Random stream of each task's data (and of the pre-training subsets): fixed numbers, so a task's
# test windows and attacks do not depend on which other tasks run or in what order.
RNG_STREAMS = {"forecast": 0, "imputation": 1, "anomaly": 2, "nilm": 3, "pretrain": 4}


ATTACK_KINDS = ("scaling", "ramp_ii")  # seed 000's scaling and (up-then-down) ramping attacks
UNIFIED = "unimeter"  # the method name of the full unified model (with D > 0: its int8 student)
TEACHER = "unimeter_teacher"  # D > 0: the fine-tuned teacher the student is distilled from (PyTorch)


@dataclass
class UnifiedVariant:
    """One unified-model configuration under test (the full model or an ablation)."""

    name: str
    overrides: dict = field(default_factory=dict)


UNIFIED_VARIANTS = {
    "unimeter": UnifiedVariant("unimeter"),
    "unimeter_no_moe": UnifiedVariant("unimeter_no_moe", {"moe": False}),
    "unimeter_no_ib": UnifiedVariant("unimeter_no_ib", {"use_ib": False, "beta": 0.0}),
}


class EvaluationError(TrainerError):
    """The evaluation cannot run as configured (too few households or days, unknown method)."""

    exit_code = 2


@dataclass
class EvalConfig:
    """Everything one evaluation run depends on; stored in results.json."""

    n_households: int = 200
    days: int = 90
    seed: int = 0
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    tasks: tuple[str, ...] = ("forecast", "imputation", "anomaly", "nilm")
    methods: tuple[str, ...] = ()  # empty = every method available for the task
    # forecasting
    origin_stride_steps: int = 12  # forecast origins every 6 h
    # imputation
    missing_rates: tuple[float, ...] = (0.1, 0.3, 0.5)
    missing_patterns: tuple[str, ...] = ("random", "block")
    # anomaly (Cui et al. 2019): attacked share of windows, magnitudes, durations
    attack_fraction: float = 0.5
    scaling_range: tuple[float, float] = (0.2, 0.8)
    ramp_peak_range: tuple[float, float] = (0.3, 1.0)
    attack_steps_range: tuple[int, int] = (8, 24)
    # NILM (high-rate)
    nilm_households: int = 40
    nilm_days: int = 4
    nilm_resolution_s: int = 60
    nilm_window: int = 240
    nilm_epochs: int = 15  # NILM sets are small (a few hundred windows): more passes, same cost
    # sample caps per split (the test split is capped too, at a fixed random subset)
    max_train_windows: int = 12_000
    max_val_windows: int = 1_500
    max_eval_windows: int = 3_000
    max_imputation_test_days: int = 150  # the classical fillers run per day, SSA/EMD ~0.1 s each
    # budgets: the committed run must finish in ~25 min on a shared 2-core machine
    epoch_windows: int = 5_000  # learned baselines: a fresh random subset of this many per epoch
    baseline_epochs: int = 10
    unified_model: str = "table1"
    pretrain_profiles: int = 5_000  # a fixed random subset of the training households' days
    pretrain_epochs: int = 4
    pretrain_batch_size: int = 16  # Table I
    finetune_windows: int = 5_000  # a fixed random subset of the training windows
    finetune_epochs: int = 4
    finetune_batch_size: int = 32
    ablations: bool = True
    # D: days of each household's history the unified model sees (``trainer.context``; 0 = the
    # one-day model of seed 000). With D > 0 the profile tasks' unified model is a teacher
    # fine-tuned with its context, distilled into the product's student (``trainer.distill``), and
    # that student is scored as exported (int8 ONNX through onnxruntime) when the run is given an
    # exporter (``bench/evaluate.py``), else in PyTorch (fp32); the teacher is scored beside it.
    history_days: int = HISTORY_DAYS
    distill_epochs: int = 3
    # PyPOTS SAITS: this many epochs on a fixed random subset of this many training days (each with
    # the day before): 2000 x 10 took ~5 min at load 7 on 2 cores, the budget of one method
    saits_epochs: int = 10
    saits_windows: int = 2_000
    mape_floor_w: float = 50.0
    threads: int = 1
    out_dir: str = "bench/results"
    name: str = "evaluation"
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise EvaluationError(f"unknown tasks {sorted(unknown)}; choose from {TASKS}")
        if not isinstance(self.history_days, int) or self.history_days < 0:
            raise EvaluationError(f"history_days must be a whole number >= 0, got {self.history_days!r}")

    @classmethod
    def tiny(cls, **overrides) -> EvalConfig:
        """A few households and days: the end-to-end test and a dry run."""
        base = dict(n_households=10, days=16, origin_stride_steps=24, nilm_households=5, nilm_days=1,
                    nilm_window=120, max_train_windows=512, max_val_windows=256, max_eval_windows=256,
                    max_imputation_test_days=8, epoch_windows=256, finetune_windows=256,
                    pretrain_profiles=256, finetune_batch_size=32,
                    baseline_epochs=1, pretrain_epochs=1, finetune_epochs=1, nilm_epochs=1,
                    distill_epochs=1, saits_epochs=1, saits_windows=256,
                    unified_model="tiny",
                    progress=False)
        base.update(overrides)
        return cls(**base)

    def split_fractions(self) -> dict[str, float]:
        return dict(zip(SPLITS, self.split, strict=True))


def config_dict(cfg: EvalConfig) -> dict:
    """The config as JSON-ready values (tuples as lists)."""
    return {f.name: (list(v) if isinstance(v := getattr(cfg, f.name), tuple) else v) for f in fields(cfg)}
