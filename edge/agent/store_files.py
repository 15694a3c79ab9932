"""The store as a file: opened with recovery from damage, moved aside, read without the agent.

A file SQLite reports as corrupt raises :class:`~edge.agent.store.StoreCorruptError`;
:func:`open_store` then moves it (with its ``-wal``/``-shm``) aside as ``<name>.corrupt-<UTC
time>`` and starts a fresh store under a new epoch. :func:`last_reading_age_s` opens a store
read-only for the health check, while the agent may be writing it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from edge.agent.store import ReadingStore, StoreCorruptError, StoreError

log = logging.getLogger(__name__)


def last_reading_age_s(path: str | Path, now_s: float | None = None) -> float | None:
    """Age of the newest received reading in a store, opened read-only (the health check).

    Returns None when the store holds no reading yet.
    """
    uri = f"file:{Path(path).resolve()}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            row = db.execute("SELECT MAX(last_received_s) FROM meters").fetchone()
        finally:
            db.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the store {path}: {e}") from e
    if row is None or row[0] is None:
        return None
    return (time.time() if now_s is None else now_s) - row[0]


def move_aside(path: str | Path, now_s: float | None = None) -> Path:
    """Rename a damaged store (and its -wal/-shm/-journal) to ``<name>.corrupt-<UTC time>``.

    The files are kept for inspection (``sqlite3 <file> .recover`` may still get data out of them);
    nothing deletes them. Returns the new path of the database file.
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now_s is None else now_s))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    for suffix in ("", "-wal", "-shm", "-journal"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{target}{suffix}"))
    return target


def open_store(path: str | Path, **kwargs) -> tuple[ReadingStore, dict | None]:
    """Open the store; a damaged one is moved aside (:func:`move_aside`) and a fresh one started.

    Returns the store and, after such a recovery, the event to log and publish: ``{"event":
    "store_recovered", "reason", "moved_to", "at_s", "epoch"}`` (``epoch`` of the new store).
    Raises :class:`StoreError` when not even a fresh store can be opened (directory not writable,
    disk full): the agent then exits with code 3.
    """
    path = Path(path)
    try:
        return ReadingStore(path, **kwargs), None
    except StoreCorruptError as e:
        reason = str(e)
    moved = move_aside(path)
    store = ReadingStore(path, **kwargs)
    log.error("store %s is damaged (%s): moved it aside to %s and started a fresh store (epoch %s); "
              "readings not yet published from the old store are in that file", path, reason,
              moved.name, store.epoch)
    return store, {"event": "store_recovered", "reason": reason, "moved_to": str(moved),
                   "at_s": time.time(), "epoch": store.epoch}
