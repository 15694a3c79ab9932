"""Weiss-style (AppliSense) event matching on (dP, dQ) against a signature database.

Each appliance has an ON signature (dP, dQ); its OFF signature is the negative. An aggregate event
is matched to the nearest signature in a scaled (dP, dQ) space and accepted if within tolerance
(relative to the signature, with a floor); otherwise it is an unknown device. Matching is
state-aware: an ON event is matched only among appliances that are OFF and an OFF event only among
those that are ON. An ON match turns the appliance on until its matching OFF event, but never for
longer than twice the longest use seen in the sub-metered data: an OFF hidden by another load's
simultaneous step would otherwise leave the appliance on for days. Only Type-1 behaviour is modelled, as in the seed.
Signatures are learned here from sub-metered data (the seed did the same); they can also be
entered by hand (the AppliSense phone workflow) as rows of the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.signal.errors import NilmError
from edge.signal.nilm.events import EventConfig, detect_events
from edge.signal.runs import runs


@dataclass(frozen=True)
class Signature:
    appliance: str
    dp_w: float
    dq_var: float
    max_on_samples: int = 2**62  # a session never runs longer (learned: 2x the longest seen)


@dataclass(frozen=True)
class WeissConfig:
    rel_tol: float = 0.25  # accepted distance, relative to the signature size
    floor_w: float = 20.0  # minimum tolerance on dP (W)
    floor_var: float = 60.0  # minimum tolerance on dQ (var): reactive noise of other loads
    events: EventConfig = EventConfig()


def learn_signatures(appliance_power_w: dict[str, np.ndarray],
                     appliance_reactive_var: dict[str, np.ndarray] | None = None,
                     cfg: WeissConfig = WeissConfig()) -> list[Signature]:
    """Median ON step (dP, dQ) of each sub-metered appliance."""
    out = []
    for name, p in appliance_power_w.items():
        q = None if appliance_reactive_var is None else appliance_reactive_var.get(name)
        ev = detect_events(p, reactive_var=q, cfg=cfg.events)
        on = ev.dp_w > 0
        if not on.any():
            continue
        dq = float(np.nanmedian(ev.dq_var[on])) if q is not None else 0.0
        starts, stops = runs(p > cfg.events.threshold_w / 2)
        longest = int((stops - starts).max()) if starts.size else p.size
        out.append(Signature(name, float(np.median(ev.dp_w[on])), dq, 2 * longest))
    return out


class WeissMatcher:
    def __init__(self, signatures: list[Signature], cfg: WeissConfig = WeissConfig()):
        if not signatures:
            raise NilmError("an empty signature database matches nothing")
        self.signatures, self.cfg = signatures, cfg
        self.names = [s.appliance for s in signatures]
        self._sig = np.array([[s.dp_w, s.dq_var] for s in signatures])

    def distances(self, dp_w: np.ndarray, dq_var: np.ndarray) -> np.ndarray:
        """Squared scaled distance of every event to every signature [E, S]; <= 1 is a match."""
        ev = np.stack([np.abs(dp_w), np.where(np.isfinite(dq_var), dq_var, 0.0)], axis=1)
        ev[:, 1] *= np.sign(dp_w)  # an OFF event is the negated ON signature
        floor = np.array([self.cfg.floor_w, self.cfg.floor_var])
        scale = np.maximum(self.cfg.rel_tol * np.abs(self._sig), floor)  # [S, 2]
        use_q = np.isfinite(dq_var)[:, None]
        d2 = ((ev[:, None, 0] - self._sig[None, :, 0]) / scale[None, :, 0]) ** 2
        return d2 + np.where(use_q, ((ev[:, None, 1] - self._sig[None, :, 1]) / scale[None, :, 1]) ** 2, 0)

    def match(self, dp_w: np.ndarray, dq_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per event: index of the nearest signature (-1 unknown) and +1 ON / -1 OFF."""
        d2 = self.distances(dp_w, dq_var)
        best = d2.argmin(1) if d2.size else np.zeros(0, int)
        ok = d2[np.arange(best.size), best] <= 1.0
        return np.where(ok, best, -1), np.sign(dp_w).astype(int)

    def predict(self, aggregate_w, reactive_var=None, ts_s=None) -> dict[str, dict[str, np.ndarray]]:
        agg = np.asarray(aggregate_w, float)
        ev = detect_events(agg, ts_s, reactive_var, self.cfg.events)
        d2 = self.distances(ev.dp_w, ev.dq_var)
        sign = np.sign(ev.dp_w)
        on = np.zeros((len(self.signatures), agg.size), dtype=bool)
        state = np.zeros(len(self.signatures), dtype=bool)
        since = np.zeros(len(self.signatures), dtype=np.int64)
        limit = np.array([sig.max_on_samples for sig in self.signatures])
        for e, (idx, s) in enumerate(zip(ev.index, sign, strict=True)):
            expired = state & (idx - since > limit)  # missed OFF (e.g. masked by another load)
            for w in np.flatnonzero(expired):
                on[w, since[w]:since[w] + limit[w]] = True
            state &= ~expired
            # state-aware: an ON event can only start an appliance that is OFF, and vice versa
            d = np.where(state == (s < 0), d2[e], np.inf)
            w = int(np.argmin(d))
            if not d[w] <= 1.0:
                continue  # an unknown device
            if s > 0:
                state[w], since[w] = True, idx
            else:
                on[w, since[w]:idx] = True
                state[w] = False
        for w in np.flatnonzero(state):
            on[w, since[w]:since[w] + limit[w]] = True
        out: dict[str, dict[str, np.ndarray]] = {}
        for i, name in enumerate(self.names):
            power = on[i] * self._sig[i, 0]
            if name in out:  # several signatures of one appliance
                out[name]["on"] |= on[i]
                out[name]["power_w"] = np.maximum(out[name]["power_w"], power)
            else:
                out[name] = {"on": on[i], "power_w": power}
        return out
