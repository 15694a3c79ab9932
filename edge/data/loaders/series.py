"""What every loader returns (:class:`MeterSeries`) and raises (:class:`LoaderError`), and the
line and number reading they share."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import DataError


class LoaderError(DataError):
    """Malformed input; the message names the file and the line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path, self.line = str(path), line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass
class MeterSeries:
    """One meter's series: UTC epoch seconds and mean power (W) per sample, NaN where missing."""

    meter_id: str
    ts_s: np.ndarray  # int64, sorted ascending
    power_w: np.ndarray  # float64
    source: str = ""  # cer | lcl | redd | ukdale | pjm | generic
    resolution_s: int | None = None  # median sample spacing
    appliances: dict[str, np.ndarray] = field(default_factory=dict)  # per-appliance power, same ts
    extra: dict = field(default_factory=dict)
    temperature_c: np.ndarray | None = None  # outdoor temperature (degC) per sample, NaN where unknown

    def __len__(self) -> int:
        return len(self.ts_s)


def finish_series(meter_id: str, ts: np.ndarray, power: np.ndarray, source: str, **kw) -> MeterSeries:
    order = np.argsort(ts, kind="stable")
    ts = np.asarray(ts, dtype=np.int64)[order]
    res = int(np.median(np.diff(ts))) if len(ts) > 1 else None
    apps = {k: np.asarray(v, dtype=np.float64)[order] for k, v in kw.pop("appliances", {}).items()}
    temp = kw.pop("temperature_c", None)
    if temp is not None:
        temp = np.asarray(temp, dtype=np.float64)[order]
    return MeterSeries(meter_id, ts, np.asarray(power, dtype=np.float64)[order], source, res, apps,
                       temperature_c=temp, **kw)


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            yield from enumerate(f, start=1)
    except OSError as e:
        raise LoaderError(path, None, f"cannot read: {e}") from e
    except UnicodeDecodeError as e:
        raise LoaderError(path, None, f"not a text file: {e}") from e


def parse_float(path: Path, lineno: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise LoaderError(path, lineno, f"{what} {text.strip()!r} is not a number") from e
    if math.isinf(value):
        raise LoaderError(path, lineno, f"{what} is infinite")
    return value
