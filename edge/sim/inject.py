"""Fault and attack injection with labels (numpy only, deterministic given an ``rng``).

Every function takes a 1-D series (and an ``np.random.Generator`` where anything is random),
never modifies its input, and returns an :class:`Injected`: the modified series, a per-sample
``point_mask`` of the samples that are affected, the ``window`` [t_s, t_e] (inclusive sample
indices) and the ``kind``. Sample index t is the time unit of the formulas.

False-data-injection templates of Cui, Wang and Yue, "Machine learning-based anomaly detection
for load forecasting under cyberattacks", IEEE Trans. Smart Grid 10(5), 2019 (ref. [34] of seed
000), on the window t_s <= t <= t_e with strength lambda:

Each template is named by its kind (the label stored in datasets, ``KINDS``):

- ``scaling``        p'(t) = p(t) (1 + lambda)
- ``ramp_i``         p'(t) = p(t) (1 + lambda (t - t_s))   rising over the window (ramping type I)
- ``ramp_ii``        p'(t) = p(t) (1 + lambda (t - t_s))   for t <= t_m,  t_m = (t_s + t_e) / 2
                     p'(t) = p(t) (1 + lambda (t_e - t))   for t >  t_m  (type II: up, then down)
- ``pulse``          p'(t_p) = p(t_p) (1 + lambda) at the single point t_p
- ``random``         p'(t) = p(t) + lambda * u(t) * s,  u(t) ~ U(0, 1), s = mean |p| on the window.
  The paper adds a random positive quantity; scaling it by the window's mean load makes lambda
  dimensionless like in the other templates (``random_additive``).
- ``smooth``         p'(t) = c(t) (1 + lambda sin(pi (t - t_s) / (t_e - t_s))), where c is the
  straight line from p(t_s) to p(t_e). The paper only says the window is replaced by a smooth
  curve; joining the true values at both ends is the stealthy choice (no step at the borders),
  and lambda sets the height of the bump (``smooth_curve``).
- ``additive_ramp``  p'(t) = p(t) + lambda (t - t_s)      (lambda in W per sample)

For window templates the whole window is labelled (``point_mask`` is True on [t_s, t_e]) even
where the formula happens to leave a value unchanged (ramping at t = t_s): the detector's job is
to find the manipulated interval.

Faults: missing samples (random points, blocks, gateway outages of whole days: values become
NaN), spikes, stuck values, negative values, NaN values, clock jumps and duplicated samples (these
two change timestamps and return ``ts_s``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.errors import SimulationError

# Label codes of every kind (0 = clean); stable, stored in datasets.
KINDS: tuple[str, ...] = (
    "none", "scaling", "ramp_i", "ramp_ii", "pulse", "random", "smooth", "additive_ramp",
    "spike", "stuck", "negative", "nan", "missing_points", "missing_block", "outage",
    "clock_jump", "duplicate",
)
KIND_CODE = {k: i for i, k in enumerate(KINDS)}
FDI_KINDS: tuple[str, ...] = ("scaling", "ramp_i", "ramp_ii", "pulse", "random", "smooth", "additive_ramp")


class InjectionError(SimulationError):
    """Invalid injection request (window outside the series, bad parameters)."""


@dataclass
class Injected:
    values: np.ndarray  # modified series (float64 copy)
    point_mask: np.ndarray  # bool, affected samples
    window: tuple[int, int] | None  # inclusive sample indices, None for scattered faults
    kind: str
    ts_s: np.ndarray | None = None  # new timestamps (clock_jump, duplicate)
    params: dict = field(default_factory=dict)

    @property
    def window_label(self) -> bool:
        """True if anything in the series was manipulated (the window-level label)."""
        return bool(self.point_mask.any())

    @property
    def code(self) -> int:
        return KIND_CODE[self.kind]


def _series(x: np.ndarray) -> np.ndarray:
    arr = np.array(x, dtype=np.float64, copy=True)
    if arr.ndim != 1 or arr.size == 0:
        raise InjectionError(f"expected a non-empty 1-D series, got shape {arr.shape}")
    return arr


def _check_window(n: int, t_s: int, t_e: int) -> tuple[int, int]:
    t_s, t_e = int(t_s), int(t_e)
    if not 0 <= t_s <= t_e < n:
        raise InjectionError(f"window [{t_s}, {t_e}] is not inside a series of {n} samples")
    return t_s, t_e


def _window_result(p: np.ndarray, new: np.ndarray, t_s: int, t_e: int, kind: str, **params) -> Injected:
    out = p.copy()
    out[t_s : t_e + 1] = new
    mask = np.zeros(len(p), bool)
    mask[t_s : t_e + 1] = True
    return Injected(out, mask, (t_s, t_e), kind, params=params)


def random_window(rng: np.random.Generator, n: int, min_len: int = 4, max_len: int | None = None) -> tuple[int, int]:
    """A random inclusive window [t_s, t_e] of length min_len..max_len inside n samples."""
    max_len = min(n, max_len or n)
    if not 1 <= min_len <= max_len:
        raise InjectionError(f"cannot fit a window of {min_len}..{max_len} samples in {n}")
    length = int(rng.integers(min_len, max_len + 1))
    t_s = int(rng.integers(0, n - length + 1))
    return t_s, t_s + length - 1


# --- false-data-injection templates (Cui, Wang and Yue 2019) ---------------------------------


def scaling(x: np.ndarray, t_s: int, t_e: int, lam: float) -> Injected:
    p = _series(x)
    t_s, t_e = _check_window(len(p), t_s, t_e)
    return _window_result(p, p[t_s : t_e + 1] * (1 + lam), t_s, t_e, "scaling", lam=lam)


def ramp_i(x: np.ndarray, t_s: int, t_e: int, lam: float) -> Injected:
    p = _series(x)
    t_s, t_e = _check_window(len(p), t_s, t_e)
    t = np.arange(t_s, t_e + 1)
    return _window_result(p, p[t] * (1 + lam * (t - t_s)), t_s, t_e, "ramp_i", lam=lam)


def ramp_ii(x: np.ndarray, t_s: int, t_e: int, lam: float | None = None, *,
            peak: float | None = None) -> Injected:
    """Ramping type II with slope ``lam`` per sample, or given by its ``peak``: the relative change
    at t_m, ``peak = lam (t_e - t_s) / 2`` (the up-then-down ramp 1 + peak (1 - |2 (t - t_s) /
    (t_e - t_s) - 1|), the same triangle)."""
    p = _series(x)
    t_s, t_e = _check_window(len(p), t_s, t_e)
    if (lam is None) == (peak is None):
        raise InjectionError("ramp_ii takes either lam or peak")
    t = np.arange(t_s, t_e + 1)
    if peak is not None:
        factor = 1 + peak * (1 - np.abs(np.linspace(-1, 1, len(t))))
        return _window_result(p, p[t] * factor, t_s, t_e, "ramp_ii", peak=peak)
    t_m = (t_s + t_e) / 2
    factor = np.where(t <= t_m, 1 + lam * (t - t_s), 1 + lam * (t_e - t))
    return _window_result(p, p[t] * factor, t_s, t_e, "ramp_ii", lam=lam)


def pulse(x: np.ndarray, t_p: int, lam: float) -> Injected:
    p = _series(x)
    t_p, _ = _check_window(len(p), t_p, t_p)
    return _window_result(p, p[t_p] * (1 + lam), t_p, t_p, "pulse", lam=lam)


def random_additive(x: np.ndarray, t_s: int, t_e: int, lam: float, rng: np.random.Generator) -> Injected:
    p = _series(x)
    t_s, t_e = _check_window(len(p), t_s, t_e)
    scale = float(np.nanmean(np.abs(p[t_s : t_e + 1])))
    u = rng.random(t_e - t_s + 1)
    return _window_result(p, p[t_s : t_e + 1] + lam * u * scale, t_s, t_e, "random", lam=lam, scale=scale)


def smooth_curve(x: np.ndarray, t_s: int, t_e: int, lam: float) -> Injected:
    p = _series(x)
    t_s, t_e = _check_window(len(p), t_s, t_e)
    t = np.arange(t_s, t_e + 1)
    span = max(t_e - t_s, 1)
    line = p[t_s] + (p[t_e] - p[t_s]) * (t - t_s) / span
    curve = line * (1 + lam * np.sin(np.pi * (t - t_s) / span))
    return _window_result(p, curve, t_s, t_e, "smooth", lam=lam)


def additive_ramp(x: np.ndarray, t_s: int, t_e: int, lam: float) -> Injected:
    p = _series(x)
    t_s, t_e = _check_window(len(p), t_s, t_e)
    t = np.arange(t_s, t_e + 1)
    return _window_result(p, p[t] + lam * (t - t_s), t_s, t_e, "additive_ramp", lam=lam)


# The templates with the signature (x, t_s, t_e, lam), by kind: what a live attack can apply.
WINDOW_TEMPLATES = {"scaling": scaling, "ramp_i": ramp_i, "ramp_ii": ramp_ii, "smooth": smooth_curve,
                    "additive_ramp": additive_ramp}


# --- missing data ------------------------------------------------------------------------------


def _nan_at(p: np.ndarray, mask: np.ndarray, kind: str, window=None, **params) -> Injected:
    out = p.copy()
    out[mask] = np.nan
    return Injected(out, mask, window, kind, params=params)


def missing_points(x: np.ndarray, rng: np.random.Generator, rate: float) -> Injected:
    """Each sample independently missing with probability ``rate`` (NaN)."""
    p = _series(x)
    if not 0 <= rate <= 1:
        raise InjectionError(f"rate must be in [0, 1], got {rate}")
    return _nan_at(p, rng.random(len(p)) < rate, "missing_points", rate=rate)


def missing_block(x: np.ndarray, rng: np.random.Generator, length: int, t_s: int | None = None) -> Injected:
    """``length`` consecutive samples missing (NaN), at ``t_s`` or at a random place."""
    p = _series(x)
    if not 1 <= length <= len(p):
        raise InjectionError(f"block length {length} does not fit {len(p)} samples")
    t_s = int(rng.integers(0, len(p) - length + 1)) if t_s is None else int(t_s)
    t_s, t_e = _check_window(len(p), t_s, t_s + length - 1)
    mask = np.zeros(len(p), bool)
    mask[t_s : t_e + 1] = True
    return _nan_at(p, mask, "missing_block", (t_s, t_e), length=length)


def outage(x: np.ndarray, rng: np.random.Generator, samples_per_day: int, days: int,
           start_day: int | None = None) -> Injected:
    """A gateway outage: ``days`` whole days missing (aligned to day boundaries)."""
    p = _series(x)
    n_days = len(p) // samples_per_day
    if not 1 <= days <= n_days:
        raise InjectionError(f"an outage of {days} days does not fit {n_days} whole days")
    d0 = int(rng.integers(0, n_days - days + 1)) if start_day is None else int(start_day)
    t_s, t_e = _check_window(len(p), d0 * samples_per_day, (d0 + days) * samples_per_day - 1)
    mask = np.zeros(len(p), bool)
    mask[t_s : t_e + 1] = True
    return _nan_at(p, mask, "outage", (t_s, t_e), days=days)


def exact_missing_mask(n: int, length: int, rate: float, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """[n, length] bool observed masks with exactly round(rate * length) missing points per row:
    scattered at random (``"random"``) or as one contiguous run at a random place (``"block"``).

    For scoring fillers at a stated missing rate (every method sees the same missing points); the
    per-sample draws of ``missing_points`` are for making training data."""
    n_miss = int(round(rate * length))
    if not 0 <= n_miss <= length:
        raise InjectionError(f"rate must be in [0, 1], got {rate}")
    observed = np.ones((n, length), dtype=bool)
    if pattern == "random":
        idx = np.argsort(rng.random((n, length)), axis=1)[:, :n_miss]
        np.put_along_axis(observed, idx, False, axis=1)
    elif pattern == "block":
        starts = rng.integers(0, length - n_miss + 1, size=n)
        cols = np.arange(length)[None, :]
        observed = ~((cols >= starts[:, None]) & (cols < starts[:, None] + n_miss))
    else:
        raise InjectionError(f"unknown missing pattern {pattern!r} (random | block)")
    return observed


# --- faults ------------------------------------------------------------------------------------


def spikes(x: np.ndarray, rng: np.random.Generator, n: int, magnitude_w: float | None = None) -> Injected:
    """``n`` isolated spikes: +magnitude (default 5 x the series' standard deviation, >= 1 kW)."""
    p = _series(x)
    mag = float(magnitude_w if magnitude_w is not None else max(5 * np.nanstd(p), 1000.0))
    idx = rng.choice(len(p), size=min(n, len(p)), replace=False)
    out = p.copy()
    out[idx] += mag * rng.uniform(0.8, 1.2, len(idx))
    mask = np.zeros(len(p), bool)
    mask[idx] = True
    return Injected(out, mask, None, "spike", params={"magnitude_w": mag})


def stuck(x: np.ndarray, t_s: int, t_e: int) -> Injected:
    """The meter repeats the value at t_s until t_e."""
    p = _series(x)
    t_s, t_e = _check_window(len(p), t_s, t_e)
    return _window_result(p, np.full(t_e - t_s + 1, p[t_s]), t_s, t_e, "stuck")


def negative(x: np.ndarray, rng: np.random.Generator, n: int) -> Injected:
    """Sign errors: ``n`` samples reported as -|p|."""
    p = _series(x)
    idx = rng.choice(len(p), size=min(n, len(p)), replace=False)
    out = p.copy()
    out[idx] = -np.abs(out[idx])
    mask = np.zeros(len(p), bool)
    mask[idx] = True
    return Injected(out, mask, None, "negative")


def nan_values(x: np.ndarray, rng: np.random.Generator, n: int) -> Injected:
    """Corrupt readings: ``n`` samples become NaN (unlike missing samples, the record exists)."""
    p = _series(x)
    mask = np.zeros(len(p), bool)
    mask[rng.choice(len(p), size=min(n, len(p)), replace=False)] = True
    return _nan_at(p, mask, "nan")


def clock_jump(ts_s: np.ndarray, x: np.ndarray, at: int, jump_s: float) -> Injected:
    """The meter clock jumps by ``jump_s`` (may be negative) from sample ``at`` on."""
    p = _series(x)
    ts = np.array(ts_s, dtype=np.float64, copy=True)
    if len(ts) != len(p):
        raise InjectionError(f"ts_s has {len(ts)} samples, values {len(p)}")
    at, _ = _check_window(len(p), at, at)
    ts[at:] += jump_s
    mask = np.zeros(len(p), bool)
    mask[at:] = True
    return Injected(p, mask, (at, len(p) - 1), "clock_jump", ts_s=ts, params={"jump_s": jump_s})


def duplicates(ts_s: np.ndarray, x: np.ndarray, rng: np.random.Generator, n: int) -> Injected:
    """``n`` samples delivered twice; the copies follow their originals and are flagged."""
    p = _series(x)
    ts = np.asarray(ts_s, dtype=np.float64)
    if len(ts) != len(p):
        raise InjectionError(f"ts_s has {len(ts)} samples, values {len(p)}")
    idx = np.sort(rng.choice(len(p), size=min(n, len(p)), replace=False))
    order = np.sort(np.concatenate([np.arange(len(p)), idx]), kind="stable")
    mask = np.zeros(len(order), bool)
    mask[1:] = order[1:] == order[:-1]
    return Injected(p[order], mask, None, "duplicate", ts_s=ts[order], params={"n": len(idx)})


# --- batch helper for training ------------------------------------------------------------------


@dataclass
class AttackConfig:
    """Random FDI attacks for training data: which templates and how strong."""

    kinds: tuple[str, ...] = FDI_KINDS
    scale_lam: tuple[float, float] = (0.1, 0.5)  # |lambda| for scaling, pulse, random, smooth
    ramp_total: tuple[float, float] = (0.1, 0.6)  # lambda * window length for the ramps
    min_len: int = 4
    max_len: int = 24
    signed: bool = True  # attacks may lower (negative lambda) as well as raise


def random_attack(x: np.ndarray, rng: np.random.Generator, cfg: AttackConfig | None = None) -> Injected:
    """One FDI attack of a random template, window and strength."""
    cfg = cfg or AttackConfig()
    p = _series(x)
    kind = str(rng.choice(cfg.kinds))
    t_s, t_e = random_window(rng, len(p), min(cfg.min_len, len(p)), min(cfg.max_len, len(p)))
    sign = -1.0 if cfg.signed and rng.random() < 0.5 else 1.0
    lam = sign * float(rng.uniform(*cfg.scale_lam))
    ramp_lam = sign * float(rng.uniform(*cfg.ramp_total)) / max(t_e - t_s, 1)
    if kind == "scaling":
        return scaling(p, t_s, t_e, lam)
    if kind == "ramp_i":
        return ramp_i(p, t_s, t_e, ramp_lam)
    if kind == "ramp_ii":
        return ramp_ii(p, t_s, t_e, 2 * ramp_lam)
    if kind == "pulse":
        return pulse(p, t_s, abs(lam) * 4)
    if kind == "random":
        return random_additive(p, t_s, t_e, abs(lam), rng)
    if kind == "smooth":
        return smooth_curve(p, t_s, t_e, lam)
    if kind == "additive_ramp":
        scale = float(np.nanmean(np.abs(p))) or 1.0
        return additive_ramp(p, t_s, t_e, ramp_lam * scale)
    raise InjectionError(f"unknown attack kind {kind!r}; known: {FDI_KINDS}")


def attack_batch(load_w: np.ndarray, rng: np.random.Generator, fraction: float = 0.5,
                 cfg: AttackConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Attack a random ``fraction`` of the rows of ``load_w`` [B, L].

    Returns (attacked [B, L] float32, point_label [B, L] bool, window_label [B] bool,
    kind_code [B] int8).
    """
    x = np.asarray(load_w, dtype=np.float64)
    if x.ndim != 2:
        raise InjectionError(f"expected [B, L], got shape {x.shape}")
    out = x.copy()
    points = np.zeros(x.shape, bool)
    codes = np.zeros(len(x), np.int8)
    for i in np.flatnonzero(rng.random(len(x)) < fraction):
        inj = random_attack(x[i], rng, cfg)
        out[i], points[i], codes[i] = inj.values, inj.point_mask, inj.code
    return out.astype(np.float32), points, codes > 0, codes
