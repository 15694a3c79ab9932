"""The durable store: every reading and every outgoing MQTT message, in one SQLite file (WAL).

Guarantees
----------
* A reading counts as received only once the transaction that inserts it is committed. The same
  transaction assigns its per-meter sequence number (``seq``, 1, 2, 3, ... without holes) and puts
  its MQTT message in the outbox, so a reading is never published without being stored and never
  stored without being queued for publication.
* Outbox rows are deleted only after the broker acknowledged them (PUBACK for QoS 1). After a crash
  or a broker outage the outbox is simply published again; a subscriber may see a message twice
  (QoS 1 allows that) and recognises the duplicate by ``meter`` + ``seq``.
* ``synchronous=FULL`` (default in the example config) makes a commit survive power loss; ``NORMAL``
  survives a process crash (kill -9) but a power cut may roll back the last commits, with far fewer
  SD-card writes. Either way the database stays consistent (WAL).

What a reading keeps
--------------------
Every field of :class:`~firmware_bridge.reading.Reading` (the tables and the row mapping:
``edge.agent.store_schema``). Schema 3 added ``detail``, schema 4 the anomaly score tables
(``edge.agent.anomaly_scores``); a store of schema 1 to 3 is migrated when it opens, all steps in
one transaction (its older rows keep NULL in ``detail``: those groups were never stored).

Store epoch
-----------
A store gets a random ``epoch`` (12 hex digits) when it is created. Every message carries it next
to ``seq``: a lost, deleted or corrupt store that is started afresh restarts ``seq`` at 1 under a
new epoch, so a subscriber tells new data from a replay by ``(meter, epoch, seq)``, never by
``seq`` alone (deploy/README.md, "What it publishes").

Held messages
-------------
An outbox row whose publish the broker refused (an MQTT 5 PUBACK reason code >= 0x80, e.g. an
ACL) is *held*: ``held_rc`` holds the reason code, ``pending`` skips it, nothing deletes it but an
acknowledgement or the bounded-disk policy. ``release_held`` puts held rows back in line (at the
end of the outbox, in their order) when the broker accepts their topic again.

Damage
------
A file SQLite reports as corrupt (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``) raises
:class:`StoreCorruptError`. ``edge.agent.store_files.open_store`` then moves it (with its ``-wal``/``-shm``) aside as
``<name>.corrupt-<UTC time>`` and starts a fresh store under a new epoch. After a shutdown that was
not clean (kill -9, power loss) the store runs ``PRAGMA quick_check`` when it opens.

Bounded-disk policy
-------------------
The outbox is capped at ``outbox_max_rows`` messages and ``outbox_max_mb`` of payload. When a cap
is exceeded (a broker unreachable for days), the *oldest* outbox messages are dropped until the
outbox is at 90 % of the cap. Readings themselves stay in the ``readings`` table (they are only
pruned after ``retention_days``), so history is kept and only its live publication is lost; the
subscriber sees the hole in ``seq``. Every drop is counted in the ``state`` table, logged at
WARNING and reported on the gateway status topic (``outbox_dropped``, ``outbox_dropped_last_s``).
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge.agent.store_schema import (
    ANOMALY_SCORES_SCHEMA,
    READING_COLUMNS,
    READING_SELECT,
    SCHEMA,
    SCHEMA_VERSION,
    reading_from_row,
    reading_row,
)
from edge.errors import AgentError
from firmware_bridge.guard import MODEL_EXCLUDED
from firmware_bridge.reading import Reading

log = logging.getLogger(__name__)

SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26


class StoreError(AgentError, RuntimeError):
    """The store cannot be opened or written."""


class StoreCorruptError(StoreError):
    """SQLite reports the store file as damaged (not a database, malformed image)."""


def _store_error(what: str, e: sqlite3.Error) -> StoreError:
    """A StoreError for a sqlite3 error, StoreCorruptError when SQLite says the file is damaged."""
    code = getattr(e, "sqlite_errorcode", 0) & 0xFF
    cls = StoreCorruptError if code in (SQLITE_CORRUPT, SQLITE_NOTADB) else StoreError
    return cls(f"{what}: {e}")


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message to send (or in the outbox, with its row ``id``)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    id: int = 0
    created_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StoredReading:
    seq: int
    reading: Reading


@dataclass(frozen=True, slots=True)
class Commit:
    """What one ``commit_readings`` stored: the readings with their ``seq`` and the outbox messages
    with their row ids (contiguous, oldest first), for the caller to publish at once."""

    readings: list[StoredReading]
    messages: list[Message]


# Builds the outbox message(s) of the stored readings of ONE meter in one commit (oldest first).
MessageBuilder = Callable[[Sequence["StoredReading"]], Sequence[Message]]


class ReadingStore:
    """SQLite WAL store. Not thread-safe: use it from one thread (the agent gives it its own)."""

    def __init__(self, path: str | Path, *, synchronous: str = "full", outbox_max_rows: int = 200_000,
                 outbox_max_mb: float = 256.0):
        self.path = Path(path)
        self.outbox_max_rows = outbox_max_rows
        self.outbox_max_bytes = int(outbox_max_mb * 1e6)
        self.db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store directory {self.path.parent}: {e.strerror}") from e
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.executescript(SCHEMA)
            self._check_schema()
            self._check_after_crash()
            self._last_seq = dict(self.db.execute("SELECT meter_id, last_seq FROM meters"))
            self.outbox_rows, self.outbox_bytes = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
            self.held_rows = self.db.execute(
                "SELECT COUNT(*) FROM outbox WHERE held_rc IS NOT NULL").fetchone()[0]
            self.dropped_total = int(self.get_state("outbox_dropped", "0"))
            self.epoch = self.get_state("epoch")
            self.created_s = float(self.get_state("created_s", "0"))
        except sqlite3.Error as e:
            if self.db is not None:
                self.db.close()
            raise _store_error(f"cannot open the store {self.path}", e) from e

    def _check_schema(self) -> None:
        """Stamp a new store (version, epoch) or migrate an older one; refuse a newer one."""
        row = self.db.execute("SELECT value FROM state WHERE key='schema_version'").fetchone()
        if row is None:
            with self._transaction():
                self.set_state("schema_version", str(SCHEMA_VERSION))
                self.set_state("epoch", secrets.token_hex(6))
                self.set_state("created_s", repr(time.time()))
                for ddl in ANOMALY_SCORES_SCHEMA:
                    self.db.execute(ddl)
            return
        version = int(row[0])
        if version > SCHEMA_VERSION or version < 1:
            raise StoreError(f"store schema version {version}, this agent expects {SCHEMA_VERSION}")
        if version == SCHEMA_VERSION:
            return
        with self._transaction():  # step by step, all steps in one transaction
            if version < 2:  # held outbox rows, store epoch
                self.db.execute("ALTER TABLE outbox ADD COLUMN held_rc INTEGER")
                self.set_state("epoch", secrets.token_hex(6))
                self.set_state("created_s", repr(time.time()))
            if version < 3:  # the Reading's typed groups (older rows keep NULL: they had none stored)
                self.db.execute("ALTER TABLE readings ADD COLUMN detail TEXT")
            if version < 4:  # each meter's anomaly scores and refitted threshold (restarts keep them)
                for ddl in ANOMALY_SCORES_SCHEMA:
                    self.db.execute(ddl)
            self.set_state("schema_version", str(SCHEMA_VERSION))
        log.info("store %s migrated from schema %d to %d", self.path, version, SCHEMA_VERSION)

    def _check_after_crash(self) -> None:
        """``PRAGMA quick_check`` when the last run did not close the store (kill -9, power loss)."""
        if self.get_state("open", "0") == "1":
            result = [r[0] for r in self.db.execute("PRAGMA quick_check(5)")]
            if result != ["ok"]:
                raise StoreCorruptError(f"store {self.path} failed its check after an unclean "
                                        f"shutdown: {'; '.join(result)}")
        self.set_state("open", "1")

    def close(self) -> None:
        try:
            self.set_state("open", "0")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:  # still close; the WAL is replayed on the next open
            log.warning("WAL checkpoint on close failed: %s", e)
        self.db.close()

    def file_identity(self) -> tuple[int, int] | None:
        """(device, inode) of the store file now, None when it is gone (deleted while open)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def restore_to(self, path: str | Path) -> None:
        """Copy this (open) database to ``path`` with SQLite's online backup: how a store file
        deleted while the agent runs is written back whole from the still-open connection."""
        target = sqlite3.connect(path)
        try:
            self.db.backup(target)
        except sqlite3.Error as e:
            raise _store_error(f"restoring the store to {path}", e) from e
        finally:
            target.close()

    # --- readings ---------------------------------------------------------------------------

    def commit_readings(self, readings: Iterable[Reading], build_messages: MessageBuilder | None = None,
                        ) -> Commit:
        """Insert readings and their outbox messages in ONE transaction; return both (``Commit``:
        the readings with ``seq``, the messages with their outbox ids).

        Only after this returns do the readings count as received.
        """
        stored: list[StoredReading] = []
        rows, out_rows = [], []
        next_seq = dict(self._last_seq)
        for r in readings:
            seq = next_seq.get(r.meter_id, 0) + 1
            next_seq[r.meter_id] = seq
            stored.append(StoredReading(seq, r))
            rows.append(reading_row(r, seq))
        if not rows:
            return Commit(stored, [])
        by_meter: dict[str, list[StoredReading]] = {}
        for s in stored:
            by_meter.setdefault(s.reading.meter_id, []).append(s)
        last = {m: group[-1] for m, group in by_meter.items()}
        if build_messages is not None:
            for group in by_meter.values():
                for m in build_messages(group):
                    out_rows.append((m.topic, m.payload, m.qos, int(m.retain), m.created_s))
        try:
            with self._transaction():
                self.db.executemany("INSERT INTO readings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                self.db.executemany(
                    "INSERT INTO meters (meter_id, last_seq, last_ts_s, last_received_s) VALUES (?,?,?,?) "
                    "ON CONFLICT(meter_id) DO UPDATE SET last_seq=excluded.last_seq, "
                    "last_ts_s=excluded.last_ts_s, last_received_s=excluded.last_received_s",
                    [(m, s.seq, s.reading.ts_s, s.reading.received_s) for m, s in last.items()])
                self.db.executemany(
                    "INSERT INTO outbox (topic, payload, qos, retain, created_s) VALUES (?,?,?,?,?)", out_rows)
                last_id = self.db.execute("SELECT last_insert_rowid()").fetchone()[0] if out_rows else 0
        except sqlite3.Error as e:
            raise _store_error(f"committing {len(rows)} readings failed", e) from e
        self._last_seq = next_seq
        # one writer, one transaction: the new outbox ids are contiguous and end at last_id
        first_id = last_id - len(out_rows) + 1
        messages = [Message(t, p, q, bool(r), first_id + i, c) for i, (t, p, q, r, c) in enumerate(out_rows)]
        self.outbox_rows += len(out_rows)
        self.outbox_bytes += sum(len(o[1]) for o in out_rows)
        self.enforce_outbox_bounds()
        return Commit(stored, messages)

    def _transaction(self):
        db = self.db

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, exc, tb):
                if exc_type is None:
                    db.execute("COMMIT")
                elif db.in_transaction:
                    db.execute("ROLLBACK")
                return False

        return _Tx()

    def last_seq(self, meter_id: str) -> int:
        return self._last_seq.get(meter_id, 0)

    def meters(self) -> list[tuple[str, int, float | None, float | None]]:
        """(meter_id, last_seq, last_ts_s, last_received_s) of every meter seen."""
        return list(self.db.execute("SELECT meter_id, last_seq, last_ts_s, last_received_s FROM meters"))

    def readings_since(self, meter_id: str, since_ts_s: float, until_ts_s: float = float("inf"),
                       ) -> list[StoredReading]:
        rows = self.db.execute(
            f"SELECT seq, {READING_SELECT} FROM readings WHERE meter_id=? AND ts_s>=? AND ts_s<? "
            "ORDER BY ts_s", (meter_id, since_ts_s, until_ts_s))
        return [StoredReading(row[0], reading_from_row(meter_id, row[1:])) for row in rows]

    def bins(self, meter_id: str, resolution_s: float, since_ts_s: float) -> list[tuple[int, float, float]]:
        """(bin index, sum of power_w, count) per ``resolution_s`` bin since ``since_ts_s`` (warm
        start); readings flagged ``MODEL_EXCLUDED`` (a far-off meter clock) stay out."""
        return list(self.db.execute(
            "SELECT CAST(ts_s / ? AS INTEGER) AS k, SUM(power_w), COUNT(power_w) FROM readings "
            "WHERE meter_id=? AND ts_s>=? AND power_w IS NOT NULL AND (flags & ?) = 0 GROUP BY k",
            (resolution_s, meter_id, since_ts_s, int(MODEL_EXCLUDED))))

    def counter_bins(self, meter_id: str, resolution_s: float, since_ts_s: float,
                     ) -> list[tuple[int, float, float]]:
        """(bin index, ts_s, net counter Wh) of the newest counter reading per ``resolution_s``
        bin since ``since_ts_s``; net = import_wh - export_wh (export 0 where not read)."""
        # SQLite: with MAX() the bare columns come from the row holding the maximum
        return list(self.db.execute(
            "SELECT CAST(ts_s / ? AS INTEGER) AS k, MAX(ts_s), import_wh - COALESCE(export_wh, 0) "
            "FROM readings WHERE meter_id=? AND ts_s>=? AND import_wh IS NOT NULL AND (flags & ?) = 0 "
            "GROUP BY k", (resolution_s, meter_id, since_ts_s, int(MODEL_EXCLUDED))))

    def last_value(self, meter_id: str, column: str) -> tuple[float, float] | None:
        """(value, ts_s) of the newest reading of ``meter_id`` with ``column`` set, or None."""
        if column not in READING_COLUMNS:
            raise ValueError(f"unknown reading column {column!r}; known: {READING_COLUMNS}")
        row = self.db.execute(
            f"SELECT {column}, ts_s FROM readings WHERE meter_id=? AND {column} IS NOT NULL "
            "ORDER BY seq DESC LIMIT 1", (meter_id,)).fetchone()
        return None if row is None else (float(row[0]), float(row[1]))

    def prune_readings(self, older_than_s: float) -> int:
        """Delete readings with ``ts_s`` before ``older_than_s`` (retention); returns the count."""
        try:
            with self._transaction():
                cur = self.db.execute("DELETE FROM readings WHERE ts_s < ?", (older_than_s,))
        except sqlite3.Error as e:
            raise _store_error("pruning old readings failed", e) from e
        return cur.rowcount

    # --- outbox -------------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[Message]) -> None:
        """Queue messages that are not tied to a reading (quality, anomaly, forecast, ...)."""
        now_s = time.time()
        try:
            with self._transaction():
                self.db.executemany(
                    "INSERT INTO outbox (topic, payload, qos, retain, created_s) VALUES (?,?,?,?,?)",
                    [(m.topic, m.payload, m.qos, int(m.retain), m.created_s or now_s) for m in messages])
        except sqlite3.Error as e:
            raise _store_error(f"queueing {len(messages)} messages failed", e) from e
        self.outbox_rows += len(messages)
        self.outbox_bytes += sum(len(m.payload) for m in messages)
        self.enforce_outbox_bounds()

    def pending(self, after_id: int, limit: int) -> list[Message]:
        """Outbox messages with id > after_id that are not held, oldest first."""
        try:
            rows = self.db.execute(
                "SELECT id, topic, payload, qos, retain, created_s FROM outbox "
                "WHERE id>? AND held_rc IS NULL ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        except sqlite3.Error as e:
            raise _store_error("reading the outbox failed", e) from e
        return [Message(t, bytes(p), q, bool(r), i, c) for i, t, p, q, r, c in rows]

    def acknowledge(self, ids: Sequence[int]) -> None:
        """Delete acknowledged (PUBACKed) messages."""
        if not ids:
            return
        try:
            with self._transaction():
                sizes = self.db.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)),0) FROM outbox WHERE id IN "
                    f"({','.join('?' * len(ids))})", list(ids)).fetchone()
                self.db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])
        except sqlite3.Error as e:
            raise _store_error(f"deleting {len(ids)} acknowledged messages failed", e) from e
        self.outbox_rows -= sizes[0]
        self.outbox_bytes -= sizes[1]

    def hold(self, held: Sequence[tuple[int, int]]) -> None:
        """Mark outbox rows (id, reason code) as refused by the broker: kept, not sent again."""
        if not held:
            return
        try:
            with self._transaction():
                cur = self.db.executemany("UPDATE outbox SET held_rc=? WHERE id=? AND held_rc IS NULL",
                                          [(rc, i) for i, rc in held])
        except sqlite3.Error as e:
            raise _store_error(f"holding {len(held)} refused messages failed", e) from e
        self.held_rows += max(0, cur.rowcount)

    def release_held(self, topic: str, limit: int | None = None) -> int:
        """Put held rows of ``topic`` (the oldest ``limit``, default all) back in line at the end
        of the outbox, in their order; returns how many."""
        try:
            with self._transaction():
                ids = [r[0] for r in self.db.execute(
                    "SELECT id FROM outbox WHERE held_rc IS NOT NULL AND topic=? ORDER BY id LIMIT ?",
                    (topic, -1 if limit is None else limit))]
                marks = ",".join("?" * len(ids))
                self.db.execute(
                    f"INSERT INTO outbox (topic, payload, qos, retain, created_s) SELECT topic, payload, "
                    f"qos, retain, created_s FROM outbox WHERE id IN ({marks}) ORDER BY id", ids)
                self.db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", ids)
        except sqlite3.Error as e:
            raise _store_error(f"releasing held messages of {topic} failed", e) from e
        self.held_rows -= len(ids)
        return len(ids)

    def held_topics(self) -> dict[str, int]:
        """topic -> reason code of every topic with held rows (restored after a restart)."""
        return dict(self.db.execute(
            "SELECT topic, MAX(held_rc) FROM outbox WHERE held_rc IS NOT NULL GROUP BY topic"))

    def ack_and_fetch(self, ack_ids: Sequence[int], after_id: int, limit: int,
                      held: Sequence[tuple[int, int]] = ()) -> list[Message]:
        """``acknowledge``, ``hold`` and ``pending`` in one call (one hop to the store thread per
        pump cycle)."""
        self.acknowledge(ack_ids)
        self.hold(held)
        return self.pending(after_id, limit) if limit > 0 else []

    def enforce_outbox_bounds(self) -> int:
        """Apply the bounded-disk policy (module docstring); returns how many messages were dropped."""
        if self.outbox_rows <= self.outbox_max_rows and self.outbox_bytes <= self.outbox_max_bytes:
            return 0
        target_rows = int(self.outbox_max_rows * 0.9)
        target_bytes = int(self.outbox_max_bytes * 0.9)
        drop_rows = max(0, self.outbox_rows - target_rows)
        if self.outbox_bytes > target_bytes and self.outbox_rows:
            per_row = self.outbox_bytes / self.outbox_rows
            drop_rows = max(drop_rows, int((self.outbox_bytes - target_bytes) / per_row) + 1)
        try:
            with self._transaction():
                cut = self.db.execute("SELECT id FROM outbox ORDER BY id LIMIT 1 OFFSET ?",
                                      (drop_rows - 1,)).fetchone()
                if cut is None:
                    return 0
                cur = self.db.execute("DELETE FROM outbox WHERE id <= ?", (cut[0],))
                dropped = cur.rowcount
                total = self.dropped_total + dropped
                self.set_state("outbox_dropped", str(total))
                self.set_state("outbox_dropped_last_s", repr(time.time()))
            self.outbox_rows, self.outbox_bytes, self.held_rows = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), "
                "COUNT(held_rc) FROM outbox").fetchone()
        except sqlite3.Error as e:
            raise _store_error("applying the outbox bound failed", e) from e
        self.dropped_total = total
        log.warning("outbox over its bound (%d rows max, %.0f MB max): dropped the %d oldest messages "
                    "(%d dropped in total); the readings stay in the store", self.outbox_max_rows,
                    self.outbox_max_bytes / 1e6, dropped, total)
        return dropped

    # --- small key/value state ------------------------------------------------------------------

    def get_state(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO state VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, value))

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]
