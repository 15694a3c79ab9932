"""Each meter's anomaly scores in the agent's SQLite store, so a restart keeps its recalibration.

A meter's own threshold (``edge.agent.meter_thresholds``) is refitted from the daily maxima of its
window scores once it has ``recalibrate_after_days`` of them. Those maxima are all the refit reads
(``edge.calibration.recalibrate``), so the store keeps one row per meter and UTC day (the day's
highest window logit and how many window scores it folds), not every window: 60 rows per meter at
most (``MeterThreshold.history_days``; older days are deleted as new ones come), plus the meter's
last refitted threshold with the day it was fitted through.

Every row names the anomaly model that scored it (``model_id``: the sha256 of the anomaly task's
graphs, ``anomaly_model_id``). Scores of another model are not comparable (another scale, another
spread): loading the scores of the live model deletes the others' rows in the same transaction and
says per meter how many days went (the quality message shows it). A bundle whose anomaly graphs are
unchanged (a relabelled or re-signed bundle, another task retrained) keeps them.

Tables: ``anomaly_day_max`` and ``anomaly_threshold`` (``edge.agent.store_schema``, schema 4).
Call these functions on the store's thread (``Agent.db``); failures raise ``StoreError``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from edge.agent.store import ReadingStore, StoreError


@dataclass
class StoredScores:
    """What the store holds for one anomaly model (``model_id``)."""

    model_id: str
    days: dict[str, dict[int, tuple[float, int]]] = field(default_factory=dict)  # meter -> day -> (max, n)
    fits: dict[str, tuple[int, dict | None]] = field(default_factory=dict)  # meter -> (through day, fit)
    dropped: dict[str, int] = field(default_factory=dict)  # meter -> days of other models deleted


@dataclass
class ScoreUpdate:
    """Rows to write after a profile round: changed days and new fits, per meter."""

    days: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)  # (meter, day) -> (max, n)
    fits: dict[str, tuple[int, dict | None]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.days or self.fits)


@contextmanager
def _transaction(store: ReadingStore, what: str) -> Iterator[sqlite3.Connection]:
    db = store.db
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as e:
        raise StoreError(f"{what} in {store.path}: {e}") from e


def load_scores(store: ReadingStore, model_id: str) -> StoredScores:
    """The stored day maxima and fits of ``model_id``; rows of any other model are deleted (in the
    same transaction) and counted per meter in ``dropped``."""
    out = StoredScores(model_id)
    with _transaction(store, "loading the meters' anomaly scores") as db:
        out.dropped = dict(db.execute("SELECT meter_id, COUNT(*) FROM anomaly_day_max WHERE model_id != ? "
                                      "GROUP BY meter_id", (model_id,)))
        db.execute("DELETE FROM anomaly_day_max WHERE model_id != ?", (model_id,))
        db.execute("DELETE FROM anomaly_threshold WHERE model_id != ?", (model_id,))
        for meter, day, peak, n in db.execute(
                "SELECT meter_id, day, max_logit, windows FROM anomaly_day_max ORDER BY meter_id, day"):
            out.days.setdefault(meter, {})[int(day)] = (float(peak), int(n))
        for meter, day, cal in db.execute(
                "SELECT meter_id, fitted_through_day, calibration FROM anomaly_threshold"):
            out.fits[meter] = (int(day), json.loads(cal) if cal else None)
    return out


def save_scores(store: ReadingStore, model_id: str, update: ScoreUpdate, keep_days: int) -> None:
    """Write ``update`` (one transaction); a meter keeps its newest ``keep_days`` days."""
    newest: dict[str, int] = {}
    for (meter, day) in update.days:
        newest[meter] = max(newest.get(meter, day), day)
    now_s = time.time()
    with _transaction(store, "saving the meters' anomaly scores") as db:
        db.executemany(
            "INSERT INTO anomaly_day_max VALUES (?,?,?,?,?) ON CONFLICT(meter_id, day) DO UPDATE SET "
            "max_logit=excluded.max_logit, windows=excluded.windows, model_id=excluded.model_id",
            [(m, d, peak, n, model_id) for (m, d), (peak, n) in update.days.items()])
        db.executemany("DELETE FROM anomaly_day_max WHERE meter_id=? AND day<=?",
                       [(m, d - keep_days) for m, d in newest.items()])
        db.executemany(
            "INSERT INTO anomaly_threshold VALUES (?,?,?,?,?) ON CONFLICT(meter_id) DO UPDATE SET "
            "model_id=excluded.model_id, fitted_through_day=excluded.fitted_through_day, "
            "fitted_s=excluded.fitted_s, calibration=excluded.calibration",
            [(m, model_id, day, now_s, None if cal is None else json.dumps(cal))
             for m, (day, cal) in update.fits.items()])


def stored_days(store: ReadingStore) -> Mapping[str, int]:
    """Days of scores kept per meter (all models)."""
    return dict(store.db.execute("SELECT meter_id, COUNT(*) FROM anomaly_day_max GROUP BY meter_id"))
