"""On-device inference for the agent: the model host (hot update) and the per-task steps.

``ModelHost`` owns the live model. ``try_load(path)`` verifies a bundle (``edge.bundle.load_bundle``
checks every sha256), opens an ``InferenceRuntime`` and runs every task once on zeros; only when
all of that passes is the new model swapped in (one attribute assignment: atomic for the event
loop and the inference thread). On any failure the old model keeps serving. If a freshly swapped
model then fails ``rollback_after_errors`` runs in a row, the host rolls back to the previous one.

The task steps turn resampled windows into publishable dicts (units in key names):
``profile_step`` (imputation + anomaly on the last L bins), ``nilm_step`` and ``forecast_step``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.agent.gapfill import fill_window
from edge.bundle import BundleError, load_bundle
from edge.calibration import DEFAULT_RECALIBRATE_AFTER_DAYS, DEFAULT_TARGET_PER_MONTH, AlarmHold
from edge.errors import AgentError
from edge.features import forecast_covariates
from edge.nilm_enrol import Signature, add_enrolled
from edge.nilm_output import Decision, NilmCalibration, decide
from edge.runtime import InferenceRuntime
from edge.signal.faults import FaultConfig, FaultReport, detect_faults
from edge.signal.gapfill.energy import apply_energy_constraint
from edge.task_io import (
    APPLIANCE_W,
    COVARIATES,
    DAY_AHEAD_W,
    HISTORY_MASK,
    HISTORY_W,
    HOUR_AHEAD_W,
    LOAD_W,
    LOAD_W_FILLED,
    OBSERVED,
    ON_LOGIT,
    POINT_LOGIT,
    WINDOW_LOGIT,
)

log = logging.getLogger(__name__)

class Runtime(Protocol):
    """What the agent needs from ``edge.runtime.InferenceRuntime`` (a real one in production)."""

    backend_name: str

    def run(self, task: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class ModelLoadError(AgentError, RuntimeError):
    """A bundle was refused; the previous model (if any) keeps serving."""


@dataclass(frozen=True)
class TaskShape:
    resolution_s: float
    length: int
    inputs: tuple[str, ...] = ()  # the graph's input names, in order
    history_days: int = 0  # D of a context model (0: the single window)


@dataclass
class LoadedModel:
    """One verified model: its runtime and what the agent needs from its manifest."""

    runtime: Any
    version: str
    path: Path
    fingerprint: str
    tasks: dict[str, TaskShape]
    appliances: tuple[str, ...]
    n_covariates: int = 0
    signature: str = ""  # edge.signing.BundleTrust.check status of its bundle
    anomaly_threshold: AnomalyThreshold | None = None
    nilm_calibration: NilmCalibration = field(default_factory=NilmCalibration)
    anomaly_model_id: str = ""  # sha256 over the anomaly task's graphs (``anomaly_model_id``); "" without one

    def has(self, task: str) -> bool:
        return task in self.tasks

    @property
    def history_days(self) -> int:
        """The most history days any task takes: what the agent keeps per meter."""
        return max((t.history_days for t in self.tasks.values()), default=0)

    @property
    def anomaly_threshold_source(self) -> str:
        return (self.anomaly_threshold or AnomalyThreshold()).source


@dataclass(frozen=True)
class AnomalyThreshold:
    """Where the anomaly model's outputs are cut: the bundle's calibrated logits (fitted to a
    false-alarm budget on the trainer's validation days, ``edge.calibration``), or probability 0.5
    for a bundle without calibration. Compared on logits: higher = more anomalous."""

    window_logit: float = 0.0  # logit(0.5)
    point_logit: float = 0.0
    source: str = "fixed 0.5 (the bundle carries no calibration)"
    target_per_month: float = DEFAULT_TARGET_PER_MONTH  # the false-alarm budget a meter's own refit keeps
    recalibrate_after_days: int = DEFAULT_RECALIBRATE_AFTER_DAYS  # days of a meter's own scores before it

    @classmethod
    def of(cls, calibration: dict) -> AnomalyThreshold:
        """From a task's manifest ``calibration`` (``window_threshold_logit``, optional
        ``point_threshold_logit``, ``target_false_alarms_per_month``, ``recalibrate_after_days``);
        the fixed 0.5 when the bundle has none."""
        if "window_threshold_logit" not in calibration:
            return cls()
        window = float(calibration["window_threshold_logit"])
        target = calibration.get("target_false_alarms_per_month")
        budget = f", <= {target:g} false alarms/month" if isinstance(target, int | float) else ""
        return cls(window, float(calibration.get("point_threshold_logit", window)), f"bundle{budget}",
                   float(target) if isinstance(target, int | float) else DEFAULT_TARGET_PER_MONTH,
                   int(calibration.get("recalibrate_after_days", DEFAULT_RECALIBRATE_AFTER_DAYS)))


def bundle_fingerprint(path: str | Path) -> str:
    """Cheap change detector for the watcher: resolved path + mtime/size/inode of the manifest and
    of its signature."""
    p = Path(path)
    try:
        root = p.resolve()
        st = (root / "manifest.json").stat()
    except OSError:
        return ""
    try:
        sig = (root / "signature.json").stat()
        signed = f":{sig.st_mtime_ns}:{sig.st_size}:{sig.st_ino}"
    except OSError:
        signed = ""
    return f"{root}:{st.st_mtime_ns}:{st.st_size}:{st.st_ino}{signed}"


def anomaly_model_id(bundle: Any) -> str:
    """Identity of a bundle's anomaly model: a sha256 over the sha256 of each of its graphs (from the
    verified manifest), "" when the bundle has no anomaly task. Scores of two models with the same id
    are comparable (``edge.agent.anomaly_scores``)."""
    if "anomaly" not in bundle.tasks:
        return ""
    digest = hashlib.sha256()
    for kind, file_name in sorted(bundle.manifest["tasks"]["anomaly"]["artifacts"].items()):
        digest.update(f"{kind}:{bundle.manifest['artifacts'][file_name]['sha256']};".encode())
    return digest.hexdigest()[:16]


def open_model(path: str | Path, backend: str, precision: str, threads: int,
               trust: Any = None) -> LoadedModel:
    """Verify (signature with ``trust``, an ``edge.signing.BundleTrust``), open and smoke-test a
    bundle. Raises ModelLoadError saying why."""

    fingerprint = bundle_fingerprint(path)
    try:
        bundle = load_bundle(path, trust=trust)
        runtime = InferenceRuntime(bundle, backend=backend, precision=precision, threads=threads)
        runtime.warmup()  # every task once on zeros: a graph that cannot run is refused here
    except (BundleError, ValueError, OSError) as e:
        raise ModelLoadError(f"bundle {path} refused: {e}") from e
    except Exception as e:  # an interpreter failing on a corrupt graph raises its own types
        raise ModelLoadError(f"bundle {path} refused: the model does not run: {e}") from e
    tasks = {}
    n_cov = 0
    threshold = AnomalyThreshold.of(bundle.tasks["anomaly"].calibration) if "anomaly" in bundle.tasks else None
    if threshold is not None and threshold.source.startswith("fixed"):
        log.warning("bundle %s: the anomaly model carries no calibrated threshold; flagging at probability 0.5", path)
    for name, spec in bundle.tasks.items():
        first = spec.inputs[0]
        tasks[name] = TaskShape(float(spec.input_spec["resolution_s"]), int(first.shape[-1]),
                                tuple(t.name for t in spec.inputs), spec.history_days)
        if name == "forecast":
            cov = [t for t in spec.inputs if t.name == COVARIATES]
            n_cov = int(cov[0].shape[-1]) if cov else 0
    nilm = bundle.tasks.get("nilm")
    try:
        calibration = NilmCalibration.from_dict(nilm.calibration if nilm else None)
    except BundleError as e:
        raise ModelLoadError(f"bundle {path} refused: {e}") from e
    return LoadedModel(runtime, bundle.model_version, bundle.path, fingerprint, tasks,
                       bundle.appliances, n_cov, bundle.signature, threshold, calibration,
                       anomaly_model_id(bundle))


@dataclass
class ModelHost:
    """The live model with verified hot swap and rollback."""

    opener: Callable[[str | Path], LoadedModel]
    rollback_after_errors: int = 3
    current: LoadedModel | None = None
    previous: LoadedModel | None = None
    last_error: str = ""
    swaps: int = 0
    rollbacks: int = 0
    _errors_since_swap: int = 0
    _proven: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def try_load(self, path: str | Path) -> bool:
        """Load and swap in a bundle; False (old model kept, ``last_error`` set) on failure."""
        try:
            model = self.opener(path)
        except ModelLoadError as e:
            self.last_error = str(e)
            log.error("%s; still serving %s", e, self.current.version if self.current else "no model")
            return False
        with self._lock:
            self.previous, self.current = self.current, model
            self._errors_since_swap, self._proven = 0, self.previous is None
            self.swaps += 1
        self.last_error = ""
        log.info("model %s from %s is live (%s; signature %s)", model.version, model.path,
                 model.runtime.backend_name, model.signature or "not checked")
        if "allowed by policy" in model.signature:
            log.warning("model bundle %s is %s: set model.public_key_file so only signed bundles load",
                        model.path, model.signature)
        return True

    def run(self, task: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        model = self.current
        if model is None:
            raise ModelLoadError("no model loaded")
        try:
            out = model.runtime.run(task, inputs)
        except Exception as e:
            self._note_failure(model, e)
            raise
        with self._lock:
            if model is self.current:
                self._errors_since_swap, self._proven = 0, True
        return out

    def _note_failure(self, model: LoadedModel, error: Exception) -> None:
        with self._lock:
            if model is not self.current:
                return
            self._errors_since_swap += 1
            if (not self._proven and self.previous is not None
                    and self._errors_since_swap >= self.rollback_after_errors):
                self.last_error = f"model {model.version} failed {self._errors_since_swap} runs: {error}"
                log.error("%s; rolling back to %s", self.last_error, self.previous.version)
                self.current, self.previous = self.previous, None
                self.rollbacks += 1
                self._proven = True


# --- task steps (pure functions of windows; they run in the inference thread) ---------------------

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def model_inputs(host: ModelHost, task: str, load_w: np.ndarray, observed: np.ndarray,
                 context: Any = None, **extra: np.ndarray) -> dict[str, np.ndarray]:
    """The inputs ``task``'s graph lists, for one window (batch of 1): ``load_w``, ``observed``, the
    history (``context``: an ``edge.agent.history.HistoryContext``; none = no history day) and
    ``extra`` (covariates)."""
    model = host.current
    shape = model.tasks.get(task) if model is not None else None
    names = shape.inputs if shape is not None and shape.inputs else (LOAD_W,)
    feeds = {LOAD_W: load_w[None].astype(np.float32), OBSERVED: observed[None].astype(np.float32),
             **{k: v[None].astype(np.float32) for k, v in extra.items()}}
    if HISTORY_W in names:
        D, L = shape.history_days, len(load_w)
        hist = context.history_w if context is not None else np.zeros((D, L), np.float32)
        mask = context.history_mask if context is not None else np.zeros(D, np.float32)
        feeds[HISTORY_W], feeds[HISTORY_MASK] = hist[None].astype(np.float32), mask[None].astype(np.float32)
    return {n: feeds[n] for n in names}


def profile_step(host: ModelHost, window_w: np.ndarray, start_ts_s: float, resolution_s: float,
                 threshold: AnomalyThreshold | None = None, counter_wh: np.ndarray | None = None,
                 context: Any = None, events: dict[str, np.ndarray] | None = None,
                 faults: FaultConfig | None = None) -> tuple[dict, np.ndarray]:
    """Imputation (when gaps) then anomaly detection on one window of L bins.

    ``threshold``: None = the live model's (its bundle's calibrated logits, else probability 0.5);
    the published ``threshold`` is a probability like ``score``, ``threshold_source`` says which.

    The published ``anomaly`` is the model's calibrated flag OR a gateway fault of the window
    (``edge.signal.faults``: spikes, stuck values, zero runs and sign errors judged against the
    meter's own history ``context``, and the reading guard's counter resets / clock jumps in
    ``events``: kind -> bool [L] per bin). ``anomaly_kinds`` says what fired ("model" and/or the
    fault kinds), ``faults`` where each fault kind fired (bin start times), ``fault_rules`` whether
    the rules had enough history to judge. ``faults=None`` uses ``FaultConfig()``.

    With ``counter_wh`` (net Wh at each bin's end, NaN where not read; ``Resampler.counters``) the
    filled bins of every gap the counters bracket are rescaled to the counted energy. ``context``
    (``edge.agent.history.HistoryContext``) is the meter's history for a context model; the result
    says how many of its days were there (``history_days``; a meter with less history than the
    model's D still gets results).
    """
    observed = np.isfinite(window_w).astype(np.float32)
    load = np.where(observed > 0, window_w, 0.0).astype(np.float32)
    n_missing = int(len(load) - observed.sum())
    if n_missing and host.current is not None and host.current.has("imputation"):
        filled = host.run("imputation", model_inputs(host, "imputation", load, observed, context))[LOAD_W_FILLED][0]
        load = np.where(observed > 0, load, filled).astype(np.float32)
    if n_missing and counter_wh is not None and observed.any():

        ends_s = start_ts_s + resolution_s * np.arange(1, len(load) + 1)
        load = apply_energy_constraint(load, observed == 0, ends_s, counter_wh).astype(np.float32)
    model = host.current
    cut = threshold or (model.anomaly_threshold if model is not None else None) or AnomalyThreshold()
    out = host.run("anomaly", model_inputs(host, "anomaly", load, observed, context))
    window_logit = float(out[WINDOW_LOGIT].reshape(-1)[0])
    model_flag = window_logit > cut.window_logit
    report = window_faults(window_w, context, resolution_s, events, faults, counter_wh)
    flagged = np.flatnonzero((out[POINT_LOGIT].reshape(-1) > cut.point_logit) | report.mask(len(load)))
    return {
        "anomaly": bool(model_flag or report.any),
        "anomaly_kinds": (["model"] if model_flag else []) + report.kinds,
        "model_anomaly": bool(model_flag),
        "faults": {k: [start_ts_s + float(i) * resolution_s for i in np.flatnonzero(report.points[k])]
                   for k in report.kinds},
        "fault_rules": "judged" if report.judged else f"not judged: {report.reason}",
        "score": round(float(_sigmoid(np.array(window_logit))), 4),
        "score_logit": round(window_logit, 6),  # what the threshold cuts (and a meter's own refit learns from)
        "threshold": round(float(_sigmoid(np.array(cut.window_logit))), 6),
        "threshold_source": cut.source,
        "window_start_s": start_ts_s,
        "window_end_s": start_ts_s + len(window_w) * resolution_s,
        "resolution_s": resolution_s,
        "imputed_points": n_missing,
        "anomalous_points_ts_s": [start_ts_s + float(i) * resolution_s for i in flagged],
        **history_fields(host, "anomaly", context),
        "model_version": host.current.version if host.current else "",
    }, load


def hold_alarm(body: dict, hold: AlarmHold) -> dict:
    """``body`` (a ``profile_step`` result) with its ``anomaly`` passed through the meter's
    :class:`edge.calibration.AlarmHold`: ``anomaly`` stays up until the windows have been clean for
    ``hold.release_after_s``; ``window_anomaly`` is the window's own flag, ``anomaly_held`` says the
    flag is up only by the hold and ``alarm_since_s`` when the alarm was raised (None when down)."""
    window_flag = bool(body["anomaly"])
    held = hold.update(window_flag, float(body["window_end_s"]))
    return {**body, "anomaly": held, "window_anomaly": window_flag, "anomaly_held": held and not window_flag,
            "alarm_since_s": hold.since_s}


def window_faults(window_w: np.ndarray, context: Any, resolution_s: float,
                  events: dict[str, np.ndarray] | None = None, cfg: FaultConfig | None = None,
                  counter_wh: np.ndarray | None = None) -> FaultReport:
    """The gateway faults of one profile window (``edge.signal.faults``) against the meter's
    history ``context`` (an ``edge.agent.history.HistoryContext``; None: not judged), plus the
    reading guard's ``events`` (kind -> bool [L]). With ``counter_wh`` (net Wh at each bin's end,
    ``Resampler.counters``) a negative bin over which the meter's own registers counted net export
    is export, not a sign error: the registers integrate what really flowed."""
    hist = (context.history_w, context.history_mask) if context is not None else (None, None)
    report = detect_faults(np.asarray(window_w, np.float64), *hist, resolution_s, cfg)
    if counter_wh is not None and "sign_error" in report.points:
        exported = np.zeros(len(window_w), bool)
        exported[1:] = np.diff(np.asarray(counter_wh, np.float64)) < 0  # NaN compares False
        points = dict(report.points)
        points["sign_error"] = points["sign_error"] & ~exported
        report = FaultReport({k: m for k, m in points.items() if m.any()}, report.judged, report.reason)
    for kind, mask in (events or {}).items():
        report = report.with_events(kind, mask)
    return report


# the faults whose bins leave the meter's history: a frozen register, a zero run or a corrupt bin is no
# household's normal; a negative bin stays (if it was a first PV export, the meter has learnt it
# exports and the next one is normal), and the guard's events leave the values alone
FORGOTTEN_FAULTS = ("spike", "stuck", "zero_run")


def fault_bins(body: dict) -> list[int]:
    """Bin indices (``ts_s // resolution_s``) of a profile result where a ``FORGOTTEN_FAULTS`` rule
    fired: the bins the agent keeps out of the meter's history, so a frozen register or a corrupt bin
    never becomes the household's normal (``ProfileHistory.drop``; the context interpolates over them)."""
    res = float(body["resolution_s"])
    return sorted({int(round(ts / res)) for k, pts in body.get("faults", {}).items() if k in FORGOTTEN_FAULTS
                   for ts in pts})


def history_fields(host: ModelHost, task: str, context: Any) -> dict:
    """``history_days`` (days of the meter's history the model saw) and ``history_days_model`` (D)
    for a context model's result; nothing for a single-window model."""
    model = host.current
    shape = model.tasks.get(task) if model is not None else None
    if shape is None or not shape.history_days:
        return {}
    return {"history_days": int(context.days) if context is not None else 0,
            "history_days_model": shape.history_days}


@dataclass
class NilmResult:
    """One NILM window: the aggregate the graph saw (gaps filled) and the consistent decision."""

    start_ts_s: float
    resolution_s: float
    load_w: np.ndarray  # [T]
    decision: Decision
    model_version: str


def nilm_step(host: ModelHost, window_w: np.ndarray, start_ts_s: float, resolution_s: float,
              counter_wh: np.ndarray | None = None, owned: tuple[str, ...] | None = None,
              enrolled: tuple[Signature, ...] = ()) -> NilmResult:
    """Run the NILM graph on one rolling window and decide every sample (``edge.nilm_output``:
    thresholds and power ranges of the bundle's calibration, the sum bounded by the aggregate,
    only the ``owned`` appliances). Gaps are filled linearly, energy-exact where ``counter_wh``
    brackets them (``edge.agent.gapfill``). ``enrolled`` appliances the model does not know are
    matched by signature in what its own appliances leave (``edge.nilm_enrol``), one row each
    after the model's."""
    model = host.current
    load = fill_window(window_w, start_ts_s, resolution_s, counter_wh).filled_w.astype(np.float32)
    out = host.run("nilm", {LOAD_W: load[None]})
    names = model.appliances if model else ()
    calibration = model.nilm_calibration if model else NilmCalibration()
    decision = decide(out[ON_LOGIT][0], out[APPLIANCE_W][0], load, names, calibration, owned)
    if enrolled:
        all_names, on, power = add_enrolled(decision.names, decision.on, decision.power_w,
                                            decision.budget_w, enrolled, resolution_s)
        margin = np.concatenate([decision.margin, np.where(on[len(names):], 1.0, -1.0)])
        decision = Decision(all_names, on, power, margin, decision.budget_w)
    return NilmResult(start_ts_s, resolution_s, load, decision, model.version if model else "")


def forecast_step(host: ModelHost, last_day_w: np.ndarray, day_start_ts_s: float, resolution_s: float,
                  temperature_c_next_day: np.ndarray | None = None, is_holiday: bool = False,
                  context: Any = None, observed: np.ndarray | None = None) -> dict:
    """Day-ahead forecast from the last (filled) day of profiles, the meter's history before it
    (``context``, context models) and the covariates of the next day.

    Without a weather feed the next-day temperature is unknown; we pass a flat 10 degC series and
    say so in the payload (``temperature_source``) rather than invent a profile.
    """

    model = host.current
    next_day_s = day_start_ts_s + len(last_day_w) * resolution_s
    date = dt.datetime.fromtimestamp(next_day_s, dt.UTC).date()
    temp_src = "provided"
    if temperature_c_next_day is None:
        temperature_c_next_day, temp_src = np.full(48, 10.0, np.float32), "none (flat 10 degC assumed)"
    cov = forecast_covariates(date, temperature_c_next_day, is_holiday)
    if model is not None and model.n_covariates and cov.shape[0] != model.n_covariates:
        raise ModelLoadError(f"model expects {model.n_covariates} covariates, the agent computes {cov.shape[0]}")
    obs = np.ones(len(last_day_w), np.float32) if observed is None else observed
    out = host.run("forecast", model_inputs(host, "forecast", np.asarray(last_day_w, np.float32), obs, context,
                                            **{COVARIATES: cov}))
    day = out[DAY_AHEAD_W].reshape(-1)
    hour = out[HOUR_AHEAD_W].reshape(-1)
    body = forecast_body(next_day_s, day, hour, temp_src, model.version if model else "")
    return {**body, **history_fields(host, "forecast", context)}


def forecast_body(start_s: float, day_ahead_w: np.ndarray, hour_ahead_w: np.ndarray,
                  temperature_source: str, model_version: str, step_s: float = 1800.0) -> dict:
    """The forecast message: both horizons from ``start_s`` (the start of the half hour in
    progress, the end of the model's input window), in half-hour steps of ``step_s``.

    ``next_hour_w`` is the mean power over the hour-ahead horizon [start, start + 2 steps) and
    ``day_ahead_kwh`` the energy over the 24 h from ``start_s``: the two figures Home Assistant
    shows (the whole series go in ``hour_ahead_w`` / ``day_ahead_w``).
    """
    hour_end_s = start_s + len(hour_ahead_w) * step_s

    def iso(ts_s: float) -> str:
        return dt.datetime.fromtimestamp(ts_s, dt.UTC).isoformat().replace("+00:00", "Z")

    return {
        "start_s": start_s, "resolution_s": step_s, "start": iso(start_s),
        "day_ahead_w": [round(float(v), 1) for v in day_ahead_w],
        "hour_ahead_w": [round(float(v), 1) for v in hour_ahead_w],
        "hour_start": iso(start_s), "hour_end": iso(hour_end_s),
        "next_hour_w": round(float(np.mean(hour_ahead_w)), 1) if len(hour_ahead_w) else None,
        "day_ahead_kwh": round(float(np.sum(day_ahead_w)) * step_s / 3.6e6, 3),
        "temperature_source": temperature_source,
        "model_version": model_version,
    }
