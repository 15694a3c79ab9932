"""Appliances enrolled by name, without retraining: a signature table and an edge matcher.

The NILM graph knows the appliances it was trained on. A household that lists another one in its
meter config (``appliances = ["kettle", "toaster"]`` with a model that has no toaster) gets it
through a signature: the step in power its switching makes and how long one use lasts, taken by
name from the appliance table (``edge.sim.specs``: rated power and use duration from data sheets
and the NILM literature) or given by the user (``Signature(name, min_w, max_w, min_on_s,
max_on_s)``). The matcher looks for it in the **residual**, what the meter measured minus what the
model already gave its own appliances (``edge.nilm_output.Decision``), so an enrolled appliance
never takes power the model explained, and the sum of all appliances stays within the aggregate.

This is the edge-matching of seed 002 §5.3 (Weiss et al.: a rising step of the signature's size,
then a falling step of about the same size within the use's duration), limited to ON/OFF
appliances (Type 1): a multi-state programme or a compressor needs the learned model.

Steps are read over two samples: at 1-10 s an appliance switched on mid-sample shows part of its
step in one sample and the rest in the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.errors import UnimeterError
from edge.sim.specs import SPECS_BY_NAME

STEP_TOLERANCE = 0.35  # a falling step matches a rising one within 35 % of its size
POWER_MARGIN = (0.8, 1.2)  # the table's rated power range, widened for supply voltage and ageing
DURATION_MARGIN = (0.5, 2.0)


class EnrolError(UnimeterError, ValueError):
    """An appliance that cannot be enrolled by signature (unknown name, not an ON/OFF appliance)."""


@dataclass(frozen=True)
class Signature:
    """An ON/OFF appliance's switching step (W) and use duration (s)."""

    name: str
    min_w: float
    max_w: float
    min_on_s: float
    max_on_s: float

    def __post_init__(self) -> None:
        if not (0 < self.min_w <= self.max_w and 0 <= self.min_on_s <= self.max_on_s):
            raise EnrolError(f"signature of {self.name!r} needs 0 < min_w <= max_w and "
                             f"0 <= min_on_s <= max_on_s, got {self}")


def signature(name: str) -> Signature:
    """The signature of an appliance type by its key (``"toaster"``) from ``edge.sim.specs``.
    Raises ``EnrolError`` for a name the table does not have or that is not ON/OFF."""
    spec = SPECS_BY_NAME.get(name)
    if spec is None:
        raise EnrolError(f"no signature for {name!r}; known: {sorted(SPECS_BY_NAME)}")
    if spec.kind != "onoff":
        raise EnrolError(f"{name!r} is a {spec.kind} appliance: only ON/OFF appliances are enrolled by "
                         "signature; a model trained with it disaggregates it")
    lo, hi = spec.power_w
    d_lo, d_hi = spec.duration_s
    return Signature(name, lo * POWER_MARGIN[0], hi * POWER_MARGIN[1], d_lo * DURATION_MARGIN[0],
                     d_hi * DURATION_MARGIN[1])


def _steps(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(two-sample step s[t] = x[t+1] - x[t-1], the sample where it happens: t or t+1)."""
    pad = np.concatenate([[x[0]], x, [x[-1]]])
    s = pad[2:] - pad[:-2]
    first = pad[1:-1] - pad[:-2]
    where = np.arange(len(x)) + (np.abs(first) < 0.5 * np.abs(s))
    return s, np.minimum(where, len(x) - 1)


def _peaks(s: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Indices where s lies in [lo, hi] and is a local maximum (one per step)."""
    prev = np.concatenate([[-np.inf], s[:-1]])
    nxt = np.concatenate([s[1:], [-np.inf]])
    return np.flatnonzero((s >= lo) & (s <= hi) & (s >= prev) & (s > nxt))


def match(sig: Signature, residual_w: np.ndarray, resolution_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Uses of one enrolled appliance in a residual series [T] (W, at ``resolution_s`` s).

    Returns (on [T] bool, power_w [T]): on between a rising step of the signature's size and the
    first falling step within 35 % of it, if the use lasts ``min_on_s`` to ``max_on_s``; its power
    is the rising step, never more than the residual at that sample (0 where off).
    """
    r = np.nan_to_num(np.asarray(residual_w, np.float64))
    on, power = np.zeros(len(r), bool), np.zeros(len(r))
    if len(r) < 3:
        return on, power
    s, at = _steps(r)
    ups = _peaks(s, sig.min_w, sig.max_w)
    downs = _peaks(-s, sig.min_w * (1 - STEP_TOLERANCE), sig.max_w * (1 + STEP_TOLERANCE))
    busy_until = -1
    for u in ups:
        start = at[u]
        if start < busy_until:
            continue
        step = s[u]
        ok = downs[(at[downs] > start) & (np.abs(-s[downs] - step) <= STEP_TOLERANCE * step)]
        if ok.size == 0:
            continue
        end = at[ok[0]]
        if not (sig.min_on_s <= (end - start) * resolution_s <= sig.max_on_s):
            continue
        on[start:end] = True
        power[start:end] = np.minimum(step, np.maximum(r[start:end], 0.0))
        busy_until = end
    return on, power


def add_enrolled(names: tuple[str, ...], on: np.ndarray, power_w: np.ndarray, budget_w: np.ndarray,
                 signatures: tuple[Signature, ...], resolution_s: float
                 ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The model's decision [A, T] with one row per enrolled appliance appended, each matched in
    what the meter measured (``budget_w`` [T]) minus every appliance before it: the sum of all
    rows stays within the budget."""
    rows_on, rows_w = [on], [power_w]
    residual = np.asarray(budget_w, np.float64) - np.asarray(power_w, np.float64).sum(0)
    for sig in signatures:
        o, p = match(sig, residual, resolution_s)
        p = np.minimum(p, np.maximum(residual, 0.0))
        o &= p > 0
        rows_on.append(o[None])
        rows_w.append(np.where(o, p, 0.0)[None])
        residual = residual - rows_w[-1][0]
    return (tuple(names) + tuple(s.name for s in signatures), np.concatenate(rows_on),
            np.concatenate(rows_w))


def enrol(names) -> tuple[tuple[Signature, ...], dict[str, str]]:
    """(signatures of the names that can be enrolled, {name: why not} for the others)."""
    sigs, refused = [], {}
    for name in names:
        try:
            sigs.append(signature(name))
        except EnrolError as e:
            refused[name] = str(e)
    return tuple(sigs), refused
