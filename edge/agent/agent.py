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
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from edge.agent.appliances import ApplianceState, MeterAppliances, decided_range, names_in_order
from edge.agent.availability import AvailabilityTracker
from edge.agent.config import AgentConfig
from edge.agent.discovery import GatewayDiscovery, MeterInfo, ModelInfo, appliance_name, slug
from edge.agent.gapfill import window_fill_report
from edge.agent.guards import build_guards, guard_quality, guard_totals, guard_warnings, seed_guards
from edge.agent.health import (
    HEALTH_EVERY_S,
    Health,
    ModelHealth,
    MqttHealth,
    StoreHealth,
    health_path,
    write_health,
)
from edge.agent.history import HistoryContext, ProfileHistory
from edge.agent.inference import (
    ModelHost,
    forecast_step,
    nilm_step,
    open_model,
    profile_step,
)
from edge.agent.messages import Topics, iso_utc
from edge.agent.mqtt import MqttPublisher
from edge.agent.notify import Notifier
from edge.agent.resample import Resampler
from edge.agent.store import (
    Message,
    ReadingStore,
    StoreCorruptError,
    StoredReading,
    StoreError,
    move_aside,
    open_store,
)
from edge.agent.supervise import FailureSpell, Supervisor
from edge.agent.watch import BundleWatcher
from edge.signing import BundleTrust
from firmware_bridge.guard import MODEL_EXCLUDED
from firmware_bridge.reading import Reading, ReadingFlag

log = logging.getLogger(__name__)

DEFAULT_PROFILE = (1800.0, 48)  # resolution_s, L when no model says otherwise
DEFAULT_NILM = (10.0, 256)


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


@dataclass
class MeterState:
    id: str
    name: str
    profile: Resampler
    nilm: Resampler
    appliances: MeterAppliances | None = None  # NILM uses, events and daily energy (model with nilm)
    received: int = 0  # since the last quality message
    flags_seen: int = 0
    last_seq: int = 0
    last_ts_s: float = 0.0
    last_received_s: float = 0.0


@dataclass
class Stats:
    committed: int = 0
    published: int = 0
    latencies_s: list[float] = field(default_factory=list)  # reading received -> PUBACK, recent
    commit_latencies_s: list[float] = field(default_factory=list)  # reading received -> committed
    writer_tick_s: float = 0.0
    pump_tick_s: float = 0.0
    errors: int = 0
    last_error: str = ""
    last_error_s: float = 0.0
    started_s: float = field(default_factory=time.time)

    def note_error(self, message: str) -> None:
        self.errors += 1
        self.last_error, self.last_error_s = message, time.time()

    def note_latency(self, lat_s: float, keep: int = 20000) -> None:
        self.latencies_s.append(lat_s)
        if len(self.latencies_s) > keep:
            del self.latencies_s[: keep // 2]

    def note_commit(self, stored: list[StoredReading], keep: int = 20000) -> None:
        now_s = time.time()
        self.commit_latencies_s.extend(now_s - s.reading.received_s for s in stored[:: max(1, len(stored) // 20)])
        if len(self.commit_latencies_s) > keep:
            del self.commit_latencies_s[: keep // 2]


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
        self._pump_last_id = 0  # outbox id of the last message handed to paho
        self.store: ReadingStore | None = None
        self.publisher: MqttPublisher | None = None
        self.ready = asyncio.Event()
        self.supervisor = Supervisor()
        self._batch: list[Reading] | None = None  # taken from the queue, not yet committed
        self._acks_pending: list = []  # PUBACKs drained from paho, not yet recorded in the store
        self._holds_pending: list[tuple[int, int]] = []  # (outbox id, reason code) to hold
        self._probing: set[str] = set()  # held topics allowed one message (a probe) now
        self._store_gen = 0  # bumped when the store is replaced: outbox ids before it mean nothing
        self._store_ident: tuple[int, int] | None = None
        self.store_events: list[dict] = []  # stores recovered (moved aside, restored) this run
        self._history: tuple[tuple, ProfileHistory] | None = None  # (store, res, L, D), its history
        self.write_spell = FailureSpell("store writes", log)  # readings and queued messages
        self.ack_spell = FailureSpell("store: recording broker acknowledgements", log)
        self.appliance_state: ApplianceState | None = None  # loaded with the first NILM tracker
        self.appliance_spell = FailureSpell("saving today's appliance energy", log)

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

    def _resolutions(self) -> tuple[tuple[float, int], tuple[float, int]]:
        sched = self.cfg.schedule
        model = self.host.current
        prof, nilm = DEFAULT_PROFILE, DEFAULT_NILM
        if model is not None:
            t = model.tasks.get("anomaly") or model.tasks.get("imputation") or model.tasks.get("forecast")
            prof = (t.resolution_s, t.length) if t else prof
            n = model.tasks.get("nilm")
            nilm = (n.resolution_s, n.length) if n else nilm
        if sched.profile_resolution_s:
            prof = (sched.profile_resolution_s, prof[1])
        if sched.nilm_resolution_s:
            nilm = (sched.nilm_resolution_s, nilm[1])
        return prof, nilm

    async def _build_meter_states(self) -> None:
        """(Re)build the resamplers at the model's resolutions, warm from the store."""
        (p_res, p_len), (n_res, n_len) = self._resolutions()
        now_s = time.time()
        names = {m.id: m.name for m in self.cfg.meters}
        known = {mid: (seq, ts, rx) for mid, seq, ts, rx in await self.db(self.store.meters)}
        states = {}
        for mid in self.sources:
            st = MeterState(mid, names.get(mid, ""), Resampler(p_res, 2 * p_len + 2),
                            Resampler(n_res, n_len + 2), self._meter_appliances(mid, n_res))
            seq, ts, rx = known.get(mid, (0, None, None))
            st.last_seq, st.last_ts_s, st.last_received_s = seq, ts or 0.0, rx or 0.0
            ref_s = max(now_s, st.last_ts_s)
            for k, s, c in await self.db(self.store.bins, mid, p_res, ref_s - (2 * p_len + 2) * p_res):
                st.profile.add_bin(int(k), s, c)
            for k, s, c in await self.db(self.store.bins, mid, n_res, ref_s - (n_len + 2) * n_res):
                st.nilm.add_bin(int(k), s, c)
            for res, rs in ((p_res, st.profile), (n_res, st.nilm)):
                for k, ts, wh in await self.db(self.store.counter_bins, mid, res, ref_s - rs.keep_bins * res):
                    rs.add_counter(int(k), ts, wh)
            states[mid] = st
        self.meters = states
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
        (res, length), _ = self._resolutions()
        key = (self.store, res, length, days)
        if self._history is None or self._history[0] != key:
            history = await self.db(ProfileHistory, self.store.db, res, length, days)
            self._history = (key, history)
        return self._history[1]

    async def _context(self, meter_id: str, start_s: float, res: float) -> HistoryContext | None:
        history = await self.profile_history()
        return await self.db(history.context, meter_id, round(start_s / res)) if history else None

    async def _remember(self, meter_id: str, start_s: float, res: float, window: np.ndarray,
                        filled: np.ndarray) -> None:
        """Keep the window's bins (measured, or as the model filled them) as the meter's history."""
        history = await self.profile_history()
        if history is not None:
            await self.db(history.record, meter_id, round(start_s / res), filled, np.isfinite(window))

    def _meter_appliances(self, meter_id: str, resolution_s: float) -> MeterAppliances | None:
        """The NILM tracker of one meter: the appliances its config lists (all the model's when it
        lists none) that the live model knows; the others are logged once and left out."""
        model = self.host.current
        if model is None or not model.has("nilm"):
            return None
        wanted = next((m.appliances for m in self.cfg.meters if m.id == meter_id), [])
        unknown = sorted(set(wanted) - set(model.appliances))
        if unknown:
            log.warning("%s: the model %s does not know the appliances %s (it knows %s); they are "
                        "not disaggregated", meter_id, model.version, unknown, list(model.appliances))
        names = names_in_order(model.appliances, wanted)
        tracker = MeterAppliances(names, model.nilm_calibration, resolution_s,
                                  {k: appliance_name(k) for k in names})
        if self.appliance_state is None:  # after the store opened: its directory exists
            self.appliance_state = ApplianceState.load(self.cfg.store_path.with_suffix(".appliances.json"))
        self.appliance_state.restore(meter_id, tracker)  # today's energy across restarts and updates
        return tracker

    # --- run ----------------------------------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        cfg = self.cfg
        self.store, event = await self.db(partial(open_store, cfg.store_path, **self._store_options()))
        self._note_store(event)
        watcher = None
        if cfg.model.bundle:
            watcher = BundleWatcher(cfg.model.bundle, self.host, self.infer, self._on_model_swap)
            await watcher.check(initial=True)
        try:
            await self._build_meter_states()
            await self.db(seed_guards, self.guards, self.store)
        except StoreCorruptError as e:  # damage found by the warm-start reads
            await self._replace_store(str(e))
        self._start_discovery()
        if cfg.mqtt.enabled:
            self.publisher = MqttPublisher(cfg.mqtt, self.topics, cfg.client_id,
                                           on_ha_online=self._ha_online_threadsafe)
            self.publisher.wakeup = self._wake_threadsafe
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

    # --- the store: open, replace when damaged, restore when deleted ------------------------------

    def _store_options(self) -> dict:
        s = self.cfg.store
        return {"synchronous": s.synchronous, "outbox_max_rows": s.outbox_max_rows,
                "outbox_max_mb": s.outbox_max_mb}

    def _note_store(self, event: dict | None) -> None:
        """Adopt the (new) store: its epoch goes into every message from now on."""
        self.topics = dataclasses.replace(self.topics, epoch=self.store.epoch)
        self._store_ident = self.store.file_identity()
        if event is not None:
            self.store_events.append(event)

    async def _replace_store(self, reason: str) -> None:
        """The store turned out damaged while open: move it aside and start a fresh one.

        Outbox ids of the old store mean nothing in the new one, so everything that refers to
        them (paho's in-flight map, pending acknowledgements, the pump cursor) is forgotten; what
        was in flight may still reach subscribers, under the old epoch.
        """
        self._store_gen += 1
        old = self.store
        await self.db(old.close)
        moved = await self.db(move_aside, self.cfg.store_path)
        self.store = await self.db(partial(ReadingStore, self.cfg.store_path, **self._store_options()))
        event = {"event": "store_recovered", "reason": reason, "moved_to": str(moved),
                 "at_s": time.time(), "epoch": self.store.epoch, "previous_epoch": old.epoch}
        log.error("store %s is damaged (%s): moved it aside to %s and started a fresh store (epoch %s)",
                  self.cfg.store_path, reason, moved.name, self.store.epoch)
        self._note_store(event)
        self._acks_pending.clear()
        self._holds_pending.clear()
        self._pump_last_id = 0
        if self.publisher is not None:
            self.publisher.forget_inflight()
            await self.enqueue([self.topics.event_message(event)])
        await self._build_meter_states()

    async def _check_store_file(self) -> None:
        """Write a store file deleted (or replaced) under the running agent back from the open
        connection (SQLite's backup API), so nothing it held is lost when the agent exits."""
        ident = await self.db(self.store.file_identity)
        if ident == self._store_ident:
            return
        path = self.cfg.store_path
        log.error("store file %s was %s while the agent runs; writing it back from the open database",
                  path, "deleted" if ident is None else "replaced")
        await self.db(self._restore_store_file)
        event = {"event": "store_restored", "reason": "store file deleted while running"
                 if ident is None else "store file replaced while running", "at_s": time.time(),
                 "epoch": self.store.epoch}
        self._note_store(event)
        await self.enqueue([self.topics.event_message(event)])

    def _restore_store_file(self) -> None:
        """(store thread) back up the open store to its path and reopen it there."""
        path = self.store.path
        if path.exists():  # something else took its place: keep it, but not as our store
            move_aside(path)
        tmp = path.with_name(f".{path.name}.restore")
        self.store.restore_to(tmp)
        os.replace(tmp, path)
        self.store.db.close()
        self.store = ReadingStore(path, **self._store_options())

    def _spawn_tasks(self, watcher: BundleWatcher | None) -> None:
        """Start every background task under the supervisor (names are what health shows)."""
        sup, sched = self.supervisor, self.cfg.schedule
        for mid, src in self.sources.items():
            sup.spawn(f"reader-{mid}", partial(self._reader, mid, src))
        sup.spawn("writer", self._writer)
        if self.publisher is not None:
            sup.spawn("pump", self._pump)
            sup.spawn("refused-retry", partial(self._every, self.cfg.mqtt.refused_retry_s,
                                               self._probe_refused, "refused-retry"))
        periodic = [
            ("profile", sched.profile_every_s, self._profile_round),
            ("nilm", sched.nilm_every_s, self._nilm_round),
            ("forecast", sched.forecast_every_s, self._forecast_round),
            ("quality", sched.quality_every_s, self._quality_round),
            ("report", sched.report_every_s, self._report_round),
            ("status", sched.status_every_s, self._status_round),
            ("retention", 3600.0, self._retention_round),
            ("availability", 1.0, self._availability_round),
        ]
        if watcher is not None:
            periodic.append(("bundle-watch", self.cfg.model.watch_interval_s, watcher.check))
        for name, period_s, fn in periodic:
            sup.spawn(name, partial(self._every, period_s, fn, name))
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
                await self._ack_pending()
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
                await self._replace_store(str(e))
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
        self._publish_fresh(commit.messages)
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
            st.last_seq, st.last_ts_s, st.last_received_s = s.seq, r.ts_s, r.received_s
            if self.ha is not None:
                self.ha.note_reading(r)

    # --- publishing ------------------------------------------------------------------------------

    def _publish_fresh(self, fresh: list[Message]) -> None:
        """Hand the messages of a commit straight to paho when the pump has caught up with the
        outbox (saves a round trip through the store thread); otherwise the pump sends them."""
        pub = self.publisher
        if (not fresh or pub is None or fresh[0].id != self._pump_last_id + 1
                or not pub.connected.is_set() or pub.inflight + len(fresh) > self.pump_window
                or (pub.held and any(m.topic in pub.held for m in fresh))):
            return
        for m in fresh:
            if not pub.publish(m):
                return
            self._pump_last_id = m.id

    async def _pump(self) -> None:
        """Outbox -> paho while connected; delete on PUBACK.

        PUBACKs drained from paho stay in ``_acks_pending`` until the store has recorded them: a
        store failure (disk full while the broker acknowledges a backlog) is retried every second
        and reported, and a pump restarted by the supervisor still has them.
        """
        pub = self.publisher
        while True:
            self.stats.pump_tick_s = time.monotonic()
            self._wake.clear()
            self._acks_pending.extend(pub.drain_acks())
            room = self.pump_window - pub.inflight if pub.connected.is_set() else 0
            msgs = []
            if self._acks_pending or self._holds_pending or room > 0:
                acks, holds, gen = list(self._acks_pending), list(self._holds_pending), self._store_gen
                held = holds + [(a.outbox_id, a.reason_code) for a in acks if a.refused]
                try:
                    msgs = await self.db(self.store.ack_and_fetch,
                                         [a.outbox_id for a in acks if not a.refused],
                                         self._pump_last_id, room, held)
                except StoreError as e:
                    self.stats.errors += 1
                    self.ack_spell.fail(str(e), f"{len(acks)} acknowledgements kept, retrying every 1 s")
                    await asyncio.sleep(1.0)
                    continue
                self.ack_spell.ok()
                if gen != self._store_gen:  # the store was replaced meanwhile
                    continue
                del self._acks_pending[:len(acks)]
                del self._holds_pending[:len(holds)]
                self._note_acks([a for a in acks if not a.refused])
                await self._release_accepted(acks)
            for m in msgs:
                if m.id <= self._pump_last_id:  # already sent by _publish_fresh meanwhile
                    continue
                if m.topic in pub.held and not self._take_probe(m.topic):
                    self._holds_pending.append((m.id, 0x87))  # the broker refuses its topic: keep it
                    self._pump_last_id = m.id
                    continue
                if not pub.publish(m):
                    break
                self._pump_last_id = m.id
            if msgs and len(msgs) == room:
                continue
            with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: 3.11's wait_for
                async with asyncio.timeout(0.5):      # can lose a cancellation (a hung shutdown)
                    await self._wake.wait()

    # --- refused publishes (MQTT 5 reason codes): hold, probe, release ------------------------------

    def _take_probe(self, topic: str) -> bool:
        """True once per probe round of a held topic: that message goes out as the probe."""
        if topic in self._probing:
            self._probing.discard(topic)
            return True
        return False

    async def _probe_refused(self) -> None:
        """Offer the oldest held message of one held topic to the broker again (a probe)."""
        pub = self.publisher
        for topic in list(pub.held):
            if topic not in self._probing and await self.db(self.store.release_held, topic, 1):
                self._probing.add(topic)
                log.info("offering a held message on %s to the broker again", topic)
                self._wake.set()
                return

    async def _release_accepted(self, acks: list) -> None:
        """A message on a held topic was accepted: release that topic and probe the others."""
        pub = self.publisher
        for a in acks:
            if a.refused or a.topic not in pub.held:
                continue
            pub.release(a.topic)
            n = await self.db(self.store.release_held, a.topic, None)
            log.warning("%d held messages on %s released", n, a.topic)
            for other in list(pub.held):  # the ACL probably changed: ask about the others now
                if other not in self._probing and await self.db(self.store.release_held, other, 1):
                    self._probing.add(other)
            self._wake.set()

    async def _ack_pending(self) -> None:
        self._acks_pending.extend(self.publisher.drain_acks())
        acks = list(self._acks_pending)
        if acks:
            await self.db(self.store.acknowledge, [a.outbox_id for a in acks])
            del self._acks_pending[:len(acks)]
            self._note_acks(acks)

    def _note_acks(self, acks: list) -> None:
        self.stats.published += len(acks)
        for a in acks:
            self.stats.note_latency(a.acked_s - a.created_s)

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
        await self._build_meter_states()
        if self.publisher is not None:
            await self._enqueue_discovery()
            await self._status_round()

    # --- schedules --------------------------------------------------------------------------------

    async def _every(self, period_s: float, fn: Callable, name: str) -> None:
        """Run ``fn`` once soon after start, then on the wall-clock grid of ``period_s``.

        Aligned to the grid plus a small offset, so a half-hourly profile round runs just after
        the half-hour bin closed and the daily forecast just after midnight UTC, whenever the agent
        was started (and a freshly started agent does not wait a day for its first forecast).
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
                self.stats.errors += 1
                self.supervisor.note_error(name, e, log_it=False)
            except Exception as e:
                self.stats.errors += 1
                self.supervisor.note_error(name, e)

    async def _guarded(self, meter_id: str, task: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run one inference step; a failure is logged and counted, the other meters still run."""
        try:
            return await self.infer(partial(fn, **kwargs), *args)
        except Exception as e:
            self.stats.note_error(f"{meter_id}: {task} inference failed: {e}")
            log.error("%s: %s inference failed: %s", meter_id, task, e)
            return None

    def _enough(self, window: np.ndarray) -> bool:
        return float(np.isfinite(window).mean()) >= self.cfg.schedule.min_coverage

    async def _profile_round(self) -> None:
        model = self.host.current
        if model is None or not model.has("anomaly"):
            return
        (res, n), _ = self._resolutions()
        for st in list(self.meters.values()):
            start_s, window, _ = st.profile.window(n)
            if not self._enough(window):
                log.debug("%s: profile window %.0f%% covered, skipping", st.id, 100 * np.isfinite(window).mean())
                continue
            context = await self._context(st.id, start_s, res)
            result = await self._guarded(st.id, "anomaly", profile_step, self.host, window, start_s, res,
                                         counter_wh=st.profile.counters(n), context=context)
            if result is not None:
                await self._remember(st.id, start_s, res, window, result[1])
                await self.publish_result(st.id, "anomaly", result[0])

    async def _nilm_round(self) -> None:
        model = self.host.current
        if model is None or not model.has("nilm"):
            return
        _, (res, n) = self._resolutions()
        first, stop = decided_range(n, res, model.nilm_calibration.decision_lag_s)
        for st in list(self.meters.values()):
            start_s, window, _ = st.nilm.window(n)
            tracker = st.appliances
            if tracker is None or not self._enough(window):
                continue
            result = await self._guarded(st.id, "nilm", nilm_step, self.host, window, start_s, res,
                                         counter_wh=st.nilm.counters(n), owned=tracker.names)
            if result is None:
                continue
            events = tracker.add(start_s, result.decision, first, stop)
            body = {**tracker.snapshot(), "window_start_s": start_s, "window_end_s": start_s + n * res,
                    "model_version": result.model_version}
            await self.publish_result(st.id, "appliances", body)
            now_s = time.time()
            await self.enqueue([self.topics.appliance_event_message(st.id, slug(e.appliance), now_s, e.payload())
                                for e in events])
        self._save_appliance_state()

    def _save_appliance_state(self) -> None:
        trackers = {st.id: st.appliances for st in self.meters.values() if st.appliances is not None}
        if self.appliance_state is None or not trackers:
            return
        try:
            self.appliance_state.save(trackers)
        except OSError as e:
            self.appliance_spell.fail(str(e), "today's appliance energy restarts at 0 if the agent stops now")
        else:
            self.appliance_spell.ok()

    async def _forecast_round(self) -> None:
        model = self.host.current
        if model is None or not model.has("forecast"):
            return
        (res, _), _ = self._resolutions()
        n = model.tasks["forecast"].length
        for st in list(self.meters.values()):
            start_s, window, _ = st.profile.window(n)
            if not self._enough(window):
                continue
            context = await self._context(st.id, start_s, res)
            if not np.isfinite(window).all():
                if model.has("imputation") and model.has("anomaly"):
                    result = await self._guarded(st.id, "imputation", profile_step, self.host, window, start_s,
                                                 res, counter_wh=st.profile.counters(n), context=context)
                    if result is None:
                        continue
                    window = result[1]
                else:
                    window = np.nan_to_num(window, nan=float(np.nanmean(window)))
            body = await self._guarded(st.id, "forecast", forecast_step, self.host, window, start_s, res,
                                       context=context)
            if body is not None:
                await self.publish_result(st.id, "forecast", body)

    async def _quality_round(self) -> None:
        from edge.agent.quality import quality_body

        (res, n), (n_res, n_len) = self._resolutions()
        msgs = []
        for st in list(self.meters.values()):
            body = quality_body(st, n_res, n_len, self.cfg.schedule.quality_every_s)
            body.update(guard_quality(self.guards.get(st.id)))
            body["gap_fill"] = window_fill_report(st.nilm, n_len)
            if self.host.current is not None and self.host.current.has("anomaly"):
                body["anomaly_threshold_source"] = self.host.current.anomaly_threshold_source
            st.received = 0
            msgs.append(self.topics.meter_message(st.id, "quality", st.last_seq, time.time(), body))
        await self.enqueue(msgs)

    async def _report_round(self) -> None:
        from edge.agent.quality import report_body

        (res, n), _ = self._resolutions()
        msgs = []
        for st in list(self.meters.values()):
            body = report_body(st, n, self.last_results.get(st.id, {}))
            msgs.append(self.topics.meter_message(st.id, "report", st.last_seq, time.time(), body))
        await self.enqueue(msgs)

    def status_details(self) -> dict:
        lat = np.asarray(self.stats.latencies_s[-5000:]) if self.stats.latencies_s else np.zeros(0)
        store = self.store
        model = self.host.current
        return {
            "meters": len(self.meters), "committed": self.stats.committed,
            "published": self.stats.published, "errors": self.stats.errors,
            "outbox_rows": store.outbox_rows if store else 0,
            "outbox_dropped": store.dropped_total if store else 0,
            "outbox_max_rows": self.cfg.store.outbox_max_rows,
            "latency_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 1) if lat.size else None,
            "latency_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 1) if lat.size else None,
            "model_version": model.version if model else None,
            "model_backend": model.runtime.backend_name if model else None,
            "model_error": self.host.last_error or None,
            "model_swaps": self.host.swaps, "model_rollbacks": self.host.rollbacks,
            "last_error": self._last_error() or None,
            "started": iso_utc(self.stats.started_s), "uptime_s": round(time.time() - self.stats.started_s),
        }

    def _last_error(self) -> str:
        """The most recent failure of any kind: a task's, an inference's or the model's."""
        errors = [(h.last_error_s or 0.0, f"{name}: {h.last_error}")
                  for name, h in self.supervisor.tasks.items() if h.last_error]
        if self.stats.last_error:
            errors.append((self.stats.last_error_s, self.stats.last_error))
        if errors:
            return max(errors)[1]
        return self.host.last_error

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
            await self._check_store_file()
            self._write_health()
            await asyncio.sleep(HEALTH_EVERY_S)

    def _write_health(self, state: str = "running") -> None:
        try:
            write_health(health_path(self.cfg.store_path), self.health(state))
        except OSError as e:  # disk full: health still goes out on the status topic
            log.debug("could not write the health file: %s", e)

    def health(self, state: str = "running") -> Health:
        """The agent's health now (edge.agent.health; also what the status topic carries)."""
        problems: list[str] = []
        warnings: list[str] = []
        for h in self.supervisor.dead():
            problems.append(f"task {h.name} is not running ({h.state}, {h.restarts} restarts): "
                            f"{h.last_error}")
        for spell in (self.write_spell, self.ack_spell, self.appliance_spell):
            if spell.failing:
                problems.append(spell.describe())
        store = self._store_health()
        mqtt = self.publisher.health() if self.publisher is not None else MqttHealth(enabled=False)
        if self.publisher is not None:
            problems += self.publisher.problems()
        if store.outbox_dropped:
            warnings.append(f"bounded-disk policy dropped {store.outbox_dropped} outbox messages")
        model = self._model_health()
        if model.error:
            warnings.append(f"model: {model.error}")
        fallback = getattr(self.host.current.runtime, "fallback_reason", "") if self.host.current else ""
        if fallback:  # e.g. the ONNX model failed its self-check and TFLite serves
            warnings.append(f"model: {fallback}")
        warnings += guard_warnings(self.guards)
        ages = [time.time() - st.last_received_s for st in self.meters.values() if st.last_received_s]
        return Health(
            ok=not problems and state == "running", problems=problems, warnings=warnings,
            ts_s=time.time(), gateway=self.cfg.gateway.id, pid=os.getpid(), state=state,
            tasks=self.supervisor.snapshot(), store=store, mqtt=mqtt, model=model,
            committed=self.stats.committed, last_reading_age_s=round(min(ages), 3) if ages else None,
            readings_guarded=guard_totals(self.guards))

    def _store_health(self) -> StoreHealth:
        store, spell = self.store, self.write_spell
        waiting = self._queue.qsize() + len(self._batch or [])
        if store is None:
            return StoreHealth(str(self.cfg.store_path), readings_waiting=waiting)
        return StoreHealth(
            path=str(store.path), epoch=store.epoch, created_s=store.created_s,
            write_error=spell.last_error if spell.failing else "",
            write_failing_since_s=spell.since_s, readings_waiting=waiting,
            outbox_rows=store.outbox_rows, outbox_dropped=store.dropped_total,
            refused_held=store.held_rows, recovered=list(self.store_events))

    def _model_health(self) -> ModelHealth:
        model = self.host.current
        return ModelHealth(
            version=model.version if model else None,
            backend=model.runtime.backend_name if model else None,
            error=self.host.last_error or None, swaps=self.host.swaps, rollbacks=self.host.rollbacks,
            signature=model.signature if model else "")
