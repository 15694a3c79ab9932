"""One meter's own days, split by time, and the held-out sets every method is judged on (numpy).

A user's data is usually one meter and a few months. Validation and test are therefore the LATEST
days (:func:`time_split`: train | validation | test, in calendar order), never a random share of
days, so nothing is judged on the past with the future in training. The test sets
(:func:`forecast_cases`, :func:`imputation_cases`, :func:`anomaly_cases`) are built only from the
test days and hand every method (the exported model and the naive baselines of
``edge.signal.naive``) the same inputs, including the earlier days a baseline or a context model
needs. Randomness (missing masks, attacks) comes from a seeded generator: the same cases for
every method and every run.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

import numpy as np

from edge.data.profiles import MeterProfiles
from edge.errors import DataError
from edge.sim.inject import AttackConfig, random_attack

IMPUTATION_RATES = (0.1, 0.3, 0.5)  # share of a day's points missing
IMPUTATION_BLOCK_LEN = (4, 12)  # samples per missing block (judged cells: 4-12-sample blocks)
ANOMALY_KINDS = ("scaling", "ramp_i", "ramp_ii")  # seed 000's scaling and ramping attacks
ANOMALY_LAMBDA = (0.1, 0.5)


class UserDataError(DataError):
    """Too little data for the split asked for (the message says how much there is)."""


@dataclass(frozen=True)
class TimeSplit:
    """Day index ranges [start, stop) of train, validation and test, in calendar order."""

    n_days: int
    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]

    def days(self, part: str) -> np.ndarray:
        a, b = getattr(self, part)
        return np.arange(a, b)

    def describe(self, dates: np.ndarray | None = None) -> str:
        def span(part: str) -> str:
            a, b = getattr(self, part)
            when = f" ({dates[a]} .. {dates[b - 1]})" if dates is not None and b > a else ""
            return f"{part} {b - a} days{when}"
        return ", ".join(span(p) for p in ("train", "val", "test"))


def time_split(n_days: int, test_days: int | None = None, val_days: int | None = None,
               min_train_days: int = 14) -> TimeSplit:
    """Latest ``test_days`` for test, the ``val_days`` before them for validation, the rest train.

    Defaults adapt to the data: test = n/6 and validation = n/8 days, each clamped to 7..28
    (60 days -> 43 | 7 | 10; a year -> 309 | 28 | 28). ``test_days=0`` keeps no test days (a
    stand-alone training run that is not judged).
    """
    test = int(test_days) if test_days is not None else int(np.clip(n_days // 6, 7, 28))
    val = int(val_days) if val_days is not None else int(np.clip(n_days // 8, 7, 28))
    train = n_days - test - val
    if test < 0 or val < 1 or train < min_train_days:
        raise UserDataError(f"{n_days} days cannot give {test} test + {val} validation days and at least "
                            f"{min_train_days} training days; give more days or smaller --test-days/--val-days")
    return TimeSplit(n_days, (0, train), (train, train + val), (train + val, n_days))


def history_context(series_w: np.ndarray, starts: np.ndarray, length: int, history_days: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The days before windows of a continuous series, as a context model takes them.

    ``series_w``: one meter's continuous series (W, NaN where missing); ``starts``: window start
    indices; the window is ``series_w[s:s+length]`` with ``length`` = one day. Returns
    ``history_w`` [N, D, L] with ``history_w[:, k]`` = the L points ``(D - k) * L`` before the
    window (oldest day first, k = D-1 the day just before) and ``history_mask`` [N, D], 1 when
    that day is complete; a day that is incomplete or before the series starts has mask 0 and
    zeros (the model ignores it).
    """
    x = np.asarray(series_w, np.float32)
    starts = np.asarray(starts, np.int64)
    hist = np.zeros((len(starts), history_days, length), np.float32)
    mask = np.zeros((len(starts), history_days), np.float32)
    for k in range(history_days):
        first = starts - (history_days - k) * length
        ok = first >= 0
        idx = np.clip(first, 0, None)[:, None] + np.arange(length)[None, :]
        seg = x[np.clip(idx, 0, len(x) - 1)]
        ok &= np.isfinite(seg).all(axis=1)
        hist[ok, k] = seg[ok]
        mask[ok, k] = 1.0
    return hist, mask


def complete_days(prof: MeterProfiles, idx: np.ndarray) -> np.ndarray:
    """The days of ``idx`` without a missing slot."""
    idx = np.asarray(idx)
    return idx[np.isfinite(prof.load_w[idx]).all(axis=1)]


# --- forecasting ------------------------------------------------------------------------------


@dataclass
class ForecastCases:
    """Day-ahead cases: forecast day ``target_day[i]`` from the days before it."""

    target_day: np.ndarray  # [N] day index into the profiles
    last_day_w: np.ndarray  # [N, L] the day before (the one-day model's input)
    target_w: np.ndarray  # [N, L]
    week_ago_w: np.ndarray  # [N, L] same day last week


def forecast_cases(prof: MeterProfiles, idx: np.ndarray) -> ForecastCases:
    """Every day of ``idx`` whose day, day before and same day last week are complete."""
    x = prof.load_w
    ok = [d for d in np.asarray(idx) if d >= 7 and np.isfinite(x[[d, d - 1, d - 7]]).all()]
    ok = np.asarray(ok, np.int64)
    return ForecastCases(ok, x[ok - 1].astype(np.float32), x[ok].astype(np.float32), x[ok - 7].astype(np.float32))


# --- imputation -------------------------------------------------------------------------------


@dataclass
class ImputationCases:
    """Complete test days with a missing mask; ``observed`` 1 = kept, 0 = hidden."""

    pattern: str  # "points" | "blocks"
    rate: float
    day: np.ndarray  # [N]
    target_w: np.ndarray  # [N, L]
    observed: np.ndarray  # [N, L] float32


def block_mask(length: int, rate: float, rng: np.random.Generator,
               block_len: tuple[int, int] = IMPUTATION_BLOCK_LEN) -> np.ndarray:
    """bool [length], True = missing: blocks of 4-12 samples (clipped to the day) until
    round(rate * length) points are missing; at least one point stays observed."""
    want = min(max(int(round(rate * length)), 1), length - 1)
    miss = np.zeros(length, bool)
    while miss.sum() < want:
        k = int(rng.integers(block_len[0], block_len[1] + 1))
        k = min(k, want - int(miss.sum()), length - 1)
        start = int(rng.integers(0, length - k + 1))
        miss[start:start + k] = True
    if miss.all():
        miss[int(rng.integers(length))] = False
    return miss


def point_mask(length: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """bool [length], True = missing: exactly round(rate * length) random points."""
    want = min(max(int(round(rate * length)), 1), length - 1)
    miss = np.zeros(length, bool)
    miss[rng.choice(length, size=want, replace=False)] = True
    return miss


def imputation_cases(prof: MeterProfiles, idx: np.ndarray, pattern: str, rate: float,
                     rng: np.random.Generator, repeats: int = 1) -> ImputationCases:
    """``repeats`` masks per complete day of ``idx`` that also has a complete day before it."""
    x = prof.load_w
    days = [d for d in complete_days(prof, idx) if d >= 1 and np.isfinite(x[d - 1]).all()]
    L = x.shape[1]
    rows, masks = [], []
    for _ in range(repeats):
        for d in days:
            miss = point_mask(L, rate, rng) if pattern == "points" else block_mask(L, rate, rng)
            rows.append(d)
            masks.append(~miss)
    day = np.asarray(rows, np.int64)
    return ImputationCases(pattern, rate, day, x[day].astype(np.float32), np.asarray(masks, np.float32))


# --- anomaly detection --------------------------------------------------------------------------


@dataclass
class AnomalyCases:
    """Test days as they are (label 0) and with one injected attack (label 1)."""

    day: np.ndarray  # [N]
    load_w: np.ndarray  # [N, L] what the detector sees
    window_label: np.ndarray  # [N] 0/1
    point_label: np.ndarray  # [N, L] 0/1
    kind: list[str]


def attack_config(steps_per_day: int):
    """Seed 000's scaling and ramping attacks, lambda 0.1-0.5, 2 to 12 hours long at any resolution."""

    hour = steps_per_day // 24 or 1
    return AttackConfig(kinds=ANOMALY_KINDS, scale_lam=ANOMALY_LAMBDA, min_len=max(2, 2 * hour),
                        max_len=min(steps_per_day, 12 * hour))


def anomaly_cases(prof: MeterProfiles, idx: np.ndarray, rng: np.random.Generator,
                  repeats: int = 2) -> AnomalyCases:
    """Each complete day of ``idx`` with 7 complete days before it, ``repeats`` times clean and
    ``repeats`` times attacked (balanced labels)."""

    x = prof.load_w
    cfg = attack_config(prof.steps_per_day)
    days = [d for d in complete_days(prof, idx) if d >= 7 and np.isfinite(x[d - 7:d]).all()]
    rows, loads, wl, pl, kinds = [], [], [], [], []
    for _ in range(repeats):
        for d in days:
            rows.append(d)
            loads.append(x[d])
            wl.append(0)
            pl.append(np.zeros(x.shape[1]))
            kinds.append("none")
            inj = random_attack(x[d], rng, cfg)
            rows.append(d)
            loads.append(inj.values)
            wl.append(1)
            pl.append(inj.point_mask)
            kinds.append(inj.kind)
    return AnomalyCases(np.asarray(rows, np.int64), np.asarray(loads, np.float32), np.asarray(wl, np.float32),
                        np.asarray(pl, np.float32), kinds)


def day_start_s(prof: MeterProfiles, day: int) -> int:
    """UTC epoch seconds of local midnight of profile day ``day``."""
    date = dt.date.fromisoformat(str(prof.dates[day]))
    zone = zoneinfo.ZoneInfo(prof.tz) if prof.tz else dt.UTC
    return int(dt.datetime(date.year, date.month, date.day, tzinfo=zone).timestamp())
