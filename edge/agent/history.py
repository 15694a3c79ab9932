"""Each meter's recent profile, kept in the agent's SQLite file: the model's history context.

The profile tasks see the window being scored plus the ``D`` days before it (``history_w [D, L]``,
``history_mask [D]``; docs/architecture.md section 5). After every profile round the agent writes
the window's bins here (mean power per model bin, measured, or filled by the imputation model) and
it reads the context back before each inference, so a restarted agent has its history at once:
the raw readings may be pruned sooner, and re-aggregating days of readings at start-up would be
slow on a Pi.

Table ``profile_bins``: one row per (meter, resolution, bin index ``k`` = floor(ts_s /
resolution_s)); ``power_w`` in W; ``measured`` 1 when the bin had readings, 0 when the model
filled it. A measured value replaces a filled one, never the reverse. Bins older than ``D + 2``
days before a meter's newest bin are pruned.

A history day (the ``L`` bins lying ``(D - k) * L`` bins before the window: the same times of day)
counts (``history_mask = 1``) when at least ``min_day_coverage`` of its bins are known; its
unknown bins are linearly interpolated from the known ones. A meter with fewer than ``D`` days
still gets a context, with ``history_mask = 0`` for the days it lacks, and the result says how
many it had (``HistoryContext.days``).
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS profile_bins (
    meter_id TEXT NOT NULL,
    resolution_s REAL NOT NULL,
    k INTEGER NOT NULL,
    power_w REAL NOT NULL,
    measured INTEGER NOT NULL,
    PRIMARY KEY (meter_id, resolution_s, k)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class HistoryContext:
    """The history inputs of one window and how complete they are."""

    history_w: np.ndarray  # float32 [D, L] W, 0 where the day is missing
    history_mask: np.ndarray  # float32 [D], 1 = the day is there
    days: int  # days present (<= D)

    @property
    def complete(self) -> bool:
        return self.days == len(self.history_mask)


class ProfileHistory:
    """Reads and writes ``profile_bins`` on the agent's SQLite connection (autocommit mode, as the
    store opens it; call from the thread that owns the connection).

    ``resolution_s``: the profile bin (s); ``steps_per_day``: L; ``days``: D.
    """

    def __init__(self, db: sqlite3.Connection, resolution_s: float, steps_per_day: int, days: int,
                 min_day_coverage: float = 0.5) -> None:
        if steps_per_day < 1 or days < 0 or resolution_s <= 0:
            raise ValueError(f"need resolution_s > 0, steps_per_day >= 1, days >= 0; got "
                             f"{resolution_s}, {steps_per_day}, {days}")
        if not 0 < min_day_coverage <= 1:
            raise ValueError(f"min_day_coverage must be in (0, 1], got {min_day_coverage}")
        self.db, self.resolution_s = db, float(resolution_s)
        self.steps_per_day, self.days = int(steps_per_day), int(days)
        self.min_day_coverage = float(min_day_coverage)
        self.db.executescript(SCHEMA)

    @contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def record(self, meter_id: str, start_bin: int, power_w: np.ndarray, measured: np.ndarray) -> int:
        """Store the finite bins of a run of bins starting at ``start_bin`` (``power_w`` W and
        ``measured`` flags of equal length); returns how many rows were written or kept."""
        power_w, measured = np.asarray(power_w, np.float64), np.asarray(measured, bool)
        if power_w.shape != measured.shape or power_w.ndim != 1:
            raise ValueError(f"power_w {power_w.shape} and measured {measured.shape} must be equal 1-D")
        rows = [(meter_id, self.resolution_s, int(start_bin) + int(i), float(power_w[i]), int(measured[i]))
                for i in np.flatnonzero(np.isfinite(power_w))]
        with self._transaction():
            self.db.executemany(
                "INSERT INTO profile_bins (meter_id, resolution_s, k, power_w, measured) VALUES (?,?,?,?,?) "
                "ON CONFLICT (meter_id, resolution_s, k) DO UPDATE SET power_w=excluded.power_w, "
                "measured=excluded.measured WHERE excluded.measured >= profile_bins.measured", rows)
            self.db.execute("DELETE FROM profile_bins WHERE meter_id=? AND resolution_s=? AND k<?",
                            (meter_id, self.resolution_s, self.oldest_kept(int(start_bin) + len(power_w) - 1)))
        return len(rows)

    def drop(self, meter_id: str, bins: list[int]) -> int:
        """Forget bins (a gateway fault fired on them: they are no household's normal, and the
        context interpolates over them); returns how many rows went."""
        with self._transaction():
            cur = self.db.executemany("DELETE FROM profile_bins WHERE meter_id=? AND resolution_s=? AND k=?",
                                      [(meter_id, self.resolution_s, int(k)) for k in bins])
        return max(cur.rowcount, 0)

    def backfill(self, meter_id: str, bins: list[tuple[int, float, float]]) -> int:
        """Measured bins from the store's readings (``ReadingStore.bins``: bin index, sum of
        power_w, count) for days the history does not hold yet (a first start with a context model,
        or readings stored while a single-window model ran). Returns the rows written or kept."""
        rows = [(int(k), s / c) for k, s, c in bins if c]
        if not rows:
            return 0
        ks = np.array([k for k, _ in rows])
        power_w = np.full(int(ks.max() - ks.min()) + 1, np.nan)
        power_w[ks - ks.min()] = [w for _, w in rows]
        return self.record(meter_id, int(ks.min()), power_w, np.isfinite(power_w))

    def oldest_kept(self, newest_bin: int) -> int:
        """The first bin kept when ``newest_bin`` is a meter's newest: D + 2 days back."""
        return int(newest_bin) - (self.days + 2) * self.steps_per_day

    def context(self, meter_id: str, window_start_bin: int) -> HistoryContext:
        """``history_w [D, L]`` and ``history_mask [D]`` for the window starting at
        ``window_start_bin`` (oldest day first)."""
        D, L = self.days, self.steps_per_day
        first = int(window_start_bin) - D * L
        values = np.full(D * L, np.nan)
        for k, power in self.db.execute(
                "SELECT k, power_w FROM profile_bins WHERE meter_id=? AND resolution_s=? AND k>=? AND k<?",
                (meter_id, self.resolution_s, first, int(window_start_bin))):
            values[k - first] = power
        days = values.reshape(D, L)
        known = np.isfinite(days)
        present = known.mean(axis=1) >= self.min_day_coverage
        out = np.zeros((D, L), np.float32)
        steps = np.arange(L)
        for d in np.flatnonzero(present):
            out[d] = np.interp(steps, steps[known[d]], days[d, known[d]])
        return HistoryContext(out, present.astype(np.float32), int(present.sum()))

    def bins(self, meter_id: str, since_bin: int) -> list[tuple[int, float, int]]:
        """(k, power_w, measured) of a meter's bins from ``since_bin`` on, in order."""
        return list(self.db.execute(
            "SELECT k, power_w, measured FROM profile_bins WHERE meter_id=? AND resolution_s=? AND k>=? "
            "ORDER BY k", (meter_id, self.resolution_s, int(since_bin))))
