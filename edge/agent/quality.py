"""Quality and report payloads for one meter, from its resampled windows (numpy, edge.signal)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge.signal.quality import quality_summary


def quality_body(st: Any, n_res: float, n_len: int, period_s: float) -> dict:
    """Data quality over the rolling high-rate window (seed 002's availability, gaps, activity).

    The window's closed bins are the samples: ``availability`` is the share of bins with at least
    one reading; ``coverage`` repeats it under the name the Home Assistant sensor reads.
    """
    start_s, window, counts = st.nilm.window(n_len)
    ok = np.isfinite(window)
    body: dict[str, Any] = {"window_start_s": start_s, "resolution_s": n_res,
                            "readings_in_period": st.received, "period_s": period_s,
                            "reading_rate_hz": round(st.received / period_s, 4) if period_s else None,
                            "flags_seen": st.flags_seen, "last_reading_age_s":
                            round(time.time() - st.last_received_s, 3) if st.last_received_s else None}
    if ok.any():
        ts = start_s + n_res * np.flatnonzero(ok)
        q = quality_summary(st.id, ts, window[ok], n_res, start_s=start_s, end_s=start_s + n_len * n_res)
        q.pop("hourly_q", None)
        body.update(q)
        body["coverage"] = round(float(ok.mean()), 4)
    else:
        body.update({"coverage": 0.0, "n_gaps": 1, "longest_gap_s": n_len * n_res})
    return body


def fill_gaps(window_w: np.ndarray) -> np.ndarray:
    """Linear interpolation over the missing bins (NaN) of a resampled window; edges held flat.

    This is what ``edge.signal.gapfill.auto_fill`` picks for every gap under its default policy
    (linear for all lengths, chosen by bench/gapfill.py). It is written out here because importing
    ``edge.signal.gapfill`` loads every filler and scipy.signal with them (+69 MB RSS measured),
    which the Pi's 150 MB budget cannot afford for an interpolation. Long gaps in profile windows
    go to the imputation model instead (``profile_step``).
    """
    x = np.asarray(window_w, dtype=np.float64)
    ok = np.isfinite(x)
    if ok.all() or not ok.any():
        return x.astype(np.float32)
    idx = np.arange(len(x))
    return np.interp(idx, idx[ok], x[ok]).astype(np.float32)


def report_body(st: Any, profile_len: int, last: dict[str, dict]) -> dict:
    """A short natural-language report of the last day (profile window) and the latest results."""
    start_s, window, _ = st.profile.window(profile_len)
    ok = np.isfinite(window)
    res_h = st.profile.resolution_s / 3600.0
    lines = []
    if ok.any():
        energy_kwh = float(np.nansum(window) * res_h / 1000.0) * (len(window) / ok.sum())
        peak_i = int(np.nanargmax(window))
        peak_h = (start_s + peak_i * st.profile.resolution_s) % 86400 / 3600.0
        lines.append(f"Over the last {len(window) * res_h:.0f} h meter {st.id} used about "
                     f"{energy_kwh:.1f} kWh; the peak was {np.nanmax(window):.0f} W around "
                     f"{int(peak_h):02d}:{int(peak_h % 1 * 60):02d} UTC.")
        if not ok.all():
            lines.append(f"{100 * (1 - ok.mean()):.0f}% of the half-hours had no reading and were filled.")
    else:
        energy_kwh = None
        lines.append(f"Meter {st.id} delivered no readings in the last {len(window) * res_h:.0f} h.")
    anomaly = last.get("anomaly")
    if anomaly:
        faults = [k.replace("_", " ") for k in anomaly.get("anomaly_kinds", []) if k != "model"]
        if faults:
            lines.append(f"The meter's readings show a fault ({', '.join(faults)}); check the meter and the gateway.")
        if anomaly.get("model_anomaly", anomaly["anomaly"] and not faults):
            lines.append("The consumption pattern looked abnormal (score "
                         f"{anomaly['score']:.2f}); check the meter and the installation.")
        elif anomaly.get("anomaly_held"):
            lines.append("An alarm raised earlier is held until the readings have looked normal "
                         "long enough (by default a day).")
        elif not anomaly["anomaly"]:
            lines.append("No abnormal consumption pattern was detected.")
    apps = last.get("appliances", {}).get("appliances", {})
    running = [a.get("name", name) for name, a in apps.items() if a["on"]]
    if apps:
        lines.append(f"Running now: {', '.join(running)}." if running else "No tracked appliance is running now.")
        used = [(a.get("name", name), a.get("energy_today_kwh") or 0.0) for name, a in apps.items()]
        used = sorted((u for u in used if u[1] >= 0.01), key=lambda u: -u[1])
        if used:
            lines.append("Today so far: " + ", ".join(f"{n} {kwh:.2f} kWh" for n, kwh in used) + ".")
    fc = last.get("forecast")
    if fc:
        day_kwh = sum(fc["day_ahead_w"]) * fc["resolution_s"] / 3.6e6
        lines.append(f"Forecast for the next 24 h: about {day_kwh:.1f} kWh.")
    return {"text": " ".join(lines), "summary": summary(lines), "energy_kwh_last_day": energy_kwh,
            "window_start_s": start_s}


def summary(lines: list[str], max_chars: int = 250) -> str:
    """The report's first sentences that fit a Home Assistant state (at most 255 characters)."""
    out = ""
    for line in lines:
        candidate = f"{out} {line}".strip()
        if len(candidate) > max_chars:
            break
        out = candidate
    return out or lines[0][: max_chars - 1] + "…"
