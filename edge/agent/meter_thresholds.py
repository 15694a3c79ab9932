"""Each meter's own anomaly threshold on the gateway (numpy only).

A bundle's threshold was fitted on the trainer's validation days (``edge.calibration.fit_threshold``,
``window_threshold_logit`` in the manifest). A household's own scores may sit higher or lower; once a
meter has ``recalibrate_after_days`` days of its own window scores (the manifest's calibration, 14
by default) its threshold is refitted every day from the daily maxima of those scores to the same
false-alarm budget (``edge.calibration.MeterThreshold``: the robust normal tail of the daily maxima,
so an attack inside the history moves it little). Until then, and after a model change (other
scores), the bundle's threshold is used. ``source`` is what the quality message says.

The scores are kept in memory: after a restart a meter counts its days again from zero (and says so).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edge.agent.inference import AnomalyThreshold, LoadedModel
from edge.calibration import MeterThreshold

DAY_S = 86400


class MeterThresholds:
    """The per-meter thresholds of the live model (reset when the model changes)."""

    def __init__(self) -> None:
        self._model: str | None = None
        self._meters: dict[str, MeterThreshold] = {}

    def _for(self, meter_id: str, model: LoadedModel) -> MeterThreshold:
        if model.fingerprint != self._model:
            self._model, self._meters = model.fingerprint, {}
        if meter_id not in self._meters:
            cut = model.anomaly_threshold or AnomalyThreshold()
            self._meters[meter_id] = MeterThreshold(bundle_threshold=cut.window_logit,
                                                    target_per_month=cut.target_per_month,
                                                    after_days=cut.recalibrate_after_days)
        return self._meters[meter_id]

    def threshold(self, meter_id: str, model: LoadedModel, now_s: float) -> AnomalyThreshold:
        """The cut for ``meter_id``'s next window: refitted from the complete days before the day of
        ``now_s`` (UTC) once it has enough of them, else the bundle's."""
        mt = self._for(meter_id, model)
        mt.refit(int(now_s // DAY_S))
        base = model.anomaly_threshold or AnomalyThreshold()
        if mt.fitted is None:
            return base
        # the point threshold keeps its margin over the window threshold of the bundle
        shift = mt.threshold - base.window_logit
        return replace(base, window_logit=mt.threshold, point_logit=base.point_logit + shift,
                       source=mt.source)

    def observe(self, meter_id: str, model: LoadedModel, window_end_s: float, window_logit: float) -> None:
        """Keep one window score (logit) of the meter under the UTC day its window ends on."""
        if np.isfinite(window_logit):
            self._for(meter_id, model).observe(int((window_end_s - 1) // DAY_S), float(window_logit))

    def source(self, meter_id: str, model: LoadedModel) -> str:
        """Where the meter's threshold comes from, for the quality message."""
        mt = self._for(meter_id, model)
        if mt.fitted is None:
            base = (model.anomaly_threshold or AnomalyThreshold()).source
            return f"{base} (the meter's own after {mt.after_days} days of its scores; {len(mt.daily_max)} so far)"
        return f"{mt.source}, <= {mt.target_per_month:g} false alarms/month"
