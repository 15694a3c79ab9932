"""REDD low-frequency (Kolter and Johnson, MIT, 2011) and UK-DALE (Kelly and Knottenbelt, UKERC,
2015) houses: ``channel_K.dat`` files of ``unix_ts power_W`` and ``labels.dat`` naming each channel
(``1 mains`` / ``1 aggregate``, ``3 oven``, ...); the mains summed, the circuits as appliances."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.data.loaders.series import (
    LoaderError,
    MeterSeries,
    finish_series,
    numbered_lines,
    parse_float,
)


def read_channel(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A ``channel_K.dat`` file (REDD low_freq, UK-DALE): (ts_s int64, power_w float64)."""
    path = Path(path)
    ts, pw = [], []
    for lineno, line in numbered_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise LoaderError(path, lineno, f"expected 'timestamp power', got {line.strip()!r}")
        t = parse_float(path, lineno, parts[0], "timestamp")
        if t != int(t) or t < 0:
            raise LoaderError(path, lineno, f"timestamp {parts[0]!r} is not whole UNIX seconds")
        ts.append(int(t))
        pw.append(parse_float(path, lineno, parts[1], "power"))
    return np.array(ts, dtype=np.int64), np.array(pw, dtype=np.float64)


def read_labels(path: str | Path) -> dict[int, str]:
    """A ``labels.dat`` file: channel number -> appliance name."""
    path = Path(path)
    labels: dict[int, str] = {}
    for lineno, line in numbered_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise LoaderError(path, lineno, f"expected 'channel name', got {line.strip()!r}")
        labels[int(parts[0])] = parts[1]
    if not labels:
        raise LoaderError(path, None, "no labels")
    return labels


def _bin_mean(ts: np.ndarray, pw: np.ndarray, t0: int, res: int, n: int) -> np.ndarray:
    idx = (ts - t0) // res
    ok = (idx >= 0) & (idx < n)
    s = np.bincount(idx[ok], weights=pw[ok], minlength=n)
    c = np.bincount(idx[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def _load_channels(house_dir: str | Path, mains_names: tuple[str, ...], resolution_s: int,
                   source: str) -> MeterSeries:
    house = Path(house_dir)
    labels = read_labels(house / "labels.dat")
    channels = {}
    for k, name in labels.items():
        f = house / f"channel_{k}.dat"
        if f.exists():
            channels[k] = (name, *read_channel(f))
    mains = [c for c in channels.values() if c[0] in mains_names]
    if not mains:
        raise LoaderError(house / "labels.dat", None, f"no mains channel (one of {mains_names}) with a data file")
    t0 = min(int(c[1].min()) for c in channels.values() if len(c[1]))
    t1 = max(int(c[1].max()) for c in channels.values() if len(c[1]))
    t0 -= t0 % resolution_s
    n = (t1 - t0) // resolution_s + 1
    power = sum(_bin_mean(ts, pw, t0, resolution_s, n) for _, ts, pw in mains)
    apps: dict[str, np.ndarray] = {}
    for name, ts, pw in channels.values():
        if name in mains_names:
            continue
        binned = _bin_mean(ts, pw, t0, resolution_s, n)
        apps[name] = apps[name] + binned if name in apps else binned  # same-name circuits add
    ts_grid = t0 + resolution_s * np.arange(n, dtype=np.int64)
    return finish_series(f"{source}_{house.name}", ts_grid, power, source, appliances=apps)


def load_redd_house(house_dir: str | Path, resolution_s: int = 60) -> MeterSeries:
    """A REDD ``low_freq/house_N`` directory binned to ``resolution_s`` (mains 1 + 2 summed)."""
    return _load_channels(house_dir, ("mains",), resolution_s, "redd")


def load_ukdale_house(house_dir: str | Path, resolution_s: int = 60) -> MeterSeries:
    """A UK-DALE ``house_N`` directory binned to ``resolution_s`` (channel ``aggregate`` = mains)."""
    return _load_channels(house_dir, ("aggregate", "mains"), resolution_s, "ukdale")
