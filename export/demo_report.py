"""What the demo shows afterwards: the summary table, ``demo.png`` (load, forecast, anomaly scores,
the model's disaggregation beside the simulator's truth) and ``report.md``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.agent.entities import appliance_name
from edge.agent.gapfill import fill_window
from edge.agent.inference import ModelHost, open_model
from edge.agent.meters import household_power_source
from edge.agent.store import ReadingStore
from edge.nilm_output import decide
from edge.task_io import APPLIANCE_W, LOAD_W, ON_LOGIT
from export.backtest import PastForecast, past_day_forecast
from export.demo_collector import Collector
from export.demo_gateway import ATTACK_AFTER_S, ATTACK_BEFORE_S, ATTACKED_METER, GATEWAY_ID, METERS

NILM_PLOT_HOURS = 3.0  # the disaggregated stack in demo.png covers this much of the end

log = logging.getLogger(__name__)


def summarise(collector: Collector, history: dict[str, int]) -> dict:
    kinds = collector.by_kind()
    meters = {}
    for meter_id, *_rest in METERS:
        got = kinds.get(meter_id, {})
        seqs = sorted({int(b["seq"]) for b in got.get("reading", []) if "seq" in b})
        live = [s for s in seqs if s > history.get(meter_id, 0)]
        gaps = int(sum(b - a - 1 for a, b in zip(live, live[1:], strict=False) if b > a + 1))
        anomaly = got.get("anomaly", [])
        appliances = got.get("appliances", [])
        forecast = got.get("forecast", [])
        on_now = [n for n, s in (appliances[-1].get("appliances", {}) if appliances else {}).items()
                  if s.get("on")]
        meters[meter_id] = {
            "messages": {k: len(v) for k, v in got.items()},
            "live_readings": len(live),
            "seq_gaps": gaps,
            "anomaly_flags": sum(bool(b.get("anomaly")) for b in anomaly),
            "anomaly_last_score": anomaly[-1].get("score") if anomaly else None,
            "appliances_on": on_now,
            "forecast_next_hour_w": forecast[-1].get("hour_ahead_w") if forecast else None,
            "reports": [b.get("text") or b.get("report") for b in got.get("report", [])][-1:],
            "availability": [state for _t, state in collector.availability(meter_id)],
        }
    return {"meters": meters, "anomaly_check": anomaly_check(meters),
            "discovery_configs": len(collector.discovery_topics()), "messages_total": len(collector.messages)}


def anomaly_check(meters: dict[str, dict]) -> dict:
    """What the demo must show: the attacked meter flagged during its attack (it lasts the whole
    agent run), every other meter never flagged."""
    attacked = bool(meters.get(ATTACKED_METER, {}).get("anomaly_flags"))
    clean_flagged = sorted(m for m, v in meters.items() if m != ATTACKED_METER and v["anomaly_flags"])
    return {"attacked_meter": ATTACKED_METER, "attacked_flagged": attacked, "clean_meters_flagged": clean_flagged,
            "passed": attacked and not clean_flagged}


def print_summary(summary: dict, stage_seconds: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if stage_seconds:
        t = Table(title="Workstation pipeline")
        t.add_column("stage")
        t.add_column("seconds", justify="right")
        for k, v in stage_seconds.items():
            t.add_row(k, f"{v:.1f}")
        console.print(t)
    t = Table(title=f"Gateway '{GATEWAY_ID}' over MQTT ({summary['messages_total']} messages, "
                    f"{summary['discovery_configs']} Home Assistant discovery configs)")
    for col in ("meter", "live readings", "seq gaps", "anomaly flags", "last score", "appliances on",
                "next hour (W)"):
        t.add_column(col)
    for meter_id, m in summary["meters"].items():
        t.add_row(meter_id, str(m["live_readings"]), str(m["seq_gaps"]), str(m["anomaly_flags"]),
                  str(m["anomaly_last_score"]), ", ".join(m["appliances_on"]) or "-",
                  str(m["forecast_next_hour_w"]))
    console.print(t)
    check = summary.get("anomaly_check")
    if check:
        clean = ", ".join(check["clean_meters_flagged"]) or "none"
        console.print(f"anomaly check {'passed' if check['passed'] else 'FAILED'}: attacked meter "
                      f"{check['attacked_meter']} flagged: {'yes' if check['attacked_flagged'] else 'no'}; "
                      f"clean meters flagged: {clean}")


def _plot_anomaly_scores(ax, anomalies: list[dict], now_s: float):
    """Each anomaly message's window score at its window's end, on a right-hand 0-1 axis, with
    the threshold dashed and flagged windows filled; returns the line for the legend."""
    cx = ax.twinx()
    end_h = np.array([(b.get("window_end_s", b["window_start_s"]) - now_s) / 3600 for b in anomalies])
    score = np.array([b["score"] for b in anomalies], float)
    flagged = np.array([bool(b["anomaly"]) for b in anomalies])
    (line,) = cx.plot(end_h, score, color="C3", lw=1, marker=".", ms=4)
    cx.scatter(end_h[flagged], score[flagged], color="C3", s=22, zorder=3)
    cx.axhline(float(anomalies[-1].get("threshold", 0.5)), color="C3", ls="--", lw=0.8, alpha=0.6)
    cx.set_ylim(0, 1)
    cx.set_ylabel("anomaly score", color="C3")
    return line


@dataclass
class Disaggregated:
    """The last hours of one meter as the agent's NILM decides them: ``ts_s`` [T] bin starts,
    ``load_w`` [T] the aggregate the model saw (W, gaps filled), ``power_w`` [A, T] per appliance
    (W, 0 when off, the sum never above ``load_w``)."""

    names: tuple[str, ...]
    ts_s: np.ndarray
    load_w: np.ndarray
    power_w: np.ndarray


def disaggregate_history(model, store: ReadingStore, meter_id: str, now_s: float, hours: float
                         ) -> Disaggregated | None:
    """Consecutive NILM windows over the last ``hours`` of the store (``edge.agent.inference``'s
    model and ``edge.nilm_output.decide`` with the bundle's calibration: what the agent publishes,
    sample by sample). None when the store holds less than one window."""
    shape = model.tasks["nilm"]
    res, n = shape.resolution_s, shape.length
    n_windows = int(hours * 3600 // (res * n))
    last = int(now_s // res)  # the bin in progress is left out
    first = last - n_windows * n
    if n_windows < 1:
        return None
    mean_w = np.full(n_windows * n, np.nan)
    for k, total, count in store.bins(meter_id, res, first * res):
        if first <= k < last and count:
            mean_w[int(k) - first] = total / count
    if np.isnan(mean_w).mean() > 0.5:
        return None
    names, loads, powers = tuple(model.appliances), [], []
    for w in range(n_windows):
        start_s = (first + w * n) * res
        load = fill_window(mean_w[w * n:(w + 1) * n], start_s, res).filled_w.astype(np.float32)
        out = model.runtime.run("nilm", {LOAD_W: load[None]})
        d = decide(out[ON_LOGIT][0], out[APPLIANCE_W][0], load, names, model.nilm_calibration)
        loads.append(load)
        powers.append(d.power_w)
    return Disaggregated(names, (first + np.arange(n_windows * n)) * res, np.concatenate(loads),
                         np.concatenate(powers, axis=1))


def true_appliance_power(meter, nilm: Disaggregated) -> np.ndarray | None:
    """The simulator's truth behind a virtual household meter, as bin means at the NILM bins:
    [A + 1, T] for the model's appliances and the rest of the house ("other")."""
    if meter is None or meter.options.get("profile", "household") != "household":
        return None
    source = household_power_source(int(meter.options["seed"]), float(meter.options["start_s"]), meter.options)
    res = float(nilm.ts_s[1] - nilm.ts_s[0]) if len(nilm.ts_s) > 1 else 60.0
    out = np.zeros((len(nilm.names) + 1, len(nilm.ts_s)))
    day_s = 86400
    for day in np.unique(nilm.ts_s // day_s):
        trace = source.trace(int(day))
        sel = np.nonzero(nilm.ts_s // day_s == day)[0]
        idx = ((nilm.ts_s[sel] - day * day_s) // trace.resolution_s).astype(int)
        step = max(int(res // trace.resolution_s), 1)
        cols = np.clip(idx[:, None] + np.arange(step)[None, :], 0, len(trace) - 1)  # [T_day, step]
        total = np.asarray(trace.power_w, np.float64)[cols].mean(axis=1)
        for a, name in enumerate(nilm.names):
            if name in trace.appliances:
                out[a, sel] = np.asarray(trace.appliances[name].power_w, np.float64)[cols].mean(axis=1)
        out[-1, sel] = np.maximum(total - out[:-1, sel].sum(axis=0), 0.0)
    return out


def plot_stack(ax, ts_s: np.ndarray, power_w: np.ndarray, names, total_w: np.ndarray, now_s: float,
               title: str) -> None:
    """Appliance powers stacked under the aggregate (black line), hours from the demo start."""
    hours = (ts_s - now_s) / 3600
    colors = [f"C{i % 10}" for i in range(len(names))]
    if names and names[-1] == "other":
        colors[-1] = "0.85"
    ax.stackplot(hours, power_w, labels=[appliance_name(n) for n in names], colors=colors, step="post")
    ax.step(hours, total_w, where="post", color="k", lw=0.8, label="aggregate")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("hours from demo start")
    ax.set_ylabel("power (W)")
    ax.legend(loc="upper left", fontsize=7, ncol=2)


def past_day_forecasts(bundle: Path, store_path: Path, now_s: float) -> dict[str, PastForecast]:
    """Each demo meter's forecast of the last whole day beside what it measured
    (``export.backtest.past_day_forecast``: the agent's forecast step on the store's readings);
    meters without one are left out."""
    host = ModelHost(opener=lambda p: open_model(p, "onnx", "int8", 1))
    if not host.try_load(bundle):
        log.error("past-day forecast: %s", host.last_error)
        return {}
    store = ReadingStore(store_path)
    try:
        found = {meter_id: past_day_forecast(host, store, meter_id, now_s) for meter_id, *_ in METERS}
    finally:
        store.close()
    return {k: v for k, v in found.items() if v is not None}


def _plot_past_forecast(ax, past: PastForecast, now_s: float) -> None:
    hours = (past.start_s + past.resolution_s * np.arange(len(past.forecast_w)) - now_s) / 3600
    context = f", {past.history_days} days of context" if past.history_days else ""
    ax.step(hours, past.forecast_w, where="post", color="C2", ls="--",
            label=f"forecast of this past day from the day before{context} (MAPE {past.mape_pct:.0f} %)")


def plot_demo(store_path: Path, collector: Collector, png: Path, now_s: float, bundle: Path | None = None,
              meters=(), past: dict[str, PastForecast] | None = None) -> Path:
    """Per meter: the measured load with forecast and anomaly scores (``past``: meter -> the
    forecast of the last whole day, :func:`past_day_forecasts`, drawn over what was measured), and
    the last ``NILM_PLOT_HOURS`` disaggregated (model) beside the simulator's truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    kinds = collector.by_kind()
    model = open_model(bundle, "onnx", "int8", 1) if bundle is not None else None
    model = model if model is not None and model.has("nilm") else None
    meter_by_id = {m.id: m for m in meters}
    store = ReadingStore(store_path)
    fig, axes = plt.subplots(len(METERS), 3, figsize=(20, 4.4 * len(METERS)),
                             gridspec_kw={"width_ratios": [3, 2, 2]}, squeeze=False)
    try:
        for row, (meter_id, _kind, _seed, _iv, name) in enumerate(METERS):
            ax = axes[row][0]
            bins = store.bins(meter_id, 1800.0, now_s - 2 * 86400)
            if bins:
                k, s, c = (np.array(v, float) for v in zip(*bins, strict=True))
                ax.step((k * 1800 - now_s) / 3600, s / np.maximum(c, 1), where="post",
                        label="measured (30-min mean)", color="C0")
            if past and meter_id in past:
                _plot_past_forecast(ax, past[meter_id], now_s)
            fc = kinds.get(meter_id, {}).get("forecast", [])
            if fc:
                day = np.array(fc[-1]["day_ahead_w"], float)
                start_h = (fc[-1]["start_s"] - now_s) / 3600
                ax.step(start_h + np.arange(len(day)) * 0.5, day, where="post", color="C1",
                        label="day-ahead forecast (int8 student)")
            if meter_id == ATTACKED_METER:
                ax.axvspan(-ATTACK_BEFORE_S / 3600, ATTACK_AFTER_S / 3600, color="red", alpha=0.08,
                           label="injected scaling attack")
            anomalies = kinds.get(meter_id, {}).get("anomaly", [])
            for b in anomalies:
                for t in b.get("anomalous_points_ts_s", []):
                    ax.axvline((t - now_s) / 3600, color="red", alpha=0.15, lw=1)
            ax.set_title(f"{meter_id}: {name}")
            ax.set_xlabel("hours from demo start")
            ax.set_ylabel("power (W)")
            handles, labels = ax.get_legend_handles_labels()
            if anomalies:
                handles.append(_plot_anomaly_scores(ax, anomalies, now_s))
                labels.append("anomaly score of the day ending here (right axis)")
            ax.legend(handles, labels, loc="upper left", fontsize=8)
            nilm = disaggregate_history(model, store, meter_id, now_s, NILM_PLOT_HOURS) if model else None
            if nilm is not None:
                truth = true_appliance_power(meter_by_id.get(meter_id), nilm)
                plot_stack(axes[row][1], nilm.ts_s, nilm.power_w, nilm.names, nilm.load_w, now_s,
                           "NILM (int8 model, the agent's decision rules)")
                if truth is not None:
                    note = "; the readings are scaled by the attack" if meter_id == ATTACKED_METER else ""
                    plot_stack(axes[row][2], nilm.ts_s, truth, nilm.names + ("other",),
                               truth.sum(axis=0), now_s, f"ground truth (simulator{note})")
            for bx in axes[row][1:]:
                if not bx.has_data():
                    bx.set_axis_off()
    finally:
        store.close()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def write_report(path: Path, summary: dict, pipeline: dict | None, agent_rc: int) -> Path:
    lines = ["# unimeter demo report", ""]
    if pipeline:
        lines += ["## Training (teacher vs distilled student, held-out validation)", "",
                  "| task | metric | teacher | student |", "|---|---|---|---|"]
        for task, rep in pipeline.get("distill_reports", {}).items():
            for metric, value in rep.get("teacher", {}).items():
                s = rep.get("student", {}).get(metric)
                lines.append(f"| {task} | {metric} | {value:.4g} | {s:.4g} |" if s is not None else
                             f"| {task} | {metric} | {value:.4g} | - |")
        lines.append("")
    lines += [f"## Gateway (agent exit code {agent_rc})", ""]
    for meter_id, m in summary["meters"].items():
        lines.append(f"- **{meter_id}**: {m['live_readings']} live readings (seq gaps: {m['seq_gaps']}), "
                     f"messages {m['messages']}, anomaly flags {m['anomaly_flags']}, appliances on now: "
                     f"{', '.join(m['appliances_on']) or 'none'}")
        for text in m["reports"]:
            if text:
                lines += ["", f"  > {text}"]
    lines.append("")
    path.write_text("\n".join(lines))
    return path
