"""PNG of one simulated week of one household with its appliances stacked (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.sim.specs import ALL_APPLIANCES, SPECS_BY_NAME
from edge.sim.trace import HouseholdTrace

COLORS = {
    "router": "#7f7f7f", "standby": "#c7c7c7", "fridge": "#9467bd", "freezer": "#c5b0d5",
    "heating": "#d62728", "cooling": "#17becf", "computer": "#8c564b", "kettle": "#2ca02c",
    "toaster": "#bcbd22", "microwave": "#ff7f0e", "lighting": "#ffbb78", "tv": "#e377c2",
    "water_heater": "#ff9896", "washing_machine": "#1f77b4", "dishwasher": "#aec7e8",
    "oven": "#98df8a", "tumble_dryer": "#dbdb8d", "ev": "#393b79", "pv": "gold",
}
_BASE_FIRST = {"always_on": 0, "compressor": 1, "variable": 3}


def _stack_order(name: str) -> tuple[int, int]:
    """Base loads at the bottom of the stack, then weather-driven loads, then appliance uses."""
    spec = SPECS_BY_NAME.get(name)
    rank = _BASE_FIRST.get(spec.kind, 4) if spec else (2 if name in ("heating", "cooling") else 5)
    return rank, ALL_APPLIANCES.index(name)


def plot_week(trace: HouseholdTrace, path: str | Path, day0: int = 0, days: int = 7,
              plot_resolution_s: int = 300) -> Path:
    """Stacked appliance power for ``days`` days from ``day0``, with the meter reading and weather."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    res = max(trace.resolution_s, plot_resolution_s - plot_resolution_s % trace.resolution_s)
    tr = trace if res == trace.resolution_s else trace.resample(res)
    per_day = 86400 // tr.resolution_s
    sl = slice(day0 * per_day, min(len(tr), (day0 + days) * per_day))
    t = tr.ts_s[sl].astype("datetime64[s]")
    names = sorted((n for n in tr.appliances if n != "pv"), key=_stack_order)
    stack = np.array([tr.appliances[n].power_w[sl] for n in names]) / 1000.0
    colors = [COLORS.get(n, "grey") for n in names]

    fig, (ax, axt) = plt.subplots(2, 1, figsize=(15, 7.5), sharex=True,
                                  gridspec_kw={"height_ratios": [4, 1]}, constrained_layout=True)
    ax.stackplot(t, stack, labels=names, colors=colors, linewidth=0)
    if "pv" in tr.appliances:
        ax.fill_between(t, tr.appliances["pv"].power_w[sl] / 1000.0, 0, color="gold", alpha=0.8, label="pv (export)")
    ax.plot(t, tr.power_w[sl] / 1000.0, color="black", linewidth=0.4, alpha=0.5, label="meter (net)")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_ylabel("active power (kW)")
    imp = tr.import_wh[sl]
    exp_ = tr.export_wh[sl]
    kwh = (imp[-1] - imp[0]) / 1000.0
    title = (f"Household {tr.household_id}: {len(t) // per_day} days from {str(t[0])[:10]}, "
             f"{tr.resolution_s // 60 or 1}{'-min' if tr.resolution_s >= 60 else '-s'} means, "
             f"import {kwh:.1f} kWh")
    if exp_[-1] > exp_[0]:
        title += f", export {(exp_[-1] - exp_[0]) / 1000.0:.1f} kWh"
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    hol = tr.is_holiday[sl]
    weekend = tr.weekday[sl] >= 5
    for mask, color in ((weekend, "lightblue"), (hol, "salmon")):
        if mask.any():
            for a in (ax, axt):
                a.fill_between(t, 0, 1, where=mask, color=color, alpha=0.15,
                               transform=a.get_xaxis_transform(), linewidth=0)
    axt.plot(t, tr.temperature_c[sl], color="tab:red", linewidth=1)
    axt.set_ylabel("outdoor (°C)")
    axt.grid(alpha=0.3)
    axt.xaxis.set_major_locator(mdates.DayLocator())
    axt.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
