"""The agent's scheduled rounds: on a wall-clock grid, each model task over every meter, then the
quality and report messages.

``every`` runs one round on the grid of its period (its failures are logged and counted, the
round runs again next period). ``ModelRounds`` holds the rounds themselves: anomaly (with
imputation) per profile window, NILM per high-rate window (appliance uses and events), the
day-ahead forecast, and the data-quality and report payloads (``edge.agent.quality``). Inference
runs on the agent's inference thread; a meter whose window is not covered enough
(``[schedule] min_coverage``) is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.agent.anomaly_scores import StoredScores, load_scores, save_scores
from edge.agent.appliances import decided_range
from edge.agent.entities import slug
from edge.agent.gapfill import window_fill_report
from edge.agent.guards import guard_quality
from edge.agent.history import HistoryContext
from edge.agent.inference import fault_bins, forecast_step, hold_alarm, nilm_step, profile_step
from edge.agent.meter_state import Stats
from edge.agent.meter_thresholds import MeterThresholds, model_key
from edge.agent.quality import quality_body, report_body
from edge.agent.store import StoreError
from edge.agent.supervise import FailureSpell, Supervisor
from edge.calibration import AlarmHold

if TYPE_CHECKING:
    from edge.agent.agent import Agent

log = logging.getLogger(__name__)


async def every(period_s: float, fn: Callable[[], Awaitable[Any]], name: str, supervisor: Supervisor,
                stats: Stats) -> None:
    """Run ``fn`` once soon after start, then on the wall-clock grid of ``period_s``.

    Aligned to the grid plus a small offset, so a half-hourly profile round runs just after
    the half-hour bin closed and the daily forecast just after midnight UTC, whenever the agent
    was started (and a freshly started agent does not wait a day for its first forecast).
    A round that fails is counted and reported under ``name`` in the supervisor's health.
    """
    offset_s = min(5.0, 0.1 * period_s)
    first = True
    while True:
        if first:
            await asyncio.sleep(min(period_s, 10.0))
            first = False
        else:
            now_s = time.time()
            await asyncio.sleep((now_s // period_s + 1) * period_s + offset_s - now_s)
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except StoreError as e:  # already logged by its FailureSpell
            stats.errors += 1
            supervisor.note_error(name, e, log_it=False)
        except Exception as e:
            stats.errors += 1
            supervisor.note_error(name, e)


class ModelRounds:
    """The per-meter rounds of the running ``agent`` (its meters, model host, store and outbox)."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.thresholds = MeterThresholds()  # each meter's own anomaly threshold after N days
        self.holds: dict[str, AlarmHold] = {}  # each meter's published alarm (schedule.alarm_release_after_s)
        self.score_spell = FailureSpell("the store: keeping the meters' anomaly scores", log)
        self._restoring = asyncio.Lock()  # the profile and quality rounds may both ask first
        self._saved_to: Any = None  # the store the scores were last written to

    async def _restore_thresholds(self, model: Any) -> None:
        """Load the live anomaly model's stored scores once (at start-up, after a model change);
        the store drops another model's scores and the quality message says so."""
        key = model_key(model)
        async with self._restoring:
            if self.thresholds.loaded_for != key and self.agent.store is not None:
                await self._restore_from_store(model, key)

    async def _restore_from_store(self, model: Any, key: str) -> None:
        try:
            stored = await self.agent.db(load_scores, self.agent.store, key)
        except StoreError as e:
            self.score_spell.fail(str(e), "the meters count their days of anomaly scores from zero")
            stored = StoredScores(key)
        dropped = sum(stored.dropped.values())
        if dropped:
            log.warning("anomaly model %s: %d meter-days of scores of the previous anomaly model dropped "
                        "(not comparable); the meters use the bundle's threshold until they have their days "
                        "again", model.version, dropped)
        self.thresholds.restore(model, stored)
        self._saved_to = self.agent.store
        log.info("anomaly scores restored for %d meters (%d days)", len(stored.days),
                 sum(len(d) for d in stored.days.values()))

    async def _save_thresholds(self) -> None:
        store = self.agent.store
        # a store file started afresh (damage, deletion) gets every day held, not only today's
        key, update = self.thresholds.take_update(everything=store is not self._saved_to)
        if not update or key is None or store is None:
            return
        try:
            await self.agent.db(save_scores, store, key, update, self.thresholds.keep_days)
        except StoreError as e:
            self.score_spell.fail(str(e), "a restart now would lose this round's anomaly scores")
        else:
            self._saved_to = store
            self.score_spell.ok()

    async def _guarded(self, meter_id: str, task: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run one inference step; a failure is logged and counted, the other meters still run."""
        try:
            return await self.agent.infer(partial(fn, **kwargs), *args)
        except Exception as e:
            self.agent.stats.note_error(f"{meter_id}: {task} inference failed: {e}")
            log.error("%s: %s inference failed: %s", meter_id, task, e)
            return None

    def _enough(self, window: np.ndarray) -> bool:
        return float(np.isfinite(window).mean()) >= self.agent.cfg.schedule.min_coverage

    async def _context(self, meter_id: str, start_s: float, res: float) -> HistoryContext | None:
        history = await self.agent.profile_history()
        return await self.agent.db(history.context, meter_id, round(start_s / res)) if history else None

    async def _remember(self, meter_id: str, start_s: float, res: float, window: np.ndarray,
                        filled: np.ndarray, faulty: list[int] = ()) -> None:
        """Keep the window's bins (measured, or as the model filled them) as the meter's history,
        less the ``faulty`` bins (a gateway fault fired on them)."""
        history = await self.agent.profile_history()
        if history is not None:
            await self.agent.db(history.record, meter_id, round(start_s / res), filled, np.isfinite(window))
            if faulty:
                await self.agent.db(history.drop, meter_id, list(faulty))

    async def profile(self) -> None:
        """Anomaly (and the imputed window) of each meter's latest profile window."""
        agent = self.agent
        model = agent.host.current
        if model is None or not model.has("anomaly"):
            return
        (res, n), _ = agent.resolutions()
        await self._restore_thresholds(model)
        for st in list(agent.meters.values()):
            start_s, window, _ = st.profile.window(n)
            if not self._enough(window):
                log.debug("%s: profile window %.0f%% covered, skipping", st.id, 100 * np.isfinite(window).mean())
                continue
            context = await self._context(st.id, start_s, res)
            cut = self.thresholds.threshold(st.id, model, start_s + n * res)
            result = await self._guarded(st.id, "anomaly", profile_step, agent.host, window, start_s, res,
                                         threshold=cut, counter_wh=st.profile.counters(n), context=context,
                                         events=st.event_masks(start_s, res, n))
            if result is not None:
                self.thresholds.observe(st.id, model, result[0]["window_end_s"], result[0]["score_logit"])
                await self._remember(st.id, start_s, res, window, result[1], fault_bins(result[0]))
                hold = self.holds.setdefault(st.id, AlarmHold(agent.cfg.schedule.alarm_release_after_s))
                await agent.publish_result(st.id, "anomaly", hold_alarm(result[0], hold))
        await self._save_thresholds()

    async def nilm(self) -> None:
        """Appliance uses of each meter's latest high-rate window, and the events they decide."""
        agent = self.agent
        model = agent.host.current
        if model is None or not model.has("nilm"):
            return
        _, (res, n) = agent.resolutions()
        first, stop = decided_range(n, res, model.nilm_calibration.decision_lag_s)
        for st in list(agent.meters.values()):
            start_s, window, _ = st.nilm.window(n)
            tracker = st.appliances
            if tracker is None or not self._enough(window):
                continue
            result = await self._guarded(st.id, "nilm", nilm_step, agent.host, window, start_s, res,
                                         counter_wh=st.nilm.counters(n), owned=tracker.names,
                                         enrolled=tracker.enrolled)
            if result is None:
                continue
            events = tracker.add(start_s, result.decision, first, stop)
            body = {**tracker.snapshot(), "window_start_s": start_s, "window_end_s": start_s + n * res,
                    "model_version": result.model_version}
            await agent.publish_result(st.id, "appliances", body)
            now_s = time.time()
            await agent.enqueue([agent.topics.appliance_event_message(st.id, slug(e.appliance), now_s,
                                                                      e.payload())
                                 for e in events])
        self._save_appliance_state()

    def _save_appliance_state(self) -> None:
        agent = self.agent
        trackers = {st.id: st.appliances for st in agent.meters.values() if st.appliances is not None}
        if agent.appliance_state is None or not trackers:
            return
        try:
            agent.appliance_state.save(trackers)
        except OSError as e:
            agent.appliance_spell.fail(str(e), "today's appliance energy restarts at 0 if the agent stops now")
        else:
            agent.appliance_spell.ok()

    async def forecast(self) -> None:
        """The day-ahead forecast of each meter (a window with gaps imputed first when it can be)."""
        agent = self.agent
        model = agent.host.current
        if model is None or not model.has("forecast"):
            return
        (res, _), _ = agent.resolutions()
        n = model.tasks["forecast"].length
        for st in list(agent.meters.values()):
            start_s, window, _ = st.profile.window(n)
            if not self._enough(window):
                continue
            context = await self._context(st.id, start_s, res)
            if not np.isfinite(window).all():
                if model.has("imputation") and model.has("anomaly"):
                    result = await self._guarded(st.id, "imputation", profile_step, agent.host, window, start_s,
                                                 res, counter_wh=st.profile.counters(n), context=context)
                    if result is None:
                        continue
                    window = result[1]
                else:
                    window = np.nan_to_num(window, nan=float(np.nanmean(window)))
            body = await self._guarded(st.id, "forecast", forecast_step, agent.host, window, start_s, res,
                                       context=context)
            if body is not None:
                await agent.publish_result(st.id, "forecast", body)

    async def quality(self) -> None:
        """One quality message per meter: its high-rate window, the reading guard, the gap fill."""
        agent = self.agent
        (res, n), (n_res, n_len) = agent.resolutions()
        model = agent.host.current
        if model is not None and model.has("anomaly"):
            await self._restore_thresholds(model)
        msgs = []
        for st in list(agent.meters.values()):
            body = quality_body(st, n_res, n_len, agent.cfg.schedule.quality_every_s)
            body.update(guard_quality(agent.guards.get(st.id)))
            body["gap_fill"] = window_fill_report(st.nilm, n_len)
            if agent.host.current is not None and agent.host.current.has("anomaly"):
                body["anomaly_threshold_source"] = self.thresholds.source(st.id, agent.host.current)
            st.received = 0
            msgs.append(agent.topics.meter_message(st.id, "quality", st.last_seq, time.time(), body))
        await agent.enqueue(msgs)

    async def report(self) -> None:
        """One report message per meter from its latest profile window and model results."""
        agent = self.agent
        (res, n), _ = agent.resolutions()
        msgs = []
        for st in list(agent.meters.values()):
            body = report_body(st, n, agent.last_results.get(st.id, {}))
            msgs.append(agent.topics.meter_message(st.id, "report", st.last_seq, time.time(), body))
        await agent.enqueue(msgs)
