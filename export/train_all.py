"""``unimeter train all``: a user's own meter files -> a verified, calibrated bundle and a report.

One command runs the stages that also run alone (``import-data``, ``train pretrain``,
``train finetune``, ``train distill``, ``export``) on one meter's or a few meters' own days:

1. import: read the files (``edge.data.loaders``), local days at 15 min / 30 min / hourly
   (``edge.data.profiles``; every resample and clock change said), holidays by country, the
   optional temperature; written as shards in ``OUT/data`` for the stand-alone commands;
2. split by time: the latest days of each meter are the test days, the days before them
   validation (``edge.data.userdata.time_split``); nothing is tuned on the test days;
3. pretrain (seed 000 Alg. 2) on day-long windows sliding over the training days
   (``trainer.profile_sets``), or take a fleet checkpoint pretrained at the same resolution;
4. fine-tune every profile task (Alg. 1), early-stopped on the validation days;
5. distil each teacher (task loss + distillation loss + hidden-token loss), trying the preset's
   student sizes (fewer layers and experts, started from the teacher's weights: ``trainer.distill``)
   smallest first and keeping the first within 2.5 % of the teacher on every validation metric,
   judged as the report judges the test days (MAPE; anomaly F1 at a threshold calibrated to the
   false-alarm budget); the teacher itself (relu, so it exports the same sparse way) is the last
   candidate, and the choice says by how much the closest student missed;
6. export the bundle (QMoE 8-bit experts with float heads, see ``export_stage``), the int8 anomaly
   model's threshold fitted on the clean validation days to the false-alarm budget
   (``edge.calibration``) before the manifest is verified and written, then every task served
   once through ``edge.runtime``;
7. judge the int8 bundle on the held-out latest days against the naive baselines
   (``trainer.user_eval``; with ``--compare-saits`` also PyPOTS SAITS trained on the same days,
   ``trainer.baselines.saits``): ``OUT/report.md``, ``report.json``, ``report.png``.

Batch size, epochs, steps and patience come from the number of windows
(``trainer.schedule.adapt_schedule``); every choice is said on stderr as it is made and kept in
``OUT/choices.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edge.data.labels import describe, label_profiles, load_labels
from edge.data.loaders import load
from edge.data.realdata import meter_profiles_from_shards, write_series
from edge.data.shards import read_manifest
from edge.data.userdata import time_split
from edge.errors import ConfigError
from edge.features import CovariateSpec
from trainer.user_eval import JUDGE_IMPUTATION_REPEATS

PROFILE_TASKS = ("imputation", "anomaly", "forecast")
N_PATCHES = 12  # 2-hour patches at 15 min, 30 min and hourly (patch_len 8 / 4 / 2)

# Students as wide as their teacher with fewer layers and experts, so that they start from the teacher's
# weights (trainer.distill: DistilBERT's layer selection, the most used experts kept). Measured on the taylor
# series' imputation teacher (validation days, preset small): 2 of 4 layers from the teacher 2.1 % better than
# the teacher on the worst cell, where students of half the width from a random start were 31-51 % worse.
_SMALL_WIDTH = dict(d_model=32, d_k=8, d_expert=64)
_FULL_WIDTH = dict(d_model=64, d_k=16, d_expert=128)

PRESETS: dict[str, dict] = {
    "tiny": dict(teacher=dict(d_model=8, d_k=4, n_experts=4, top_k=2, n_layers=2, d_expert=16, dropout=0.0,
                              activation="relu"),
                 students=[dict(d_model=8, d_k=4, n_experts=4, n_layers=1, d_expert=16)],
                 pretrain_steps=30, finetune_steps=30, distill_steps=30, windows_per_day=4,
                 judge_masks=2),  # tests: the route's cost, not its figures
    "small": dict(teacher=dict(d_model=32, d_k=8, n_experts=8, top_k=2, n_layers=4, d_expert=64, dropout=0.0,
                               activation="relu"),
                  students=[dict(_SMALL_WIDTH, n_layers=2, n_experts=4),
                            dict(_SMALL_WIDTH, n_layers=2, n_experts=8),
                            dict(_SMALL_WIDTH, n_layers=3, n_experts=8)],
                  pretrain_steps=800, finetune_steps=600, distill_steps=600, windows_per_day=24,
                  judge_masks=JUDGE_IMPUTATION_REPEATS),
    "full": dict(teacher=dict(d_model=64, d_k=16, n_experts=16, top_k=2, n_layers=8, d_expert=128, dropout=0.1,
                              activation="relu"),
                 students=[dict(_FULL_WIDTH, n_layers=4, n_experts=8),
                           dict(_FULL_WIDTH, n_layers=4, n_experts=16),
                           dict(_FULL_WIDTH, n_layers=6, n_experts=16)],
                 pretrain_steps=5000, finetune_steps=3000, distill_steps=3000, windows_per_day=16,
                 judge_masks=JUDGE_IMPUTATION_REPEATS),
}


@dataclass
class TrainAllConfig:
    """What ``unimeter train all`` was asked to do (the command's options)."""

    data: list[Path]
    out_dir: Path
    format: str = "generic"
    tz: str | None = None
    resolution_s: int | None = None
    loader_options: dict = field(default_factory=dict)  # edge.data.cli.loader_options
    country: str | None = None
    subdiv: str | None = None
    labels: Path | None = None
    meters: list[str] = field(default_factory=list)  # empty: every meter in the files
    fleet_checkpoint: Path | None = None
    tasks: tuple[str, ...] = PROFILE_TASKS
    preset: str = "small"
    history_days: int | None = None  # D: days of context (0: the one-day model; 7: trainer.context; None: from the data)
    test_days: int | None = None
    val_days: int | None = None
    target_false_alarms_per_month: float = 1.0
    compare_saits: bool = False  # also judge PyPOTS SAITS (trained on the same days) as an imputation baseline
    seed: int = 0
    include_tflite: bool = True
    progress: bool = True
    threads: int = 1

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose from {sorted(PRESETS)}")
        bad = [t for t in self.tasks if t not in PROFILE_TASKS]
        if bad or not self.tasks:
            raise ConfigError(f"train all runs the profile tasks {PROFILE_TASKS}; not {bad or 'none'} "
                              "(NILM needs high-rate appliance data: see 'train finetune --task nilm')")


# a week of context once every meter has CONTEXT_MIN_TRAIN_DAYS training days: each training window then has
# its 7 days before it and there are >= 3 weeks of such windows. Measured through this route on two real
# series (bench/results/realdata_D7.md against realdata_D0.md): taylor day-ahead MAPE 1.62 % with D = 7 against
# 3.41 % with D = 0 (same day last week 1.73 %); imputation below linear in 12 of 12 cells against 11 of 12.
CONTEXT_DAYS = 7
CONTEXT_MIN_TRAIN_DAYS = 28


def choose_history_days(cfg: TrainAllConfig, splits) -> tuple[int, str]:
    """D when the user gave none: ``CONTEXT_DAYS`` if every meter has ``CONTEXT_MIN_TRAIN_DAYS`` training
    days, else 0 (the one-day model); a fleet checkpoint's own D is used as it is. Returns (D, reason)."""
    if cfg.history_days is not None:
        return cfg.history_days, f"history days: {cfg.history_days} (--history-days)"
    if cfg.fleet_checkpoint:
        from trainer.checkpoint import load_checkpoint

        depth = int(load_checkpoint(cfg.fleet_checkpoint)["model_config"].get("history_days", 0) or 0)
        return depth, f"history days: {depth} (the fleet checkpoint's)"
    fewest = min(s.train[1] - s.train[0] for s in splits)
    if fewest >= CONTEXT_MIN_TRAIN_DAYS:
        return CONTEXT_DAYS, (f"history days: {CONTEXT_DAYS} (every meter has >= {CONTEXT_MIN_TRAIN_DAYS} training "
                              "days: the model sees the week before each window; --history-days 0 for the one-day model)")
    return 0, (f"history days: 0, the one-day model (a meter has {fewest} training days, under the "
               f"{CONTEXT_MIN_TRAIN_DAYS} a week of context needs)")


class Choices:
    """Everything the route chose: said on stderr as it happens and kept in ``choices.json``."""

    def __init__(self, path: Path) -> None:
        self.path, self.items = path, {}

    def say(self, key: str, value, text: str | None = None) -> None:
        self.items[key] = value
        print(f"unimeter train all: {text or f'{key}: {value}'}", file=sys.stderr, flush=True)
        self.path.write_text(json.dumps(self.items, indent=2, default=str) + "\n")


def import_user_data(cfg: TrainAllConfig, choices: Choices):
    """Stages 1 and 2: files (or a dataset directory) -> local-day profiles per meter -> time split."""
    from trainer.user_eval import UserData

    data_dir = _import_files(cfg) if cfg.format != "shards" else _one_dir(cfg)
    manifest = read_manifest(data_dir)
    profiles = meter_profiles_from_shards(data_dir, cfg.meters or None)
    res = profiles[0].resolution_s
    if cfg.resolution_s and cfg.resolution_s != res:
        raise ConfigError(f"{data_dir} holds {res} s profiles; re-import the files with --resolution {cfg.resolution_s}")
    weather = "temperature_c" if all(p.has_temperature for p in profiles) else None
    spec = CovariateSpec(tz=cfg.tz or manifest.get("tz"), country=cfg.country or manifest.get("country"),
                         subdiv=cfg.subdiv or manifest.get("subdiv"), weather=weather)
    intervals = load_labels(cfg.labels, spec.tz) if cfg.labels else []
    labels = [label_profiles(intervals, p) if intervals else None for p in profiles]
    splits = [time_split(len(p.dates), cfg.test_days, cfg.val_days) for p in profiles]
    choices.say("meters", [p.household_id for p in profiles])
    choices.say("resolution_s", res, f"profiles: one day = {86400 // res} points at {res} s")
    choices.say("import_notes", {p.household_id: p.notes for p in profiles},
                "import: " + ("; ".join(f"{p.household_id}: {n}" for p in profiles for n in p.notes) or "as read"))
    choices.say("weather", weather, "temperature: " + ("from the data (forecast covariates use it; 20 % of the "
                "training windows without it)" if weather else "none (the model trains and runs without weather)"))
    choices.say("holidays", f"{spec.country or 'none'}/{spec.subdiv or '-'}")
    choices.say("labels", describe(intervals) if intervals else "none (anomaly fine-tuning on injected attacks)")
    choices.items["split_dates"] = {p.household_id: {part: [str(p.dates[a]), str(p.dates[b - 1])] for part, (a, b)
                                                     in (("train", s.train), ("val", s.val), ("test", s.test)) if b > a}
                                    for p, s in zip(profiles, splits, strict=True)}
    choices.say("split", {p.household_id: s.describe(p.dates) for p, s in zip(profiles, splits, strict=True)},
                "time-ordered split (validation and test are the latest days): " + "; ".join(
                    f"{p.household_id}: {s.describe(p.dates)}" for p, s in zip(profiles, splits, strict=True)))
    depth, why = choose_history_days(cfg, splits)
    choices.say("history_days", depth, why)
    return UserData(profiles, splits, spec, labels, res)


def _one_dir(cfg: TrainAllConfig) -> Path:
    if len(cfg.data) != 1 or not Path(cfg.data[0]).is_dir():
        raise ConfigError("--format shards takes one dataset directory (written by import-data or simulate)")
    return Path(cfg.data[0])


def _import_files(cfg: TrainAllConfig) -> Path:
    """The files as shards in ``OUT/data`` (what ``unimeter import-data`` writes)."""

    series = [s for path in cfg.data for s in load(path, cfg.format, **cfg.loader_options)]
    if cfg.meters:
        missing = sorted(set(cfg.meters) - {s.meter_id for s in series})
        if missing:
            raise ConfigError(f"no meter {missing} in the files; they hold {sorted(s.meter_id for s in series)}")
        series = [s for s in series if s.meter_id in cfg.meters]
    out = cfg.out_dir / "data"
    if out.exists():

        shutil.rmtree(out)
    write_series(series, out, [s.meter_id for s in series], {"train": 1.0}, cfg.seed, cfg.tz,
                 meta={"inputs": [str(p) for p in cfg.data], "format": cfg.format},
                 resolution_s=cfg.resolution_s, country=cfg.country, subdiv=cfg.subdiv)
    return out


class _ProgressFormatter(logging.Formatter):
    """A log record as a progress line: ``unimeter train all: [warning: ]message``."""

    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return f"unimeter train all: {level}{record.getMessage()}"


@contextlib.contextmanager
def progress_logging(logger_name: str = "edge.data"):
    """While it is open, ``logger_name``'s records (the import's) go to stderr as progress lines.

    They stop propagating to the root handler meanwhile, so each is printed once; the level stays
    the root's (``-v`` shows the info lines too).
    """
    logger = logging.getLogger(logger_name)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ProgressFormatter())
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def run_train_all(cfg: TrainAllConfig) -> dict:
    """Run the whole route; returns the report dict (also in ``OUT/report.json``)."""
    with progress_logging():
        return _run_train_all(cfg)


def _run_train_all(cfg: TrainAllConfig) -> dict:
    import torch

    from export import train_stages as S
    from trainer.user_eval import evaluate_bundle
    from trainer.user_report import write_report

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    choices = Choices(cfg.out_dir / "choices.json")
    seconds: dict[str, float] = {}

    def stage(name: str, fn, *args):
        t0 = time.perf_counter()
        print(f"unimeter train all: [{len(seconds) + 1}] {name} ...", file=sys.stderr, flush=True)
        out = fn(*args)
        seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"unimeter train all: [{len(seconds)}] {name} done in {seconds[name]:.1f} s", file=sys.stderr, flush=True)
        return out

    data = stage("import", import_user_data, cfg, choices)
    cfg = replace(cfg, history_days=choices.items["history_days"])  # chosen from the data when not given
    preset = PRESETS[cfg.preset]
    saits = (stage("fit SAITS (PyPOTS baseline)", S.saits_stage, cfg, data, choices)
             if cfg.compare_saits and "imputation" in cfg.tasks else None)  # before training: a failure shows early
    backbone = stage("pretrain", S.pretrain_stage, cfg, data, preset, choices)
    teachers, students = {}, {}
    for task in cfg.tasks:
        teachers[task] = stage(f"fine-tune {task}", S.finetune_stage, cfg, data, preset, task, backbone, choices)
        students[task] = stage(f"distil {task}", S.distill_stage, cfg, data, preset, task, teachers[task], choices)
    bundle = stage("export, calibrate, verify", S.export_stage, cfg, data, students, choices)
    results = stage("judge on the latest days", evaluate_bundle, bundle, teachers, students, data, cfg.seed,
                    cfg.target_false_alarms_per_month, saits, preset["judge_masks"])
    results.update(choices=choices.items, stage_seconds=seconds, config=json.loads(json.dumps(asdict(cfg), default=str)))
    paths = write_report(results, cfg.out_dir)
    missed = [c["check"] for c in results["checks"] if not c["met"]]
    print(f"unimeter train all: report {paths['md']} ({len(results['checks']) - len(missed)} of "
          f"{len(results['checks'])} targets met)", file=sys.stderr, flush=True)
    return results
