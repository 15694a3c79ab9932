"""The asyncio agent: sources -> store -> resampling -> quality/gaps -> inference -> outbox -> MQTT.

Tasks (all in one event loop; SQLite on its own thread, the models on another)::

    reader(meter) x N --queue--> writer --commit (readings + reading messages)--> resamplers
    pump: outbox -> paho -> PUBACK -> delete           schedulers: profile / nilm / forecast /
    watcher: bundle hot update                         quality / report / status / retention
    watchdog: sd_notify WATCHDOG=1 only while every task is alive and writer and pump progress
    health: <store dir>/health.json every 5 s (edge.agent.health)

Every task runs under ``edge.agent.supervise.Supervisor``: one that dies is logged with its
traceback, restarted with backoff and reported in health until it runs again. Store failures
(disk full, I/O errors) are not deaths: the writer keeps its batch and the pump its
acknowledgements and both retry, logged once per spell (``FailureSpell``) and reported in health.

The agent wires the rooms that do each job: ``pump`` (outbox -> broker, refused topics),
``rounds`` (the scheduled model, quality and report rounds), ``meter_state`` (resamplers warm from
the store), ``store_recovery`` (a damaged or deleted store), ``status`` (status details, health);
what stays here is the run itself: start, readers and writer, discovery glue, watchdog, shutdown.

``Agent.run()`` returns when ``request_stop()`` is called (SIGTERM/SIGINT in the CLI): sources stop,
everything received is committed, the outbox gets ``shutdown_flush_s`` to drain, ``offline`` is
published, the store is checkpointed and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from edge.agent.appliances import ApplianceState, MeterAppliances, tracked
from edge.agent.availability import AvailabilityTracker
from edge.agent.config import AgentConfig
from edge.agent.discovery import MeterInfo, ModelInfo
from edge.agent.discovery_state import GatewayDiscovery
from edge.agent.entities import appliance_name
from edge.agent.guards import build_guards, seed_guards
from edge.agent.health import (
    HEALTH_EVERY_S,
    Health,
    health_path,
    write_health,
)
from edge.agent.history import ProfileHistory
from edge.agent.inference import ModelHost, open_model
from edge.agent.messages import Topics
from edge.agent.meter_state import MeterState, Stats, model_resolutions, warm_meter_states
from edge.agent.mqtt import MqttPublisher
from edge.agent.notify import Notifier
from edge.agent.pump import OutboxPump
from edge.agent.rounds import ModelRounds, every
from edge.agent.status import agent_health, status_details
from edge.agent.store import (
    Message,
    ReadingStore,
    StoreCorruptError,
    StoredReading,
    StoreError,
)
from edge.agent.store_files import open_store
from edge.agent.store_recovery import check_store_file, replace_store
from edge.agent.supervise import FailureSpell, Supervisor
from edge.agent.watch import BundleWatcher
from edge.signing import BundleTrust
from firmware_bridge.guard import MODEL_EXCLUDED
from firmware_bridge.reading import Reading, ReadingFlag

log = logging.getLogger(__name__)


def bundle_trust(model_cfg) -> BundleTrust:
    """The gateway's bundle trust from ``[model]`` (public key, unsigned-bundle policy)."""
    keys = [model_cfg.public_key_file] if model_cfg.public_key_file else []
    return BundleTrust.from_config(keys, model_cfg.unsigned_bundles)


def _lower_priority(niceness: int = 10) -> None:
    """Run the inference thread at a lower CPU priority (Linux per-thread nice): a model round
    may take a while, but it must never hold up the path from meter to store to broker."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (OSError, AttributeError) as e:  # not Linux, or not allowed: run at normal priority
        log.debug("could not lower the inference thread's priority: %s", e)




class Agent:
    """The gateway agent. ``sources`` maps meter id -> object with ``readings()`` (async iterator)."""

    def __init__(self, cfg: AgentConfig, sources: dict[str, Any], *,
                 opener: Callable | None = None, notifier: Notifier | None = None,
                 shutdown_flush_s: float = 5.0, pump_window: int = 1000):
        self.cfg = cfg
        self.sources = sources
        self.topics = Topics(cfg.mqtt.base_topic, cfg.gateway.id, cfg.mqtt.discovery_prefix, cfg.mqtt.qos)
        self.notifier = notifier or Notifier()
        self.shutdown_flush_s = shutdown_flush_s
        self.pump_window = pump_window
        self.stats = Stats()
        self.host = ModelHost(opener or partial(open_model, backend=cfg.model.backend,
                                                precision=cfg.model.precision, threads=cfg.model.threads,
                                                trust=bundle_trust(cfg.model)))
        self.meters: dict[str, MeterState] = {}
        self.guards = build_guards(cfg, sources)  # one reading guard per meter, source -> store
        self.availability = AvailabilityTracker(missed=cfg.mqtt.offline_after_missed)
        self.ha: GatewayDiscovery | None = None  # Home Assistant discovery and availability (run())
        self.last_results: dict[str, dict[str, dict]] = {}  # meter -> kind -> last body
        self._db_pool = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="infer", initializer=_lower_priority)
        self._queue: asyncio.Queue[Reading] = asyncio.Queue(maxsize=20000)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.store: ReadingStore | None = None
        self.publisher: MqttPublisher | None = None
        self.pump: OutboxPump | None = None  # outbox -> broker (run(), when MQTT is enabled)
        self.ready = asyncio.Event()
        self.supervisor = Supervisor()
        self._batch: list[Reading] | None = None  # taken from the queue, not yet committed
        self.store_identity: tuple[int, int] | None = None
        self.store_events: list[dict] = []  # stores recovered (moved aside, restored) this run
        self._history: tuple[tuple, ProfileHistory] | None = None  # (store, res, L, D), its history
        self.write_spell = FailureSpell("store writes", log)  # readings and queued messages
        self.ack_spell = FailureSpell("store: recording broker acknowledgements", log)
        self.appliance_state: ApplianceState | None = None  # loaded with the first NILM tracker
        self.appliance_spell = FailureSpell("saving today's appliance energy", log)
        self.rounds = ModelRounds(self)

    # --- plumbing ---------------------------------------------------------------------------

    async def db(self, fn: Callable, *args: Any) -> Any:
        """Run a store call on the store thread (all SQLite access goes through here)."""
        return await asyncio.get_running_loop().run_in_executor(self._db_pool, partial(fn, *args))

    async def infer(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._infer_pool, partial(fn, *args))

    def request_stop(self) -> None:
        self._stop.set()

    def _wake_threadsafe(self) -> None:
        if self._loop is not None and not self._wake.is_set():
            with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
                self._loop.call_soon_threadsafe(self._wake.set)

    def resolutions(self) -> tuple[tuple[float, int], tuple[float, int]]:
        """((profile resolution_s, L), (NILM resolution_s, L_nilm)) of the live model."""
        return model_resolutions(self.host.current, self.cfg.schedule)

    async def build_meter_states(self) -> None:
        """(Re)build the resamplers at the model's resolutions, warm from the store, and backfill
        the profile history the model takes."""
        resolutions = (p_res, p_len), _ = self.resolutions()
        now_s = time.time()
        names = {m.id: m.name for m in self.cfg.meters}
        self.meters = await warm_meter_states(self.db, self.store, list(self.sources), names, resolutions,
                                              self._meter_appliances, now_s)
        history = await self.profile_history()
        if history is not None:
            for mid in self.sources:
                since_s = now_s - (history.days + 1) * p_len * p_res
                n = await self.db(history.backfill, mid, await self.db(self.store.bins, mid, p_res, since_s))
                log.info("%s: %d profile bins of history from the stored readings", mid, n)

    async def profile_history(self) -> ProfileHistory | None:
        """The meters' daily profiles in the store (``edge.agent.history``) when the model takes
        history days, else None; bound to the current store file."""
        model = self.host.current
        days = model.history_days if model is not None else 0
        if not days or self.store is None:
            return None
        (res, length), _ = self.resolutions()
        key = (self.store, res, length, days)
        if self._history is None or self._history[0] != key:
            history = await self.db(ProfileHistory, self.store.db, res, length, days)
            self._history = (key, history)
        return self._history[1]

    def _meter_appliances(self, meter_id: str, resolution_s: float) -> MeterAppliances | None:
        """The NILM tracker of one meter: the appliances its config lists (all the model's when it
        lists none) that the live model knows, then those it does not know enrolled by signature
        (``edge.nilm_enrol``); the others are logged once and left out."""
        model = self.host.current
        if model is None or not model.has("nilm"):
            return None
        wanted = next((m.appliances for m in self.cfg.meters if m.id == meter_id), [])
        names, enrolled, refused = tracked(model.appliances, wanted)
        if enrolled:
            log.info("%s: the model %s does not know %s; enrolled by signature", meter_id, model.version,
                     [s.name for s in enrolled])
        if refused:
            log.warning("%s: the model %s does not know the appliances %s (it knows %s) and they cannot be "
                        "enrolled by signature (%s); they are not disaggregated", meter_id, model.version,
                        sorted(refused), list(model.appliances), "; ".join(refused.values()))
        tracker = MeterAppliances(names, model.nilm_calibration, resolution_s,
                                  {k: appliance_name(k) for k in names}, enrolled=enrolled)
        if self.appliance_state is None:  # after the store opened: its directory exists
            self.appliance_state = ApplianceState.load(self.cfg.store_path.with_suffix(".appliances.json"))
        self.appliance_state.restore(meter_id, tracker)  # today's energy across restarts and updates
        return tracker

    # --- run ----------------------------------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        cfg = self.cfg
        self.store, event = await self.db(partial(open_store, cfg.store_path, **self.store_options()))
        self.adopt_store(event)
        watcher = None
        if cfg.model.bundle:
            watcher = BundleWatcher(cfg.model.bundle, self.host, self.infer, self._on_model_swap)
            await watcher.check(initial=True)
        try:
            await self.build_meter_states()
            await self.db(seed_guards, self.guards, self.store)
        except StoreCorruptError as e:  # damage found by the warm-start reads
            await replace_store(self, str(e))
        self._start_discovery()
        if cfg.mqtt.enabled:
            self.publisher = MqttPublisher(cfg.mqtt, self.topics, cfg.client_id,
                                           on_ha_online=self._ha_online_threadsafe)
            self.publisher.wakeup = self._wake_threadsafe
            self.pump = OutboxPump(self.publisher, self.db, lambda: self.store, self.stats, self.ack_spell,
                                   self._wake, self.pump_window)
            for topic, code in (await self.db(self.store.held_topics)).items():
                self.publisher.held[topic] = f"refused before the restart (0x{code:02X})"
            self.publisher.start()
            await self._enqueue_discovery()
            await self.enqueue([self.topics.event_message(e) for e in self.store_events])
        self._spawn_tasks(watcher)
        self.notifier.ready(f"{len(self.sources)} meters, model "
                            f"{self.host.current.version if self.host.current else 'none'}")
        self.ready.set()
        log.info("agent %s running: %d meters, store %s", cfg.gateway.id, len(self.sources), cfg.store_path)
        await self._stop.wait()
        await self._shutdown()
        return 0

    # --- the store in use (recovery from damage and deletion: edge.agent.store_recovery) -----------

    def store_options(self) -> dict:
        """``ReadingStore`` options from ``[store]``."""
        s = self.cfg.store
        return {"synchronous": s.synchronous, "outbox_max_rows": s.outbox_max_rows,
                "outbox_max_mb": s.outbox_max_mb}

    def adopt_store(self, event: dict | None) -> None:
        """Adopt the (new) store: its epoch goes into every message from now on."""
        self.topics = dataclasses.replace(self.topics, epoch=self.store.epoch)
        self.store_identity = self.store.file_identity()
        if event is not None:
            self.store_events.append(event)

    def _spawn_tasks(self, watcher: BundleWatcher | None) -> None:
        """Start every background task under the supervisor (names are what health shows)."""
        sup, sched = self.supervisor, self.cfg.schedule
        for mid, src in self.sources.items():
            sup.spawn(f"reader-{mid}", partial(self._reader, mid, src))
        sup.spawn("writer", self._writer)
        if self.publisher is not None:
            sup.spawn("pump", self.pump.run)
            sup.spawn("refused-retry", partial(every, self.cfg.mqtt.refused_retry_s,
                                               self.pump.probe_refused, "refused-retry", sup, self.stats))
        periodic = [
            ("profile", sched.profile_every_s, self.rounds.profile),
            ("nilm", sched.nilm_every_s, self.rounds.nilm),
            ("forecast", sched.forecast_every_s, self.rounds.forecast),
            ("quality", sched.quality_every_s, self.rounds.quality),
            ("report", sched.report_every_s, self.rounds.report),
            ("status", sched.status_every_s, self._status_round),
            ("retention", 3600.0, self._retention_round),
            ("availability", 1.0, self._availability_round),
        ]
        if watcher is not None:
            periodic.append(("bundle-watch", self.cfg.model.watch_interval_s, watcher.check))
        for name, period_s, fn in periodic:
            sup.spawn(name, partial(every, period_s, fn, name, sup, self.stats))
        if self.notifier.watchdog_interval_s is not None:
            sup.spawn("watchdog", self._watchdog)
        sup.spawn("health", self._health_loop)

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping: committing what was received and flushing the outbox")
        sup = self.supervisor
        sup.stopping = True
        await sup.cancel([n for n in sup.tasks if n not in ("writer", "pump")])
        await self._queue.put(None)  # type: ignore[arg-type]  # sentinel: the writer drains and exits
        await sup.handle("writer")
        if self.publisher is not None:
            deadline = time.monotonic() + self.shutdown_flush_s
            while (self.store.outbox_rows > 0 and self.publisher.connected.is_set()
                   and time.monotonic() < deadline):
                self._wake.set()
                await asyncio.sleep(0.05)
            await sup.cancel(["pump"])
            with contextlib.suppress(StoreError):
                await self.pump.record_acks()
            await asyncio.get_running_loop().run_in_executor(None, self.publisher.stop)
        self._write_health(state="stopped")
        await self.db(self.store.close)
        self._db_pool.shutdown(wait=True)
        self._infer_pool.shutdown(wait=True)
        log.info("stopped; %d messages left in the outbox for the next start", self.store.outbox_rows)

    # --- readers and writer ----------------------------------------------------------------------

    async def _reader(self, meter_id: str, source: Any) -> None:
        """Pull readings from one source (the source reconnects itself); restart it if it ends."""
        while True:
            try:
                async for r in source.readings():
                    if r.meter_id != meter_id:
                        r = dataclasses.replace(r, meter_id=meter_id)
                    await self._queue.put(self.guards[meter_id].check(r))
                log.warning("source %s ended; restarting it in 1 s", meter_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("source %s failed; restarting it in 1 s", meter_id)
            await asyncio.sleep(1.0)

    async def _writer(self) -> None:
        """Batch readings into commits; a reading is received once its commit returns.

        The batch in hand lives on the agent (``_batch``), so a writer that dies and is restarted
        by the supervisor commits it first: nothing taken from the queue is dropped.
        """
        done = False
        while not done:
            self.stats.writer_tick_s = time.monotonic()
            if self._batch is None:
                self._batch, done = await self._next_batch()
            if self._batch:
                await self._commit(self._batch)
            self._batch = None

    async def _next_batch(self) -> tuple[list[Reading] | None, bool]:
        """The next batch (up to ``batch_max``; None after 1 s without readings); True when the
        stop sentinel was met."""
        batch_max, interval_s = self.cfg.store.batch_max, self.cfg.store.batch_interval_s
        try:
            async with asyncio.timeout(1.0):
                first = await self._queue.get()
        except TimeoutError:
            return None, False
        if first is None:
            return [], True
        batch = [first]
        if self._queue.qsize() < batch_max:
            await asyncio.sleep(interval_s)
        while len(batch) < batch_max and not self._queue.empty():
            r = self._queue.get_nowait()
            if r is None:
                return batch, True
            batch.append(r)
        return batch, False

    async def _commit(self, batch: list[Reading]) -> None:
        """Commit one batch, retrying store failures (disk full, I/O) every second until it holds."""
        builder = (partial(self.topics.reading_messages,
                           max_per_message=self.cfg.mqtt.max_readings_per_message)
                   if self.publisher is not None else None)
        while True:
            try:
                commit = await self.db(self.store.commit_readings, batch, builder)
                break
            except StoreCorruptError as e:  # keep the batch, commit it to a fresh store
                self.stats.errors += 1
                await replace_store(self, str(e))
                continue
            except StoreError as e:  # keep the batch; the loop still ticks, health reports it
                self.stats.errors += 1
                self.write_spell.fail(str(e), f"{len(batch) + self._queue.qsize()} readings "
                                       "waiting in memory, retrying every 1 s")
                await asyncio.sleep(1.0)
                self.stats.writer_tick_s = time.monotonic()
        self.write_spell.ok()
        self.stats.committed += len(commit.readings)
        self.stats.note_commit(commit.readings)
        if self.pump is not None:
            self.pump.publish_fresh(commit.messages)
        self._after_commit(commit.readings)
        self._wake.set()

    def _after_commit(self, stored: list[StoredReading]) -> None:
        for s in stored:
            r = s.reading
            st = self.meters.get(r.meter_id)
            if st is None:
                continue
            if not r.flags & MODEL_EXCLUDED:
                net_wh = None if r.import_wh is None else r.import_wh - (r.export_wh or 0.0)
                if r.flags & ReadingFlag.COUNTER_RESET:
                    st.profile.forget_counters()
                    st.nilm.forget_counters()
                st.profile.add(r.ts_s, r.power_w, net_wh)
                st.nilm.add(r.ts_s, r.power_w, net_wh)
            st.received += 1
            st.flags_seen |= int(r.flags)
            st.note_flags(r.ts_s, int(r.flags), r.received_s)
            st.last_seq, st.last_ts_s, st.last_received_s = s.seq, r.ts_s, r.received_s
            if self.ha is not None:
                self.ha.note_reading(r)

    # --- publishing and discovery -------------------------------------------------------------------

    async def publish_result(self, meter_id: str, kind: str, body: dict) -> None:
        self.last_results.setdefault(meter_id, {})[kind] = body
        st = self.meters[meter_id]
        await self.enqueue([self.topics.meter_message(meter_id, kind, st.last_seq, time.time(), body)])

    async def enqueue(self, messages: list[Message]) -> None:
        if self.publisher is None or not messages:
            return
        try:
            await self.db(self.store.enqueue, messages)
        except StoreError as e:  # the round that made them logs nothing more; health shows it
            self.write_spell.fail(str(e), f"{len(messages)} messages not queued")
            raise
        self._wake.set()

    def _start_discovery(self) -> None:
        """Discovery state (announced configs, values seen) and the availability of each meter."""
        infos = [MeterInfo(m.id, m.name, m.kind, hide_energy=m.options.get("energy", True) is False,
                           appliances=tuple(m.appliances))
                 for m in self.cfg.meters if m.id in self.sources]
        for m in self.cfg.meters:
            if m.id in self.meters:
                self.availability.add(m.id, m.offline_after_s, self.meters[m.id].last_received_s)
        state_path = self.cfg.store_path.with_suffix(".discovery.json")
        self.ha = GatewayDiscovery(self.topics, infos, state_path, self.availability)

    def _model_info(self) -> ModelInfo | None:
        model = self.host.current
        if model is None:
            return None
        return ModelInfo(model.version, tuple(model.tasks), tuple(model.appliances))

    async def _enqueue_discovery(self) -> None:
        """Every discovery config (and the deletion of those no longer announced) into the outbox."""
        if not self.cfg.mqtt.discovery or self.ha is None:
            return
        await self.enqueue(self.ha.messages(self._model_info()))
        try:
            await self.db(self.ha.state.save)
        except OSError as e:
            self.stats.note_error(f"discovery state not saved: {e}")
            log.error("could not save the discovery state %s: %s", self.ha.state.path, e)

    async def _availability_round(self) -> None:
        """Each second: meters going online/offline, and discovery for values a meter began to send."""
        if self.ha is None:
            return
        await self.enqueue(self.ha.availability_messages(time.time()))
        if self.ha.pending:
            await self._enqueue_discovery()

    def _ha_online_threadsafe(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._enqueue_discovery(), self._loop)

    async def _on_model_swap(self) -> None:
        await self.build_meter_states()
        if self.publisher is not None:
            await self._enqueue_discovery()
            await self._status_round()

    # --- status and retention -----------------------------------------------------------------------

    def status_details(self) -> dict:
        """The status topic's details now (``edge.agent.status``)."""
        return status_details(self)

    def health(self, state: str = "running") -> Health:
        """The agent's health now (``edge.agent.status``; also what the status topic carries)."""
        return agent_health(self, state)

    def readings_waiting(self) -> int:
        """Readings received but not yet committed (in the queue and the writer's batch)."""
        return self._queue.qsize() + len(self._batch or [])

    async def _status_round(self) -> None:
        if self.publisher is None:
            return
        details = self.status_details()
        if details["outbox_dropped"]:
            log.warning("bounded-disk policy applied: %d outbox messages dropped so far",
                        details["outbox_dropped"])
        details["health"] = self.health().to_dict()
        self.publisher.publish_direct(self.topics.status, self.topics.status_payload("online", **details))
        self.notifier.status(json.dumps({k: details[k] for k in ("committed", "published", "outbox_rows")}))

    async def _retention_round(self) -> None:
        cutoff = time.time() - self.cfg.store.retention_days * 86400
        n = await self.db(self.store.prune_readings, cutoff)
        if n:
            log.info("retention: pruned %d readings older than %.0f days", n, self.cfg.store.retention_days)

    # --- watchdog ---------------------------------------------------------------------------------

    def healthy(self, now_s: float | None = None, limit_s: float = 10.0) -> bool:
        """Every supervised task is alive (a restarted one for ``limit_s`` already), and writer and
        pump made progress recently (they tick at least every second when idle, and while retrying
        a failing store)."""
        now_s = time.monotonic() if now_s is None else now_s
        if not self.supervisor.settled(limit_s):
            return False
        if now_s - self.stats.writer_tick_s > limit_s:
            return False
        return not (self.publisher is not None and now_s - self.stats.pump_tick_s > limit_s)

    async def _watchdog(self) -> None:
        interval_s = self.notifier.watchdog_interval_s
        limit_s = max(3.0, 2 * interval_s)  # writer/pump tick at least every 1 s when idle
        while True:
            await asyncio.sleep(interval_s)
            if self.healthy(limit_s=limit_s):
                self.notifier.watchdog()
            else:
                dead = ", ".join([h.name for h in self.supervisor.dead()] + [
                    f"{h.name} (restarted, not yet {limit_s:.0f} s up)"
                    for h in self.supervisor.unsettled(limit_s)]) or "none"
                log.error("pipeline stalled (tasks not running: %s; or writer/publisher not "
                          "progressing): withholding the watchdog ping so systemd restarts the agent",
                          dead)

    # --- health -----------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await check_store_file(self)
            self._write_health()
            await asyncio.sleep(HEALTH_EVERY_S)

    def _write_health(self, state: str = "running") -> None:
        try:
            write_health(health_path(self.cfg.store_path), self.health(state))
        except OSError as e:  # disk full: health still goes out on the status topic
            log.debug("could not write the health file: %s", e)

