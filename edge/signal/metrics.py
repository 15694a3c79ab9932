"""NILM metrics (seed 002 eqs. 14-15) and gap-filling metrics (seed 002 §5.2.2)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from edge.signal.errors import SignalInputError


def confusion(true_on, pred_on) -> dict[str, int]:
    t, p = np.asarray(true_on, bool), np.asarray(pred_on, bool)
    if t.shape != p.shape:
        raise SignalInputError(f"true_on {t.shape} and pred_on {p.shape} differ")
    return {"tp": int((t & p).sum()), "tn": int((~t & ~p).sum()),
            "fp": int((~t & p).sum()), "fn": int((t & ~p).sum())}


def f1_score(true_on, pred_on) -> float:
    """Eq. (14); 0 when there is neither a true nor a predicted ON (undefined precision/recall)."""
    c = confusion(true_on, pred_on)
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def accuracy(true_on, pred_on) -> float:
    """Eq. (15)."""
    c = confusion(true_on, pred_on)
    return (c["tp"] + c["tn"]) / max(sum(c.values()), 1)


def energy_mae_w(true_w, pred_w) -> float:
    """Mean absolute error of the appliance power (W); times the span gives the energy error."""
    a, b = np.asarray(true_w, float), np.asarray(pred_w, float)
    if a.shape != b.shape:
        raise SignalInputError(f"true_w {a.shape} and pred_w {b.shape} differ")
    return float(np.mean(np.abs(a - b))) if a.size else 0.0


def nilm_scores(true_on, pred_on, true_w, pred_w, resolution_s: float) -> dict[str, float]:
    """F1, accuracy, power MAE (W) and total-energy error (Wh) for one appliance."""
    return {
        "f1": f1_score(true_on, pred_on),
        "accuracy": accuracy(true_on, pred_on),
        "power_mae_w": energy_mae_w(true_w, pred_w),
        "energy_abs_error_wh": float(abs(np.sum(true_w) - np.sum(pred_w)) * resolution_s / 3600),
    }


# --- gap filling (seed 002 §5.2.2) -------------------------------------------------------------

def sample_mse(true, filled, missing) -> float:
    """Mean square error over the filled samples."""
    m = np.asarray(missing, bool)
    d = np.asarray(true, float)[m] - np.asarray(filled, float)[m]
    return float(np.mean(d**2)) if d.size else 0.0


def frequency_response_error(true, filled) -> float:
    """Symmetric relative error of the magnitude spectra (mean removed) of a window:
    ``|| |F(filled)| - |F(true)| || / (|| |F(true)| || + || |F(filled)| ||)``, in [0, 1].

    Seed 002 compares Fourier transforms without fixing a formula; the symmetric form stays
    defined on flat windows (a constant load with a filled wiggle scores 1, not infinity)."""
    a = np.abs(np.fft.rfft(np.asarray(true, float) - np.mean(true), axis=-1))
    b = np.abs(np.fft.rfft(np.asarray(filled, float) - np.mean(filled), axis=-1))
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den > 1e-12 else 0.0


def jitter_power(x, smooth_samples: int = 5) -> float:
    """Power of the fast part: the signal minus its moving-average low-pass (seed 002 Fig. 9)."""
    x = np.asarray(x, float)
    return float(np.mean((x - uniform_filter1d(x, smooth_samples, mode="nearest")) ** 2))


def jitter_power_error(true, filled, smooth_samples: int = 5) -> float:
    """Symmetric relative error of the jitter power, ``|J_f - J_t| / (J_f + J_t)`` in [0, 1]
    (defined when the true window has no jitter at all)."""
    jt, jf = jitter_power(true, smooth_samples), jitter_power(filled, smooth_samples)
    return float(abs(jf - jt) / (jf + jt)) if jf + jt > 1e-12 else 0.0
