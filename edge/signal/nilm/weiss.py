"""Weiss-style (AppliSense) event matching on (dP, dQ) against a signature database.

Each appliance has an ON signature (dP, dQ); its OFF signature is the negative. An aggregate event
is matched to the nearest signature in a scaled (dP, dQ) space and accepted if within tolerance
(relative to the signature, with a floor); otherwise it is an unknown device. An ON match turns the
appliance on until its matching OFF event. Only Type-1 behaviour is modelled, as in the seed.
Signatures are learned here from sub-metered data (the seed did the same); they can also be
entered by hand (the AppliSense phone workflow) as rows of the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.signal.errors import NilmError
from edge.signal.nilm.events import EventConfig, detect_events


@dataclass(frozen=True)
class Signature:
    appliance: str
    dp_w: float
    dq_var: float


@dataclass(frozen=True)
class WeissConfig:
    rel_tol: float = 0.25  # accepted distance, relative to the signature size
    floor_w: float = 20.0  # minimum tolerance (W and var)
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
        out.append(Signature(name, float(np.median(ev.dp_w[on])), dq))
    return out


class WeissMatcher:
    def __init__(self, signatures: list[Signature], cfg: WeissConfig = WeissConfig()):
        if not signatures:
            raise NilmError("an empty signature database matches nothing")
        self.signatures, self.cfg = signatures, cfg
        self.names = [s.appliance for s in signatures]
        self._sig = np.array([[s.dp_w, s.dq_var] for s in signatures])

    def match(self, dp_w: np.ndarray, dq_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per event: index of the matched signature (-1 unknown) and +1 ON / -1 OFF."""
        ev = np.stack([np.abs(dp_w), np.where(np.isfinite(dq_var), dq_var, 0.0)], axis=1)
        sign = np.sign(dp_w)
        ev[:, 1] *= sign  # an OFF event is the negated ON signature
        scale = np.maximum(self.cfg.rel_tol * np.abs(self._sig), self.cfg.floor_w)  # [S, 2]
        use_q = np.isfinite(dq_var)[:, None]
        d2 = ((ev[:, None, 0] - self._sig[None, :, 0]) / scale[None, :, 0]) ** 2
        d2 = d2 + np.where(use_q, ((ev[:, None, 1] - self._sig[None, :, 1]) / scale[None, :, 1]) ** 2, 0)
        best = d2.argmin(1)
        ok = d2[np.arange(best.size), best] <= 1.0
        return np.where(ok, best, -1), sign.astype(int)

    def predict(self, aggregate_w, reactive_var=None, ts_s=None) -> dict[str, dict[str, np.ndarray]]:
        agg = np.asarray(aggregate_w, float)
        ev = detect_events(agg, ts_s, reactive_var, self.cfg.events)
        which, sign = self.match(ev.dp_w, ev.dq_var)
        on = np.zeros((len(self.signatures), agg.size), dtype=bool)
        state = np.zeros(len(self.signatures), dtype=bool)
        since = np.zeros(len(self.signatures), dtype=np.int64)
        for idx, w, s in zip(ev.index, which, sign, strict=True):
            if w < 0:
                continue
            if s > 0 and not state[w]:
                state[w], since[w] = True, idx
            elif s < 0 and state[w]:
                on[w, since[w]:idx] = True
                state[w] = False
        for w in np.flatnonzero(state):
            on[w, since[w]:] = True
        out: dict[str, dict[str, np.ndarray]] = {}
        for i, name in enumerate(self.names):
            power = on[i] * self._sig[i, 0]
            if name in out:  # several signatures of one appliance
                out[name]["on"] |= on[i]
                out[name]["power_w"] = np.maximum(out[name]["power_w"], power)
            else:
                out[name] = {"on": on[i], "power_w": power}
        return out
