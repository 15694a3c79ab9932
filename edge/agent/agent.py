"""The asyncio agent: sources -> store -> resampling -> quality/gaps -> inference -> outbox -> MQTT.

Tasks (all in one event loop; SQLite on its own thread, the models on another)::

    reader(meter) x N --queue--> writer --commit (readings + reading messages)--> resamplers
    pump: outbox -> paho -> PUBACK -> delete           schedulers: profile / nilm / forecast /
    watcher: bundle hot update                         quality / report / status / retention
    watchdog: sd_notify WATCHDOG=1 only while writer and pump make progress

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

from edge.agent.config import AgentConfig
from edge.agent.inference import (
    ModelHost,
    forecast_step,
    nilm_step,
    open_model,
    profile_step,
)
from edge.agent.messages import Topics
from edge.agent.mqtt import MqttPublisher
from edge.agent.notify import Notifier
from edge.agent.resample import Resampler
from edge.agent.store import Message, ReadingStore, StoredReading
from edge.agent.watch import BundleWatcher
from firmware_bridge.reading import Reading

log = logging.getLogger(__name__)

DEFAULT_PROFILE = (1800.0, 48)  # resolution_s, L when no model says otherwise
DEFAULT_NILM = (10.0, 256)


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
                                                precision=cfg.model.precision, threads=cfg.model.threads))
        self.meters: dict[str, MeterState] = {}
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
                            Resampler(n_res, n_len + 2))
            seq, ts, rx = known.get(mid, (0, None, None))
            st.last_seq, st.last_ts_s, st.last_received_s = seq, ts or 0.0, rx or 0.0
            ref_s = max(now_s, st.last_ts_s)
            for k, s, c in await self.db(self.store.bins, mid, p_res, ref_s - (2 * p_len + 2) * p_res):
                st.profile.add_bin(int(k), s, c)
            for k, s, c in await self.db(self.store.bins, mid, n_res, ref_s - (n_len + 2) * n_res):
                st.nilm.add_bin(int(k), s, c)
            states[mid] = st
        self.meters = states

    # --- run ----------------------------------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        cfg = self.cfg
        self.store = await self.db(partial(
            ReadingStore, cfg.store_path, synchronous=cfg.store.synchronous,
            outbox_max_rows=cfg.store.outbox_max_rows, outbox_max_mb=cfg.store.outbox_max_mb))
        watcher = None
        if cfg.model.bundle:
            watcher = BundleWatcher(cfg.model.bundle, self.host, self.infer, self._on_model_swap)
            await watcher.check(initial=True)
        await self._build_meter_states()
        if cfg.mqtt.enabled:
            self.publisher = MqttPublisher(cfg.mqtt, self.topics, cfg.client_id,
                                           on_ha_online=self._ha_online_threadsafe)
            self.publisher.wakeup = self._wake_threadsafe
            self.publisher.start()
            await self._enqueue_discovery()
        tasks = [asyncio.create_task(self._reader(mid, src), name=f"reader-{mid}")
                 for mid, src in self.sources.items()]
        core = [asyncio.create_task(self._writer(), name="writer")]
        if self.publisher is not None:
            core.append(asyncio.create_task(self._pump(), name="pump"))
        sched = cfg.schedule
        periodic = [
            (sched.profile_every_s, self._profile_round), (sched.nilm_every_s, self._nilm_round),
            (sched.forecast_every_s, self._forecast_round), (sched.quality_every_s, self._quality_round),
            (sched.report_every_s, self._report_round), (sched.status_every_s, self._status_round),
            (3600.0, self._retention_round),
        ]
        aux = [asyncio.create_task(self._every(p, fn), name=fn.__name__) for p, fn in periodic]
        if watcher is not None:
            aux.append(asyncio.create_task(self._every(cfg.model.watch_interval_s, watcher.check),
                                           name="bundle-watch"))
        aux.append(asyncio.create_task(self._watchdog(), name="watchdog"))
        self.notifier.ready(f"{len(self.sources)} meters, model "
                            f"{self.host.current.version if self.host.current else 'none'}")
        self.ready.set()
        log.info("agent %s running: %d meters, store %s", cfg.gateway.id, len(self.sources), cfg.store_path)
        await self._stop.wait()
        await self._shutdown(tasks, core, aux)
        return 0

    async def _shutdown(self, readers: list, core: list, aux: list) -> None:
        self.notifier.stopping()
        log.info("stopping: committing what was received and flushing the outbox")
        for t in readers + aux:
            t.cancel()
        await asyncio.gather(*readers, *aux, return_exceptions=True)
        await self._queue.put(None)  # type: ignore[arg-type]  # sentinel: the writer drains and exits
        await core[0]
        if self.publisher is not None:
            deadline = time.monotonic() + self.shutdown_flush_s
            while (self.store.outbox_rows > 0 and self.publisher.connected.is_set()
                   and time.monotonic() < deadline):
                self._wake.set()
                await asyncio.sleep(0.05)
            core[1].cancel()
            await asyncio.gather(core[1], return_exceptions=True)
            await self._ack_pending()
            await asyncio.get_running_loop().run_in_executor(None, self.publisher.stop)
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
                    await self._queue.put(r)
                log.warning("source %s ended; restarting it in 1 s", meter_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("source %s failed; restarting it in 1 s", meter_id)
            await asyncio.sleep(1.0)

    async def _writer(self) -> None:
        """Batch readings into commits; a reading is received once its commit returns."""
        batch_max, interval_s = self.cfg.store.batch_max, self.cfg.store.batch_interval_s
        done = False
        while not done:
            self.stats.writer_tick_s = time.monotonic()
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout=1.0)
            except TimeoutError:
                continue
            if first is None:
                break
            batch = [first]
            if self._queue.qsize() < batch_max:
                await asyncio.sleep(interval_s)
            while len(batch) < batch_max and not self._queue.empty():
                r = self._queue.get_nowait()
                if r is None:
                    done = True
                    break
                batch.append(r)
            builder = (partial(self.topics.reading_messages,
                               max_per_message=self.cfg.mqtt.max_readings_per_message)
                       if self.publisher is not None else None)
            while True:
                try:
                    stored = await self.db(self.store.commit_readings, batch, builder)
                    break
                except Exception:  # disk full, I/O error: keep the batch, retry, let the watchdog see it
                    self.stats.errors += 1
                    log.exception("commit of %d readings failed; retrying in 1 s", len(batch))
                    await asyncio.sleep(1.0)
            self.stats.committed += len(stored)
            self.stats.note_commit(stored)
            self._publish_fresh(self.store.fresh if builder is not None else [])
            self._after_commit(stored)
            self._wake.set()

    def _after_commit(self, stored: list[StoredReading]) -> None:
        for s in stored:
            r = s.reading
            st = self.meters.get(r.meter_id)
            if st is None:
                continue
            st.profile.add(r.ts_s, r.power_w)
            st.nilm.add(r.ts_s, r.power_w)
            st.received += 1
            st.flags_seen |= int(r.flags)
            st.last_seq, st.last_ts_s, st.last_received_s = s.seq, r.ts_s, r.received_s

    # --- publishing ------------------------------------------------------------------------------

    def _publish_fresh(self, fresh: list[Message]) -> None:
        """Hand the messages of a commit straight to paho when the pump has caught up with the
        outbox (saves a round trip through the store thread); otherwise the pump sends them."""
        pub = self.publisher
        if (not fresh or pub is None or fresh[0].id != self._pump_last_id + 1
                or not pub.connected.is_set() or pub.inflight + len(fresh) > self.pump_window):
            return
        for m in fresh:
            if not pub.publish(m):
                return
            self._pump_last_id = m.id

    async def _pump(self) -> None:
        """Outbox -> paho while connected; delete on PUBACK."""
        pub = self.publisher
        while True:
            self.stats.pump_tick_s = time.monotonic()
            self._wake.clear()
            acks = pub.drain_acks()
            room = self.pump_window - pub.inflight if pub.connected.is_set() else 0
            msgs = []
            if acks or room > 0:
                msgs = await self.db(self.store.ack_and_fetch, [a.outbox_id for a in acks],
                                     self._pump_last_id, room)
                self._note_acks(acks)
            for m in msgs:
                if m.id <= self._pump_last_id:  # already sent by _publish_fresh meanwhile
                    continue
                if not pub.publish(m):
                    break
                self._pump_last_id = m.id
            if msgs and len(msgs) == room:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.5)

    async def _ack_pending(self) -> None:
        acks = self.publisher.drain_acks()
        if acks:
            await self.db(self.store.acknowledge, [a.outbox_id for a in acks])
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
        await self.db(self.store.enqueue, messages)
        self._wake.set()

    async def _enqueue_discovery(self) -> None:
        if not self.cfg.mqtt.discovery:
            return
        model = self.host.current
        apps = model.appliances if model and model.has("nilm") else ()
        version = model.version if model else ""
        msgs = []
        for m in self.cfg.meters:
            if m.id in self.sources:
                msgs += self.topics.discovery(m.id, m.name, apps, version,
                                              with_energy=bool(m.options.get("energy", True)))
        await self.enqueue(msgs)

    def _ha_online_threadsafe(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._enqueue_discovery(), self._loop)

    async def _on_model_swap(self) -> None:
        await self._build_meter_states()
        if self.publisher is not None:
            await self._enqueue_discovery()
            await self._status_round()

    # --- schedules --------------------------------------------------------------------------------

    async def _every(self, period_s: float, fn: Callable) -> None:
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
            except Exception:
                self.stats.errors += 1
                log.exception("%s failed; next try in %.0f s", getattr(fn, "__name__", fn), period_s)

    async def _guarded(self, meter_id: str, task: str, fn: Callable, *args: Any) -> Any:
        """Run one inference step; a failure is logged and counted, the other meters still run."""
        try:
            return await self.infer(fn, *args)
        except Exception as e:
            self.stats.errors += 1
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
            result = await self._guarded(st.id, "anomaly", profile_step, self.host, window, start_s, res)
            if result is not None:
                await self.publish_result(st.id, "anomaly", result[0])

    async def _nilm_round(self) -> None:
        model = self.host.current
        if model is None or not model.has("nilm"):
            return
        _, (res, n) = self._resolutions()
        for st in list(self.meters.values()):
            start_s, window, _ = st.nilm.window(n)
            if not self._enough(window):
                continue
            body = await self._guarded(st.id, "nilm", nilm_step, self.host, window, start_s, res)
            if body is not None:
                await self.publish_result(st.id, "appliances", body)

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
            if not np.isfinite(window).all():
                if model.has("imputation") and model.has("anomaly"):
                    result = await self._guarded(st.id, "imputation", profile_step, self.host, window, start_s, res)
                    if result is None:
                        continue
                    window = result[1]
                else:
                    window = np.nan_to_num(window, nan=float(np.nanmean(window)))
            body = await self._guarded(st.id, "forecast", forecast_step, self.host, window, start_s, res)
            if body is not None:
                await self.publish_result(st.id, "forecast", body)

    async def _quality_round(self) -> None:
        from edge.agent.quality import quality_body

        (res, n), (n_res, n_len) = self._resolutions()
        msgs = []
        for st in list(self.meters.values()):
            body = quality_body(st, n_res, n_len, self.cfg.schedule.quality_every_s)
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
        }

    async def _status_round(self) -> None:
        if self.publisher is None:
            return
        details = self.status_details()
        if details["outbox_dropped"]:
            log.warning("bounded-disk policy applied: %d outbox messages dropped so far",
                        details["outbox_dropped"])
        self.publisher.publish_direct(self.topics.status, self.topics.status_payload("online", **details))
        self.notifier.status(json.dumps({k: details[k] for k in ("committed", "published", "outbox_rows")}))

    async def _retention_round(self) -> None:
        cutoff = time.time() - self.cfg.store.retention_days * 86400
        n = await self.db(self.store.prune_readings, cutoff)
        if n:
            log.info("retention: pruned %d readings older than %.0f days", n, self.cfg.store.retention_days)

    # --- watchdog ---------------------------------------------------------------------------------

    def healthy(self, now_s: float | None = None, limit_s: float = 10.0) -> bool:
        """Writer and pump made progress recently (they tick at least every second when idle)."""
        now_s = time.monotonic() if now_s is None else now_s
        if now_s - self.stats.writer_tick_s > limit_s:
            return False
        return not (self.publisher is not None and now_s - self.stats.pump_tick_s > limit_s)

    async def _watchdog(self) -> None:
        interval_s = self.notifier.watchdog_interval_s
        if interval_s is None:
            return
        limit_s = max(3.0, 2 * interval_s)  # writer/pump tick at least every 1 s when idle
        while True:
            await asyncio.sleep(interval_s)
            if self.healthy(limit_s=limit_s):
                self.notifier.watchdog()
            else:
                log.error("pipeline stalled (writer or publisher not progressing): withholding the "
                          "watchdog ping so systemd restarts the agent")
