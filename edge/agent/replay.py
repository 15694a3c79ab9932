"""A meter's recorded profile bins replayed through the agent's anomaly path, offline.

What the agent does for each meter every ``schedule.profile_every_s`` (default: once per 30-min
bin), without a broker or meters: the rolling window of the last L bins, its history context from
the meter's ``profile_bins`` (``edge.agent.history``, in a real SQLite database), ``profile_step``
(imputation when the window has gaps, the anomaly graph, the bundle's calibrated threshold, the
gateway fault rules) and the window written back as history (less the bins a fault fired on). Before the first evaluation the bins before it are backfilled,
as the agent backfills from its stored readings at start-up.

An alarm is what a household sees: a rising edge of the published flag
(``edge.calibration.alarm_episodes``; a flag that stays up over consecutive windows is one alarm),
which the agent holds up until the windows have been clean for ``schedule.alarm_release_after_s``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from edge.agent.config import ScheduleConfig
from edge.agent.history import ProfileHistory
from edge.agent.inference import ModelHost, fault_bins, hold_alarm, profile_step
from edge.agent.meter_thresholds import MeterThresholds
from edge.calibration import AlarmHold, alarm_episodes
from edge.errors import DataError


@dataclass
class Replay:
    """The published anomaly results of one replayed meter, one row per evaluated window."""

    window_end_s: np.ndarray  # float64 [N] UTC epoch s
    score: np.ndarray  # float64 [N] the published probability
    flag: np.ndarray  # bool [N] the published ``anomaly``
    history_days: np.ndarray  # int [N] history days the model saw (D for a complete history)
    model_flag: np.ndarray | None = None  # bool [N] the model's own flag (``model_anomaly``)
    fault_flag: np.ndarray | None = None  # bool [N] a gateway fault rule fired (``edge.signal.faults``)
    window_flag: np.ndarray | None = None  # bool [N] the window's own flag (model OR fault), before the hold

    @property
    def alarms(self) -> int:
        """Rising edges of the flag."""
        return alarm_episodes(self.flag)

    def alarm_days(self, day_s: float = 86400.0) -> int:
        """UTC days with at least one flagged window end."""
        return len(np.unique(np.floor((self.window_end_s[self.flag] - 1e-6) / day_s)))


def replay_meter(host: ModelHost, bins_w: np.ndarray, first_bin: int, eval_from: int, every: int = 1,
                 meter_id: str = "replay", min_coverage: float | None = None,
                 release_after_s: float | None = None) -> Replay:
    """Evaluate the windows ending on bins ``eval_from``, ``eval_from + every``, ... of ``bins_w``.

    ``bins_w``: float [T] mean power (W) per bin of the anomaly task's resolution, NaN where the
    meter sent nothing; bin ``k`` covers ``[(first_bin + k) * res, (first_bin + k + 1) * res)``.
    ``eval_from`` >= L - 1 (the first window is whole). Windows covered less than
    ``min_coverage`` (default: the agent's ``schedule.min_coverage``) are skipped, as the agent
    skips them. As the agent's profile round does, each window is cut at the meter's threshold
    (``MeterThresholds``: the bundle's, the meter's own refit once it has enough days of scores)
    and the published flag is held (``edge.calibration.AlarmHold``, ``release_after_s``; default
    the agent's ``schedule.alarm_release_after_s``). Raises DataError when the live model has no
    anomaly task or the series is short.
    """
    model = host.current
    if model is None or not model.has("anomaly"):
        raise DataError("the replay needs a live model with an anomaly task")
    shape = model.tasks["anomaly"]
    res, L, D = float(shape.resolution_s), int(shape.length), int(model.history_days)
    bins_w = np.asarray(bins_w, np.float64)
    if eval_from < L - 1 or eval_from >= len(bins_w):
        raise DataError(f"eval_from {eval_from} must lie in [{L - 1}, {len(bins_w)}) for {L}-bin windows")
    min_coverage = ScheduleConfig().min_coverage if min_coverage is None else min_coverage
    release_after_s = ScheduleConfig().alarm_release_after_s if release_after_s is None else release_after_s
    thresholds, hold = MeterThresholds(), AlarmHold(release_after_s)
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        history = ProfileHistory(db, res, L, D) if D else None
        if history is not None:
            known = np.flatnonzero(np.isfinite(bins_w[:eval_from + 1]))
            history.backfill(meter_id, [(first_bin + int(k), float(bins_w[k]), 1) for k in known])
        rows = []
        for end in range(eval_from, len(bins_w), every):
            start = end - L + 1
            window = bins_w[start:end + 1].astype(np.float32)
            if np.isfinite(window).mean() < min_coverage:
                continue
            context = history.context(meter_id, first_bin + start) if history is not None else None
            start_s = (first_bin + start) * res
            cut = thresholds.threshold(meter_id, model, start_s + L * res)
            body, filled = profile_step(host, window, start_s, res, threshold=cut, context=context)
            thresholds.observe(meter_id, model, body["window_end_s"], body["score_logit"])
            body = hold_alarm(body, hold)
            if history is not None:
                history.record(meter_id, first_bin + start, filled, np.isfinite(window))
                history.drop(meter_id, fault_bins(body))
            rows.append((body["window_end_s"], body["score"], body["anomaly"], body.get("history_days", 0),
                         body["model_anomaly"], any(k != "model" for k in body["anomaly_kinds"]),
                         body["window_anomaly"]))
    finally:
        db.close()
    if not rows:
        return Replay(np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros(0, int), np.zeros(0, bool),
                      np.zeros(0, bool), np.zeros(0, bool))
    end_s, score, flag, days, model_flag, fault_flag, window_flag = zip(*rows, strict=True)
    return Replay(np.asarray(end_s, np.float64), np.asarray(score, np.float64), np.asarray(flag, bool),
                  np.asarray(days, int), np.asarray(model_flag, bool), np.asarray(fault_flag, bool),
                  np.asarray(window_flag, bool))
