"""Batch gap windows of equal length so the iterative fillers run vectorised over many gaps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge.signal.gapfill.base import Gap


@dataclass
class WindowBatch:
    """``B`` windows of length ``N``: values (missing pre-filled linearly), known mask, targets."""

    gaps: list[Gap]
    lo: np.ndarray  # [B] window start index in the series
    values: np.ndarray  # [B, N] linear-initialised values
    known: np.ndarray  # [B, N] bool
    target: np.ndarray  # [B, N] bool: the positions of this batch's gap (to be written)


def bucket_length(length: int) -> int:
    """Gap lengths rounded up to a coarse grid (1-8 exact, then ~12 % steps), so gaps of
    similar length share one window length and one vectorised batch."""
    if length <= 8:
        return length
    return int(np.ceil(8 * 1.125 ** np.ceil(np.log(length / 8) / np.log(1.125))))


def window_batches(x: np.ndarray, m: np.ndarray, t: np.ndarray, gaps: list[Gap],
                   knowledge: int) -> Iterator[WindowBatch]:
    """Windows of ``knowledge`` samples before each gap and after its bucketed length."""
    lin = x.copy()
    lin[m] = np.interp(t[m], t[~m], x[~m])
    groups: dict[int, list[tuple[Gap, int, int]]] = defaultdict(list)
    for g in gaps:
        lo = max(0, g.start - knowledge)
        hi = min(x.size, g.start + bucket_length(g.length) + knowledge)
        groups[hi - lo].append((g, lo, hi))
    for n, items in groups.items():
        lo = np.array([it[1] for it in items])
        idx = lo[:, None] + np.arange(n)[None, :]
        target = np.zeros((len(items), n), dtype=bool)
        for b, (g, lo_b, _) in enumerate(items):
            target[b, g.start - lo_b:g.stop - lo_b] = True
        yield WindowBatch([it[0] for it in items], lo, lin[idx], ~m[idx], target)


def linear_rows(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of the unknown samples of ``values`` [B, N] (by index)."""
    out = values.copy()
    idx = np.arange(values.shape[1])
    for b in range(values.shape[0]):
        k = known[b]
        if k.any() and not k.all():
            out[b, ~k] = np.interp(idx[~k], idx[k], values[b, k])
    return out


def artificial_gap(batch: WindowBatch) -> np.ndarray:
    """A block of known samples, as long as the gap, next to it on the side with more knowledge.

    Used to choose a model order (bandwidth, number of SSA components) by the error on samples
    whose true values we know. Rows without room for it get an empty mask.
    """
    art = np.zeros_like(batch.known)
    n = batch.known.shape[1]
    for b, g in enumerate(batch.gaps):
        s, e = g.start - batch.lo[b], g.stop - batch.lo[b]
        before, after = min(g.known_before, s), min(g.known_after, n - e)
        length = min(g.length, max(before, after) // 2)
        if length < 1:
            continue
        if before >= after:
            art[b, s - length:s] = True
        else:
            art[b, e:e + length] = True
    return art & batch.known


def write_back(est: np.ndarray, batch: WindowBatch, filled: np.ndarray) -> None:
    rows, cols = np.nonzero(batch.target)
    est[batch.lo[rows] + cols] = filled[rows, cols]
