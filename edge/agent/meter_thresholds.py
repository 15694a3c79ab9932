"""Each meter's own anomaly threshold on the gateway (numpy only).

A bundle's threshold was fitted on the trainer's validation days (``edge.calibration.fit_threshold``,
``window_threshold_logit`` in the manifest). A household's own scores may sit higher or lower; once a
meter has ``recalibrate_after_days`` days of its own window scores (the manifest's calibration, 14
by default) its threshold is refitted every day from the daily maxima of those scores to the same
false-alarm budget (``edge.calibration.MeterThreshold``: the robust normal prediction bound of the daily maxima,
so an attack inside the history moves it little), never below the bundle's threshold (a noisy
household raises its cut; the reason the fit may not lower it: ``MeterThreshold.threshold``). Until
then, and after a change of the anomaly model (other scores), the bundle's threshold is used.
``source`` is what the quality message says.

The daily maxima and each refit are written to the agent's store after every profile round
(``take_update``; ``edge.agent.anomaly_scores``) and read back at start-up (``restore``), so a
restart keeps a meter's days. Scores are keyed by the anomaly model (``model_key``: the sha256 of its
graphs): when it changes, the old scores are dropped and the quality message says how many days.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edge.agent.anomaly_scores import ScoreUpdate, StoredScores
from edge.agent.inference import AnomalyThreshold, LoadedModel
from edge.calibration import MeterThreshold, ThresholdCalibration

DAY_S = 86400


def model_key(model: LoadedModel) -> str:
    """What makes scores comparable: the anomaly graphs (their sha256), else the bundle's fingerprint."""
    return model.anomaly_model_id or model.fingerprint


class MeterThresholds:
    """The per-meter thresholds of the live anomaly model (reset when it changes)."""

    def __init__(self) -> None:
        self._model: str | None = None
        self._meters: dict[str, MeterThreshold] = {}
        self._windows: dict[str, dict[int, int]] = {}  # meter -> day -> window scores seen
        self._dropped: dict[str, int] = {}  # meter -> days of the previous model's scores dropped
        self._update = ScoreUpdate()
        self.loaded_for: str | None = None  # the model key whose stored scores were restored

    def _reset(self, key: str, dropped: dict[str, int]) -> None:
        self._model, self._meters, self._windows = key, {}, {}
        self._dropped = {m: n for m, n in dropped.items() if n}
        self._update = ScoreUpdate()

    def _new(self, model: LoadedModel) -> MeterThreshold:
        cut = model.anomaly_threshold or AnomalyThreshold()
        return MeterThreshold(bundle_threshold=cut.window_logit, target_per_month=cut.target_per_month,
                              after_days=cut.recalibrate_after_days)

    def _for(self, meter_id: str, model: LoadedModel) -> MeterThreshold:
        key = model_key(model)
        if key != self._model:
            self._reset(key, {m: len(mt.daily_max) for m, mt in self._meters.items()})
        if meter_id not in self._meters:
            self._meters[meter_id] = self._new(model)
        return self._meters[meter_id]

    def restore(self, model: LoadedModel, stored: StoredScores) -> None:
        """Take the scores and fits the store kept for ``model`` (its key must match)."""
        key = model_key(model)
        if stored.model_id != key:
            raise ValueError(f"stored scores of model {stored.model_id!r}, the live one is {key!r}")
        dropped = {m: len(mt.daily_max) for m, mt in self._meters.items()} if key != self._model else {}
        self._reset(key, {**dropped, **stored.dropped})
        for meter, days in stored.days.items():
            mt = self._meters[meter] = self._new(model)
            for day, (peak, n) in days.items():
                mt.observe(day, peak)
                self._windows.setdefault(meter, {})[day] = n
        for meter, (through, fit) in stored.fits.items():
            mt = self._meters.setdefault(meter, self._new(model))
            mt.fitted = None if fit is None else ThresholdCalibration(**fit)
            mt._fitted_through = through
        self.loaded_for = key

    def threshold(self, meter_id: str, model: LoadedModel, now_s: float) -> AnomalyThreshold:
        """The cut for ``meter_id``'s next window: refitted from the complete days before the day of
        ``now_s`` (UTC) once it has enough of them, else the bundle's."""
        mt = self._for(meter_id, model)
        today = int(now_s // DAY_S)
        if mt._fitted_through != today:
            mt.refit(today)
            self._update.fits[meter_id] = (today, None if mt.fitted is None else mt.fitted.to_dict())
        base = model.anomaly_threshold or AnomalyThreshold()
        if mt.fitted is None:
            return base
        # the point threshold keeps its margin over the window threshold of the bundle
        shift = mt.threshold - base.window_logit
        return replace(base, window_logit=mt.threshold, point_logit=base.point_logit + shift,
                       source=mt.source)

    def observe(self, meter_id: str, model: LoadedModel, window_end_s: float, window_logit: float) -> None:
        """Keep one window score (logit) of the meter under the UTC day its window ends on."""
        if not np.isfinite(window_logit):
            return
        mt = self._for(meter_id, model)
        day = int((window_end_s - 1) // DAY_S)
        mt.observe(day, float(window_logit))
        if day not in mt.daily_max:  # older than the days a meter keeps
            return
        windows = self._windows.setdefault(meter_id, {})
        windows[day] = windows.get(day, 0) + 1
        for old in [d for d in windows if d not in mt.daily_max]:
            del windows[old]
        self._update.days[(meter_id, day)] = (mt.daily_max[day], windows[day])

    def take_update(self, everything: bool = False) -> tuple[str | None, ScoreUpdate]:
        """(model key, the days and fits changed since the last call) for the store; with
        ``everything`` all days and fits held (a new store file after damage or deletion)."""
        update, self._update = self._update, ScoreUpdate()
        if everything:
            for meter, mt in self._meters.items():
                windows = self._windows.get(meter, {})
                for day, peak in mt.daily_max.items():
                    update.days[(meter, day)] = (peak, windows.get(day, 0))
                if mt._fitted_through is not None:
                    update.fits.setdefault(meter, (mt._fitted_through,
                                                   None if mt.fitted is None else mt.fitted.to_dict()))
        return self._model, update

    @property
    def keep_days(self) -> int:
        return next(iter(self._meters.values())).history_days if self._meters else 60

    def source(self, meter_id: str, model: LoadedModel) -> str:
        """Where the meter's threshold comes from, for the quality message."""
        mt = self._for(meter_id, model)
        if mt.fitted is None:
            base = (model.anomaly_threshold or AnomalyThreshold()).source
            text = f"{base} (the meter's own after {mt.after_days} days of its scores; {len(mt.daily_max)} so far"
            dropped = self._dropped.get(meter_id)
            if dropped:
                text += (f"; {dropped} days of scores of the previous anomaly model dropped: "
                         "not comparable with the new model's")
            return text + ")"
        return f"{mt.source}, <= {mt.target_per_month:g} false alarms/month"
