"""Parson-style difference HMM from general appliance priors, adapted on the house's own data.

Each appliance is a two-state (OFF/ON, Type-1, as in the seed's validation) difference HMM: the
observation is the step ``y_t = x_t - x_{t-1}`` of the aggregate, ``y_t | S_t, S_{t-1} ~
N(mu_{S_t} - mu_{S_{t-1}}, sigma_{S_t}^2 + sigma_{S_{t-1}}^2)`` (eq. 12) with mu_OFF = 0, and the ON
state also needs enough power in the aggregate: ``P(w <= x_t | ON) = Phi((x_t - mu_ON) / sigma_ON)``
(eq. 13), where x_t is the aggregate minus its base load (seed: "the mean power draw subtracted").

Steps made by other appliances would be impossible under N(0, small) while the appliance stays
put; we add a broad "other appliance switched" component with weight ``rho`` to the stay-emission
so they cost a constant instead of dominating (a standard robustification of Parson's model).

Adaptation (seed 002 §4.4 methodology): single-event fragments -- an ON step followed directly
(no event between) by an OFF step of nearly the same size -- are found in the aggregate, assigned
to the appliance whose prior explains the step best, and the ON power is updated by the conjugate
Normal rule with the prior worth ``prior_weight`` fragments. Appliances are then inferred one at a
time, largest first, each one's estimated power removed before the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import log_ndtr

from edge.signal.errors import SignalInputError
from edge.signal.nilm.events import EventConfig, detect_events


@dataclass(frozen=True)
class AppliancePrior:
    name: str
    on_w: float  # mean ON power
    on_std_w: float
    on_duration_s: float  # mean ON duration
    off_duration_s: float  # mean OFF time between uses


# General appliance models (typical European values; the "outside database" of the seed).
GENERAL_PRIORS: dict[str, AppliancePrior] = {p.name: p for p in (
    AppliancePrior("kettle", 2200.0, 400.0, 180.0, 4 * 3600.0),
    AppliancePrior("toaster", 1100.0, 250.0, 200.0, 24 * 3600.0),
    AppliancePrior("microwave", 1200.0, 250.0, 240.0, 12 * 3600.0),
    AppliancePrior("tv", 120.0, 50.0, 2 * 3600.0, 20 * 3600.0),
    AppliancePrior("computer", 150.0, 70.0, 3 * 3600.0, 20 * 3600.0),
    AppliancePrior("water_heater", 2500.0, 400.0, 1800.0, 14 * 3600.0),
    AppliancePrior("fridge", 100.0, 30.0, 900.0, 1800.0),
    AppliancePrior("freezer", 110.0, 30.0, 1200.0, 2400.0),
    AppliancePrior("oven", 2500.0, 500.0, 900.0, 30 * 3600.0),
)}


@dataclass(frozen=True)
class ParsonConfig:
    noise_w: float = 10.0  # std of sample-to-sample noise of a steady load
    rho: float = 0.01  # weight of "another appliance switched" in a no-change step
    other_step_std_w: float = 1500.0
    prior_weight: float = 5.0  # prior worth this many fragments
    match_sigmas: float = 2.0  # fragment assigned only within this many prior sigmas
    max_fragment_s: float = 6 * 3600.0
    enough_margin_sigmas: float = 3.0  # see _viterbi2 on eq. 13
    events: EventConfig = EventConfig()


def single_event_fragments(aggregate_w, ts_s, cfg: ParsonConfig = ParsonConfig()
                           ) -> list[tuple[float, float]]:
    """(ON step W, duration s) of ON/OFF pairs with no other event between them."""
    ev = detect_events(aggregate_w, ts_s, cfg=cfg.events)
    out = []
    for i in range(len(ev) - 1):
        up, down = ev.dp_w[i], ev.dp_w[i + 1]
        dur = ev.ts_s[i + 1] - ev.ts_s[i]
        if up > 0 > down and abs(up + down) < 0.15 * up and dur <= cfg.max_fragment_s:
            out.append((float(0.5 * (up - down)), float(dur)))
    return out


def adapt(priors: list[AppliancePrior], fragments: list[tuple[float, float]],
          cfg: ParsonConfig = ParsonConfig()) -> list[AppliancePrior]:
    """Conjugate update of each prior's ON power from the fragments it explains best."""
    if not fragments:
        return list(priors)
    dp = np.array([f[0] for f in fragments])
    mu = np.array([p.on_w for p in priors])
    sd = np.array([p.on_std_w for p in priors])
    z = np.abs(dp[:, None] - mu[None, :]) / sd[None, :]
    owner = np.where(z.min(1) <= cfg.match_sigmas, z.argmin(1), -1)
    out = []
    for j, p in enumerate(priors):
        own = dp[owner == j]
        if not own.size:
            out.append(p)
            continue
        n0, n = cfg.prior_weight, own.size
        mean = (n0 * p.on_w + own.sum()) / (n0 + n)
        var = (n0 * p.on_std_w**2 + np.sum((own - mean) ** 2)) / (n0 + n)
        out.append(replace(p, on_w=float(mean), on_std_w=float(max(math.sqrt(var), cfg.noise_w))))
    return out


def _viterbi2(y: np.ndarray, x: np.ndarray, p: AppliancePrior, dt_s: float, cfg: ParsonConfig
              ) -> np.ndarray:
    """Two-state difference-HMM Viterbi for one appliance; returns ON per sample."""
    def lnorm(v, mu, var):
        return -0.5 * (np.log(2 * np.pi * var) + (v - mu) ** 2 / var)

    n2 = cfg.noise_w**2
    stay_off = np.logaddexp(np.log1p(-cfg.rho) + lnorm(y, 0.0, 2 * n2),
                            np.log(cfg.rho) + lnorm(y, 0.0, cfg.other_step_std_w**2))
    # ON -> ON: eq. 12 reads N(0, 2 sigma_ON^2), but sigma_ON is the spread of the ON level across
    # uses and devices, not the sample-to-sample noise of one running device; with it every ON
    # sample would cost log(sigma_ON / noise) and long sessions could never win. Use the noise.
    stay_on = stay_off
    turn_on = lnorm(y, p.on_w, p.on_std_w**2 + n2)
    turn_off = lnorm(y, -p.on_w, p.on_std_w**2 + n2)
    # eq. 13 shifted by a margin: as printed it is 1/2 at exactly enough power, which summed over a
    # two-hour ON run forbids long sessions; the margin keeps it ~1 there and ~0 when power is short
    enough = log_ndtr((x - p.on_w) / p.on_std_w + cfg.enough_margin_sigmas)
    a_on = math.log(min(dt_s / p.off_duration_s, 0.5))
    a_off = math.log(min(dt_s / p.on_duration_s, 0.5))
    a_stay_off, a_stay_on = math.log1p(-math.exp(a_on)), math.log1p(-math.exp(a_off))
    d_off, d_on = 0.0, -1e9
    bp = np.zeros((y.size, 2), dtype=bool)  # came from ON?
    so, sn, to, tf, en = (v.tolist() for v in (stay_off, stay_on, turn_on, turn_off, enough))
    for t in range(1, y.size):
        off_from_off, off_from_on = d_off + a_stay_off + so[t], d_on + a_off + tf[t]
        on_from_off, on_from_on = d_off + a_on + to[t], d_on + a_stay_on + sn[t]
        bp[t, 0], bp[t, 1] = off_from_on > off_from_off, on_from_on > on_from_off
        d_off = max(off_from_off, off_from_on)
        d_on = max(on_from_off, on_from_on) + en[t]
        top = max(d_off, d_on)
        d_off, d_on = d_off - top, d_on - top
    on = np.zeros(y.size, dtype=bool)
    state = d_on > d_off
    for t in range(y.size - 1, -1, -1):
        on[t] = state
        state = bp[t, 1] if state else bp[t, 0]
    return on


class ParsonDisaggregator:
    """``ParsonDisaggregator(["tv", "kettle"]).adapt(agg, ts).predict(agg, ts)``."""

    def __init__(self, appliances: list[str] | list[AppliancePrior], cfg: ParsonConfig = ParsonConfig()):
        self.cfg = cfg
        self.priors = []
        for a in appliances:
            if isinstance(a, AppliancePrior):
                self.priors.append(a)
            elif a in GENERAL_PRIORS:
                self.priors.append(GENERAL_PRIORS[a])
            else:
                raise SignalInputError(f"no general prior for {a!r}; known: {sorted(GENERAL_PRIORS)}")
        self.models = list(self.priors)

    def adapt(self, aggregate_w, ts_s) -> ParsonDisaggregator:
        self.models = adapt(self.priors, single_event_fragments(aggregate_w, ts_s, self.cfg), self.cfg)
        return self

    def predict(self, aggregate_w, ts_s) -> dict[str, dict[str, np.ndarray]]:
        x = np.asarray(aggregate_w, float)
        t = np.asarray(ts_s, float)
        if x.shape != t.shape or x.ndim != 1 or not np.isfinite(x).all():
            raise SignalInputError("aggregate_w and ts_s must be finite 1-D arrays of one length")
        dt = float(np.median(np.diff(t))) if t.size > 1 else 1.0
        rest = x - np.percentile(x, 5)  # base load removed (eq. 13's x_t)
        out = {}
        for p in sorted(self.models, key=lambda m: -m.on_w):
            y = np.diff(rest, prepend=rest[0])
            on = _viterbi2(y, rest, p, dt, self.cfg)
            power = on * p.on_w
            out[p.name] = {"on": on, "power_w": power}
            rest = rest - power
        return out
