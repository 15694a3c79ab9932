"""The metrics of the project, one implementation each (numpy only, so the Pi can score too).

* classification (anomaly windows and points, NILM ON/OFF): accuracy, precision, recall and F1
  from one confusion count (seed 002 eqs. 14-15; seed 000 §IV-A);
* regression (imputation, forecasting): MAE and RMSE in W, MAPE in % over the points whose true
  value is at least ``mape_floor_w`` (household loads are near zero at night, where MAPE explodes;
  seed 004 reports MAE/MAPE);
* NILM per appliance: ON/OFF F1 and the power or energy error, for one series
  (``nilm_scores``) or for a batch of windows (``nilm_metrics``);
* gap filling (seed 002 §5.2.2): sample MSE, frequency-response and jitter-power errors.

The evaluation (``trainer.evaluation``), the distillation report (``trainer.distill``) and the
NILM benchmarks (``bench/nilm.py``, ``bench/nilm_classical.py``) all score with these functions, so one prediction gets one
value wherever it is reported (a test checks it).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from edge.signal.errors import SignalInputError

# --- classification ----------------------------------------------------------------------------


def confusion(true_on, pred_on) -> dict[str, int]:
    """True/false positives and negatives of boolean flags against boolean (or 0/1) labels."""
    t, p = np.asarray(true_on).astype(bool), np.asarray(pred_on).astype(bool)
    if t.shape != p.shape:
        raise SignalInputError(f"labels {t.shape} and predictions {p.shape} differ in shape")
    return {"tp": int(np.sum(t & p)), "tn": int(np.sum(~t & ~p)),
            "fp": int(np.sum(~t & p)), "fn": int(np.sum(t & ~p))}


def classification_metrics(true_on, pred_on) -> dict:
    """Accuracy (eq. 15), precision, recall and F1 (eq. 14), with the counts.

    Precision (recall) is 0 when nothing is predicted (nothing is true), and F1 is 0 when both are:
    a detector that finds nothing in data with nothing to find gets no credit."""
    c = confusion(true_on, pred_on)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / max(tp + fp + fn + tn, 1), "precision": precision,
            "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def f1_score(true_on, pred_on) -> float:
    """F1 of ``classification_metrics`` (seed 002 eq. 14)."""
    return classification_metrics(true_on, pred_on)["f1"]


def accuracy(true_on, pred_on) -> float:
    """Accuracy of ``classification_metrics`` (seed 002 eq. 15)."""
    return classification_metrics(true_on, pred_on)["accuracy"]


# --- regression --------------------------------------------------------------------------------


def regression_metrics(y_true, y_pred, mape_floor_w: float = 50.0) -> dict:
    """MAE (W), RMSE (W) and MAPE (%) over all given points; MAPE only where |y_true| >=
    ``mape_floor_w`` (NaN if no point qualifies). Raises ``SignalInputError`` on a shape mismatch
    or a non-finite prediction (a method that produced NaN is not scored as if it had not)."""
    y_true, y_pred = np.asarray(y_true, float).ravel(), np.asarray(y_pred, float).ravel()
    if y_true.shape != y_pred.shape:
        raise SignalInputError(f"shape mismatch {y_true.shape} vs {y_pred.shape}")
    if not np.isfinite(y_pred).all():
        raise SignalInputError(f"{np.sum(~np.isfinite(y_pred))} non-finite predictions")
    err = y_pred - y_true
    big = np.abs(y_true) >= mape_floor_w
    mape = float(np.mean(np.abs(err[big]) / np.abs(y_true[big])) * 100) if big.any() else float("nan")
    return {"mae_w": float(np.mean(np.abs(err))), "rmse_w": float(np.sqrt(np.mean(err**2))),
            "mape_pct": mape, "n_points": int(y_true.size)}


# --- NILM --------------------------------------------------------------------------------------


def power_mae_w(true_w, pred_w) -> float:
    """Mean absolute error of an appliance's power (W) over all samples (0 for no sample)."""
    a, b = np.asarray(true_w, float), np.asarray(pred_w, float)
    if a.shape != b.shape:
        raise SignalInputError(f"true_w {a.shape} and pred_w {b.shape} differ")
    return float(np.mean(np.abs(a - b))) if a.size else 0.0


def window_energy_mae_wh(true_w, pred_w, resolution_s: float) -> float:
    """Mean over windows [N, L] of |true energy - predicted energy| (Wh) of each window."""
    a, b = np.asarray(true_w, float), np.asarray(pred_w, float)
    if a.shape != b.shape:
        raise SignalInputError(f"true_w {a.shape} and pred_w {b.shape} differ")
    energy_true = a.sum(-1) * resolution_s / 3600.0
    energy_pred = b.sum(-1) * resolution_s / 3600.0
    return float(np.mean(np.abs(energy_pred - energy_true)))


def nilm_scores(true_on, pred_on, true_w, pred_w, resolution_s: float) -> dict[str, float]:
    """One appliance on one series: F1, accuracy, precision, recall, power MAE (W) and the error
    of its total energy (Wh)."""
    c = classification_metrics(true_on, pred_on)
    return {
        "f1": c["f1"], "accuracy": c["accuracy"], "precision": c["precision"], "recall": c["recall"],
        "power_mae_w": power_mae_w(true_w, pred_w),
        "energy_abs_error_wh": float(abs(np.sum(true_w) - np.sum(pred_w)) * resolution_s / 3600),
    }


def nilm_metrics(true_w, true_on, pred_w, pred_on, appliances: list[str], resolution_s: float) -> dict:
    """Windows [N, A, L]: per appliance the ON/OFF F1 (precision, recall) over all points and the
    mean absolute error of each window's energy (Wh); plus their means over appliances."""
    true_w, pred_w = np.asarray(true_w), np.asarray(pred_w)
    true_on, pred_on = np.asarray(true_on), np.asarray(pred_on)
    per = {}
    for j, name in enumerate(appliances):
        c = classification_metrics(true_on[:, j], pred_on[:, j])
        per[name] = {"f1": c["f1"], "precision": c["precision"], "recall": c["recall"],
                     "energy_mae_wh": window_energy_mae_wh(true_w[:, j], pred_w[:, j], resolution_s),
                     "energy_true_mean_wh": float(np.mean(np.asarray(true_w[:, j], float).sum(-1)
                                                          * resolution_s / 3600.0))}
    return {"per_appliance": per,
            "mean_f1": float(np.mean([v["f1"] for v in per.values()])),
            "mean_energy_mae_wh": float(np.mean([v["energy_mae_wh"] for v in per.values()]))}


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
