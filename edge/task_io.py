"""The task list and the graph I/O contract of each task (docs/architecture.md section 5).

Defined once, here on the lowest floor that uses it: the trainer's task heads
(``trainer.tasks``) produce these outputs, the exporter (``export``) names the graph inputs and
outputs and writes their units into the bundle manifest, and the gateway (``edge.agent``,
``edge.bundle``) feeds and reads the graphs by these names. All tensors are float32 with the batch
dimension first; loads are raw watts (instance normalisation happens inside the graph).

Dimensions: ``B`` batch, ``L`` window length (48 half-hour points for the profile tasks; the NILM
window for ``nilm``), ``C`` covariates (``edge.features``), ``A`` appliances, ``H_day`` and
``H_hour`` the day-ahead and hour-ahead steps (48 and 2 by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TASKS = ("imputation", "anomaly", "forecast", "nilm")

# graph tensor names
LOAD_W = "load_w"
OBSERVED = "observed"
COVARIATES = "covariates"
HISTORY_W = "history_w"
HISTORY_MASK = "history_mask"
LOAD_W_FILLED = "load_w_filled"
WINDOW_LOGIT = "window_logit"
POINT_LOGIT = "point_logit"
DAY_AHEAD_W = "day_ahead_w"
HOUR_AHEAD_W = "hour_ahead_w"
APPLIANCE_W = "appliance_w"
ON_LOGIT = "on_logit"


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: its name, symbolic dimensions and unit."""

    name: str
    dims: tuple[str, ...]
    unit: str
    description: str = ""

    def shape(self, sizes: Mapping[str, int]) -> tuple[int | None, ...]:
        """Concrete shape, ``None`` for the batch dimension: ``sizes`` maps "L", "C", "A", ... to ints."""
        try:
            return tuple(None if d == "B" else int(d) if d.isdigit() else int(sizes[d]) for d in self.dims)
        except KeyError as e:
            raise KeyError(f"{self.name}: size of dimension {e.args[0]!r} not given") from e


@dataclass(frozen=True)
class TaskIO:
    """A task's graph inputs and outputs, in positional order."""

    task: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


_LOAD = Tensor(LOAD_W, ("B", "L"), "W", "load in watts; missing points set to 0 (imputation)")
_OBSERVED = Tensor(OBSERVED, ("B", "L"), "1 observed, 0 missing")
_COVARIATES = Tensor(COVARIATES, ("B", "C"), "see covariate_names",
                     "calendar and weather of the day being forecast (edge.features)")

_HISTORY = (Tensor(HISTORY_W, ("B", "D", "L"), "W",
                   "the D days before the window, oldest first, at the same times of day "
                   "(history_w[:, k, j] lies (D - k) * L bins before load_w[:, j]); 0 where a day is missing"),
            Tensor(HISTORY_MASK, ("B", "D"), "1 present, 0 missing", "which history days are there"))
CONTEXT_TASKS = ("imputation", "anomaly", "forecast")  # the profile tasks, which take the history

TASK_IO: dict[str, TaskIO] = {
    "imputation": TaskIO("imputation", (_LOAD, _OBSERVED), (
        Tensor(LOAD_W_FILLED, ("B", "L"), "W", "observed points kept, missing points filled"),)),
    "anomaly": TaskIO("anomaly", (_LOAD,), (
        Tensor(WINDOW_LOGIT, ("B", "1"), "logit", "the window is attacked or faulty"),
        Tensor(POINT_LOGIT, ("B", "L"), "logit", "this point is manipulated"))),
    "forecast": TaskIO("forecast", (_LOAD, _COVARIATES), (
        Tensor(DAY_AHEAD_W, ("B", "H_day"), "W", "the next day's half-hour means"),
        Tensor(HOUR_AHEAD_W, ("B", "H_hour"), "W", "the next hour's half-hour means"))),
    "nilm": TaskIO("nilm", (_LOAD,), (
        Tensor(APPLIANCE_W, ("B", "A", "L"), "W", "power of each appliance"),
        Tensor(ON_LOGIT, ("B", "A", "L"), "logit", "the appliance is on"))),
}

UNITS: dict[str, str] = {t.name: t.unit for io in TASK_IO.values() for t in (*io.inputs, *io.outputs, *_HISTORY)}


def task_io(task: str, history_days: int = 0) -> TaskIO:
    """The contract of ``task``; a ``KeyError`` naming the known tasks otherwise.

    ``TASK_IO`` is the single-window contract (``history_days`` 0: the models of seed 000). A
    profile task of a context model (``history_days`` D > 0, recorded in the checkpoint and in the
    manifest's ``input_spec``) takes ``load_w``, ``observed``, ``history_w`` [B, D, L],
    ``history_mask`` [B, D] and, for the forecast, ``covariates``, in that order."""
    try:
        io = TASK_IO[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r}; choose from {TASKS}") from None
    if not history_days or task not in CONTEXT_TASKS:
        return io
    covariates = tuple(t for t in io.inputs if t.name == COVARIATES)
    return TaskIO(task, (_LOAD, _OBSERVED, *_HISTORY, *covariates), io.outputs)
