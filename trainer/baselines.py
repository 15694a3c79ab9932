"""Task-specific baselines the unified model is measured against.

Every baseline follows the same small protocol: ``fit(train, val)`` on the training households
(the validation split is used only for model selection: early stopping, a threshold, a choice
between two seasonal lags) and ``predict(batch)`` on held-out households. The batch types are the
plain array dataclasses below, so that baselines, the unified model and the evaluation harness
(`trainer/evaluation/`) agree on one format.

Baselines here:

* forecasting: `SeasonalNaive` (day-ahead = same time yesterday or last week, chosen on
  validation; hour-ahead = persistence), `LSTMForecaster` (seed 004: 64-step lookback, one
  LSTM layer of 128 units, dropout 0.2, Adam, MSE, ReduceLROnPlateau(0.5, 3), early stopping 10,
  best-validation weights), `DLinearForecaster` (moving-average trend/seasonal decomposition,
  kernel 25, one shared linear map per component, plus a linear covariate term).
* imputation: `LinearInterpolation`, `SeasonalImputer` (yesterday's value, level-matched),
  `SignalFiller` (wraps any classical filler of ``edge.signal`` with ``fill(values, missing,
  ts_s)``), `BiLSTMImputer` (seed 004's BiLSTM, 128 units, on value/mask pairs).
* anomaly detection: `ZScoreDetector` (window against the household's own history at the same
  time of day, thresholds chosen on validation) and `CNNDetector` (a small 1-D CNN classifier).
* NILM: `SignalNILM` (wraps ``edge.signal`` NILM methods) and `CNNDisaggregator` (seq2seq CNN).

Learned baselines normalise each window by its own history (instance normalisation, like the
unified model) instead of seed 004's global MinMaxScaler: households differ in level by an order
of magnitude, and a global scaler would hand the unified model an unfair advantage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.errors import TrainerError
from trainer.loop import LoopConfig, TrainLoop

STEPS_PER_DAY = 48  # 30-min profiles (seed 000: L = 48)


class BaselineError(TrainerError):
    """A baseline was used wrongly (predict before fit, inconsistent shapes)."""


# ----------------------------------------------------------------------------- batch types


@dataclass
class ForecastBatch:
    """Forecast windows. ``history_w`` ends at the forecast origin (oldest first); ``target_w``
    holds the next 48 half-hours (day-ahead); the hour-ahead target is ``target_w[:, :2]``.
    ``covariates`` [N, C] describe the target horizon (calendar + weather, known at the origin)
    and ``step_covariates`` [N, T_hist, S] the history steps (time of day, weekday, temperature)."""

    history_w: np.ndarray  # [N, T_hist]
    covariates: np.ndarray  # [N, C]
    step_covariates: np.ndarray  # [N, T_hist, S]
    target_w: np.ndarray  # [N, 48]
    household: np.ndarray  # [N] household index

    def __len__(self) -> int:
        return len(self.history_w)

    def subset(self, idx: np.ndarray) -> ForecastBatch:
        return ForecastBatch(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


@dataclass
class ForecastPrediction:
    day_ahead_w: np.ndarray  # [N, 48]
    hour_ahead_w: np.ndarray  # [N, 2]


@dataclass
class ImputationBatch:
    """Daily profiles with a missing mask. ``load_w`` holds the true values everywhere (methods
    must only read observed points: use `observed_load`); ``previous_w`` is the day before."""

    load_w: np.ndarray  # [N, L]
    observed: np.ndarray  # [N, L] bool, True = observed
    previous_w: np.ndarray  # [N, L]
    ts_s: np.ndarray  # [N, L] int64
    household: np.ndarray  # [N]

    def __len__(self) -> int:
        return len(self.load_w)

    def observed_load(self) -> np.ndarray:
        """The input a method may see: missing points are NaN."""
        return np.where(self.observed, self.load_w, np.nan)


@dataclass
class AnomalyBatch:
    """Windows of one day, possibly attacked; ``history_w`` are the clean days before it."""

    window_w: np.ndarray  # [N, L]
    history_w: np.ndarray  # [N, D_hist * L]
    window_label: np.ndarray  # [N] 0/1
    point_label: np.ndarray  # [N, L] 0/1
    attack: np.ndarray  # [N] str: "none" or an attack kind of edge.sim.inject ("scaling", "ramp_ii")

    def __len__(self) -> int:
        return len(self.window_w)


@dataclass
class AnomalyPrediction:
    window_score: np.ndarray  # [N] higher = more anomalous
    point_score: np.ndarray  # [N, L]
    window_flag: np.ndarray  # [N] bool
    point_flag: np.ndarray  # [N, L] bool


@dataclass
class NILMBatch:
    """High-rate aggregate windows with per-appliance ground truth."""

    load_w: np.ndarray  # [N, T]
    appliance_w: np.ndarray  # [N, A, T]
    on: np.ndarray  # [N, A, T] bool
    ts_s: np.ndarray  # [N, T]
    appliances: list[str]
    resolution_s: int

    def __len__(self) -> int:
        return len(self.load_w)


@dataclass
class NILMPrediction:
    appliance_w: np.ndarray  # [N, A, T]
    on: np.ndarray  # [N, A, T] bool


# ----------------------------------------------------------------------------- shared torch training


@dataclass
class TrainConfig:
    """Optimisation schedule of seed 004 (§2.4): Adam, MSE, batch 32, 40 epochs, lr 1e-4 halved on a
    validation plateau of 3 epochs, early stopping after 10, best-validation weights kept.
    ``max_train_windows`` caps the windows per epoch (random subset each epoch) for CPU budgets."""

    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-4
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    early_stop_patience: int = 10
    max_train_windows: int | None = None
    seed: int = 0
    progress: bool = True
    checkpoint: str | None = None  # resume file: training continues from it after an interruption


def _to_tensors(arrays: tuple[np.ndarray, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32) for a in arrays)


def train_regressor(
    model: nn.Module,
    train_xy: tuple[np.ndarray, ...],
    val_xy: tuple[np.ndarray, ...],
    loss_fn: Callable[..., torch.Tensor],
    cfg: TrainConfig,
    desc: str,
) -> list[dict[str, float]]:
    """Fit ``model`` with seed 004's schedule on ``trainer.loop``. ``train_xy``/``val_xy`` are
    tuples of arrays whose first axis is the sample; ``loss_fn(model, *tensors)`` returns the mean
    loss. Each epoch takes a fresh random subset of ``max_train_windows``. Returns the log."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_t, val_t = _to_tensors(train_xy), _to_tensors(val_xy)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    n = len(train_t[0])
    per_epoch = -(-min(cfg.max_train_windows or n, n) // cfg.batch_size)

    def epoch_batches(epoch: int, skip: int):
        order = rng.permutation(n)[: cfg.max_train_windows or n]
        for start in range(skip * cfg.batch_size, len(order), cfg.batch_size):
            idx = torch.as_tensor(order[start : start + cfg.batch_size])
            yield tuple(t[idx] for t in train_t)

    loop = TrainLoop(model, opt, LoopConfig(epochs=cfg.epochs, patience=cfg.early_stop_patience,
                                            min_delta=1e-7, progress=cfg.progress, desc=desc),
                     scheduler=sched, checkpoint=cfg.checkpoint,
                     fingerprint={"desc": desc, **asdict(cfg), "checkpoint": None},
                     extra_state=lambda: {"rng": rng.bit_generator.state},
                     load_extra_state=lambda extra: setattr(rng.bit_generator, "state", extra["rng"]))
    state = loop.fit(epoch_batches, per_epoch, lambda batch, _st: loss_fn(model, *batch),
                     lambda: evaluate_loss(model, val_t, loss_fn))
    model.eval()
    return state.history


@torch.no_grad()
def evaluate_loss(model: nn.Module, tensors: tuple[torch.Tensor, ...], loss_fn, batch: int = 1024) -> float:
    model.eval()
    n, total = len(tensors[0]), 0.0
    for start in range(0, n, batch):
        total += loss_fn(model, *(t[start : start + batch] for t in tensors)).item() * min(batch, n - start)
    return total / max(n, 1)


def instance_stats(x: np.ndarray, axis: int = -1, floor_w: float = 10.0,
                   floor_frac: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each row (NaN ignored), keeping ``axis`` as size 1. The std is floored at
    ``max(floor_w, floor_frac * |mean|)``: a flat stretch (an empty house, a night) has a std of a
    few W, and dividing the next day by it would make single windows dominate an MSE loss."""
    mean = np.nan_to_num(np.nanmean(x, axis=axis, keepdims=True))
    std = np.nan_to_num(np.nanstd(x, axis=axis, keepdims=True))
    return mean, np.maximum(std, np.maximum(floor_w, floor_frac * np.abs(mean)))


@torch.no_grad()
def predict_batched(model: nn.Module, arrays: tuple[np.ndarray, ...], batch: int = 2048) -> list[np.ndarray]:
    """Run ``model(*tensors)`` in batches; returns one array per model output."""
    model.eval()
    tensors, outs = _to_tensors(arrays), []
    for start in range(0, len(tensors[0]), batch):
        out = model(*(t[start : start + batch] for t in tensors))
        outs.append([o.numpy() for o in (out if isinstance(out, tuple) else (out,))])
    return [np.concatenate(parts) for parts in zip(*outs, strict=True)]


# ----------------------------------------------------------------------------- forecasting


class SeasonalNaive:
    """Day-ahead: the same 48 half-hours one day or one week earlier (the lag with the lower
    validation MAE); hour-ahead: persistence of the last observed value."""

    name = "seasonal_naive"
    LAGS_DAYS = (1, 7)

    def __init__(self) -> None:
        self.lag_days: int | None = None

    def _day_ahead(self, history_w: np.ndarray, lag_days: int) -> np.ndarray:
        need = lag_days * STEPS_PER_DAY
        if history_w.shape[1] < need:
            raise BaselineError(f"seasonal naive with lag {lag_days} d needs {need} history steps")
        start = history_w.shape[1] - need
        return history_w[:, start : start + STEPS_PER_DAY]

    def fit(self, train: ForecastBatch, val: ForecastBatch) -> SeasonalNaive:
        lags = [d for d in self.LAGS_DAYS if val.history_w.shape[1] >= d * STEPS_PER_DAY]
        errors = {d: np.mean(np.abs(self._day_ahead(val.history_w, d) - val.target_w)) for d in lags}
        self.lag_days = min(errors, key=errors.get)
        return self

    def predict(self, batch: ForecastBatch) -> ForecastPrediction:
        if self.lag_days is None:
            raise BaselineError("SeasonalNaive.predict before fit")
        last = batch.history_w[:, -1:]
        return ForecastPrediction(self._day_ahead(batch.history_w, self.lag_days), np.repeat(last, 2, 1))


class _LSTMNet(nn.Module):
    def __init__(self, n_features: int, n_cov: int, hidden: int, dropout: float, horizon: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden + n_cov, horizon)

    def forward(self, seq: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(seq)
        return self.head(torch.cat([self.drop(out[:, -1]), cov], dim=-1))


@dataclass
class LSTMConfig:
    """Seed 004 Table 1 / §2.4: sequence length 64, LSTM hidden 128, dropout 0.2."""

    lookback: int = 64
    hidden: int = 128
    dropout: float = 0.2
    train: TrainConfig = field(default_factory=TrainConfig)


class LSTMForecaster:
    """Seed 004's LSTM, made direct multi-horizon: the last hidden state plus the horizon
    covariates feed one dense layer with 48 + 2 outputs (day-ahead and hour-ahead heads). Per-step
    inputs are the normalised load and the step covariates (time of day, weekday, temperature),
    as seed 004 feeds load, calendar and weather per step."""

    name = "lstm"

    def __init__(self, cfg: LSTMConfig | None = None) -> None:
        self.cfg = cfg or LSTMConfig()
        self.net: _LSTMNet | None = None

    def _arrays(self, b: ForecastBatch) -> tuple[np.ndarray, ...]:
        hist = b.history_w[:, -self.cfg.lookback :]
        mean, std = instance_stats(hist)
        load = ((hist - mean) / std)[..., None]
        seq = np.concatenate([load, b.step_covariates[:, -self.cfg.lookback :]], axis=-1)
        target = np.concatenate([b.target_w, b.target_w[:, :2]], axis=1)
        return seq, b.covariates, (target - mean) / std, mean, std

    @staticmethod
    def _loss(model: nn.Module, seq, cov, y) -> torch.Tensor:
        return F.mse_loss(model(seq, cov), y)

    def fit(self, train: ForecastBatch, val: ForecastBatch) -> LSTMForecaster:
        torch.manual_seed(self.cfg.train.seed)
        tr, va = self._arrays(train), self._arrays(val)
        n_features, n_cov = tr[0].shape[-1], tr[1].shape[1]
        self.net = _LSTMNet(n_features, n_cov, self.cfg.hidden, self.cfg.dropout, STEPS_PER_DAY + 2)
        self.log = train_regressor(self.net, tr[:3], va[:3], self._loss, self.cfg.train, "lstm")
        return self

    def predict(self, batch: ForecastBatch) -> ForecastPrediction:
        if self.net is None:
            raise BaselineError("LSTMForecaster.predict before fit")
        seq, cov, _, mean, std = self._arrays(batch)
        (out,) = predict_batched(self.net, (seq, cov))
        out = out * std + mean
        return ForecastPrediction(out[:, :STEPS_PER_DAY], out[:, STEPS_PER_DAY:])


def moving_average(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """DLinear's trend: a moving average over the last axis, edges padded by repetition."""
    front = x[..., :1].repeat_interleave((kernel - 1) // 2, dim=-1)
    back = x[..., -1:].repeat_interleave(kernel // 2, dim=-1)
    padded = torch.cat([front, x, back], dim=-1)
    return F.avg_pool1d(padded.unsqueeze(1), kernel, stride=1).squeeze(1)


class _DLinearNet(nn.Module):
    def __init__(self, lookback: int, horizon: int, n_cov: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.trend = nn.Linear(lookback, horizon)
        self.seasonal = nn.Linear(lookback, horizon)
        self.cov = nn.Linear(n_cov, horizon)

    def forward(self, x: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        trend = moving_average(x, self.kernel)
        return self.trend(trend) + self.seasonal(x - trend) + self.cov(cov)


@dataclass
class DLinearConfig:
    """Seed 004 Table 1: kernel 25, one model shared by all series (individual = False). The
    lookback is one week so that the linear maps can learn the daily and weekly lags."""

    lookback: int = 7 * STEPS_PER_DAY
    kernel: int = 25
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, batch_size=64))


class DLinearForecaster:
    """DLinear (Zeng et al.) on the instance-normalised history, with a linear covariate term so
    that it sees the same calendar and weather information as the other methods."""

    name = "dlinear"

    def __init__(self, cfg: DLinearConfig | None = None) -> None:
        self.cfg = cfg or DLinearConfig()
        self.net: _DLinearNet | None = None

    def _arrays(self, b: ForecastBatch) -> tuple[np.ndarray, ...]:
        if b.history_w.shape[1] < self.cfg.lookback:
            raise BaselineError(f"DLinear needs {self.cfg.lookback} history steps, got {b.history_w.shape[1]}")
        hist = b.history_w[:, -self.cfg.lookback :]
        mean, std = instance_stats(hist)
        target = np.concatenate([b.target_w, b.target_w[:, :2]], axis=1)
        return (hist - mean) / std, b.covariates, (target - mean) / std, mean, std

    @staticmethod
    def _loss(model: nn.Module, x, cov, y) -> torch.Tensor:
        return F.mse_loss(model(x, cov), y)

    def fit(self, train: ForecastBatch, val: ForecastBatch) -> DLinearForecaster:
        torch.manual_seed(self.cfg.train.seed)
        tr, va = self._arrays(train), self._arrays(val)
        self.net = _DLinearNet(self.cfg.lookback, STEPS_PER_DAY + 2, tr[1].shape[1], self.cfg.kernel)
        self.log = train_regressor(self.net, tr[:3], va[:3], self._loss, self.cfg.train, "dlinear")
        return self

    def predict(self, batch: ForecastBatch) -> ForecastPrediction:
        if self.net is None:
            raise BaselineError("DLinearForecaster.predict before fit")
        x, cov, _, mean, std = self._arrays(batch)
        (out,) = predict_batched(self.net, (x, cov))
        out = out * std + mean
        return ForecastPrediction(out[:, :STEPS_PER_DAY], out[:, STEPS_PER_DAY:])


# ----------------------------------------------------------------------------- imputation


def interpolate_rows(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Linear interpolation of each row over its observed points; leading/trailing gaps hold the
    nearest observed value; a row with nothing observed stays NaN (nothing to interpolate from)."""
    out = np.array(values, dtype=np.float64, copy=True)
    steps = np.arange(values.shape[1])
    for i in range(len(values)):
        obs = observed[i].astype(bool)
        if obs.all():
            continue
        if obs.any():
            out[i, ~obs] = np.interp(steps[~obs], steps[obs], values[i, obs])
        else:
            out[i] = np.nan
    return out


class LinearInterpolation:
    name = "linear_interp"

    def fit(self, train: ImputationBatch, val: ImputationBatch) -> LinearInterpolation:
        return self

    def predict(self, batch: ImputationBatch) -> np.ndarray:
        return interpolate_rows(batch.observed_load(), batch.observed)


class SeasonalImputer:
    """Yesterday's value at the same time of day, shifted so that its mean over the points observed
    today matches today's (a level-matched seasonal naive fill)."""

    name = "seasonal_fill"

    def fit(self, train: ImputationBatch, val: ImputationBatch) -> SeasonalImputer:
        return self

    def predict(self, batch: ImputationBatch) -> np.ndarray:
        obs = batch.observed
        diff = np.where(obs, batch.load_w - batch.previous_w, np.nan)
        offset = np.nan_to_num(np.nanmean(np.where(obs.any(1, keepdims=True), diff, 0.0), 1, keepdims=True))
        filled = np.maximum(batch.previous_w + offset, 0.0)
        return np.where(obs, batch.load_w, filled)


class SignalFiller:
    """Adapter for a classical gap filler of ``edge.signal`` with ``fill(values, missing, ts_s)``
    (values with NaN or anything at missing points, boolean ``missing``, UTC seconds), applied row
    by row."""

    def __init__(self, name: str, filler: object) -> None:
        self.name = name
        self.filler = filler

    def fit(self, train: ImputationBatch, val: ImputationBatch) -> SignalFiller:
        return self  # the classical fillers have no trained state

    def predict(self, batch: ImputationBatch) -> np.ndarray:
        values = batch.observed_load()
        out = np.empty_like(values, dtype=np.float64)
        for i in range(len(values)):
            filled = np.asarray(self.filler(values[i], ~batch.observed[i], batch.ts_s[i]), dtype=np.float64)
            out[i] = filled
        return np.where(batch.observed, batch.load_w, out)


def training_masks(n: int, length: int, rates: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Observed masks [n, length] for training imputers: each window draws a rate from ``rates``;
    half the windows lose random points, the other half one contiguous block."""
    rate = rng.choice(rates, size=(n, 1))
    observed = rng.random((n, length)) >= rate
    for i in np.flatnonzero(rng.random(n) < 0.5):
        n_miss = int(round(rate[i, 0] * length))
        start = rng.integers(0, length - n_miss + 1)
        observed[i] = True
        observed[i, start : start + n_miss] = False
    return observed


class _BiLSTMImputerNet(nn.Module):
    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(2, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(torch.stack([x * obs, obs], dim=-1))
        return self.head(self.drop(out)).squeeze(-1)


@dataclass
class BiLSTMImputerConfig:
    """Seed 004's BiLSTM (128 units, dropout 0.2) as a learned imputer; training masks follow the
    evaluation's missing rates, drawn afresh for each window."""

    hidden: int = 128
    dropout: float = 0.2
    missing_rates: tuple[float, ...] = (0.1, 0.3, 0.5)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3))


class BiLSTMImputer:
    name = "bilstm"

    def __init__(self, cfg: BiLSTMImputerConfig | None = None) -> None:
        self.cfg = cfg or BiLSTMImputerConfig()
        self.net: _BiLSTMImputerNet | None = None

    @staticmethod
    def _normalise(load_w: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, ...]:
        mean, std = instance_stats(np.where(observed, load_w, np.nan))
        return np.nan_to_num((load_w - mean) / std), mean, std

    def _training_arrays(self, b: ImputationBatch, seed: int) -> tuple[np.ndarray, ...]:
        observed = training_masks(len(b), b.load_w.shape[1], self.cfg.missing_rates,
                                  np.random.default_rng(seed))
        x, _, _ = self._normalise(b.load_w, observed)
        return x, observed.astype(np.float32), x, (~observed).astype(np.float32)

    @staticmethod
    def _loss(model: nn.Module, x, obs, y, miss) -> torch.Tensor:
        err = (model(x, obs) - y) ** 2
        return (err * miss).sum() / miss.sum().clamp_min(1.0)

    def fit(self, train: ImputationBatch, val: ImputationBatch) -> BiLSTMImputer:
        torch.manual_seed(self.cfg.train.seed)
        self.net = _BiLSTMImputerNet(self.cfg.hidden, self.cfg.dropout)
        tr = self._training_arrays(train, self.cfg.train.seed)
        va = self._training_arrays(val, self.cfg.train.seed + 1)
        self.log = train_regressor(self.net, tr, va, self._loss, self.cfg.train, "bilstm-impute")
        return self

    def predict(self, batch: ImputationBatch) -> np.ndarray:
        if self.net is None:
            raise BaselineError("BiLSTMImputer.predict before fit")
        x, mean, std = self._normalise(batch.load_w, batch.observed)
        x = np.where(batch.observed, x, 0.0)
        (out,) = predict_batched(self.net, (x, batch.observed.astype(np.float32)))
        return np.where(batch.observed, batch.load_w, np.maximum(out * std + mean, 0.0))


# ----------------------------------------------------------------------------- anomaly detection


def best_f1_threshold(score: np.ndarray, label: np.ndarray) -> float:
    """The threshold (flag = score > t) with the highest F1 on the given (validation) scores."""
    score, label = np.asarray(score, float).ravel(), np.asarray(label).ravel().astype(bool)
    order = np.argsort(-score)
    s, lab = score[order], label[order]
    tp = np.cumsum(lab)
    fp = np.cumsum(~lab)
    f1 = 2 * tp / np.maximum(tp + fp + lab.sum(), 1)
    distinct = np.r_[s[1:] < s[:-1], True]  # only cut between different scores
    f1 = np.where(distinct, f1, -1.0)
    i = int(np.argmax(f1))
    return float((s[i] + s[i + 1]) / 2) if i + 1 < len(s) else float(s[i] - 1e-9)


@dataclass
class ZScoreConfig:
    smooth_steps: int = 8  # moving mean of the signed z over this many steps (4 h at 30 min)
    scale_floor_w: float = 20.0  # at least this scale (W), so flat nights do not explode z


class ZScoreDetector:
    """Each point against the same time of day in the household's own history, robustly: z =
    (x - median) / (1.4826 MAD) over the history days, so appliance spikes in the history do not
    inflate the scale. Scaling and ramping attacks shift a run of points the same way while
    spikes are short, so the signed z is averaged over ``smooth_steps`` before taking |.|; the
    window score is its maximum. Thresholds are the best-F1 ones on the validation households."""

    name = "zscore"

    def __init__(self, cfg: ZScoreConfig | None = None) -> None:
        self.cfg = cfg or ZScoreConfig()
        self.window_threshold: float | None = None
        self.point_threshold: float | None = None

    def _scores(self, b: AnomalyBatch) -> tuple[np.ndarray, np.ndarray]:
        steps = b.window_w.shape[1]
        hist = b.history_w.reshape(len(b), -1, steps)
        median = np.median(hist, axis=1)
        mad = np.median(np.abs(hist - median[:, None, :]), axis=1)
        z = (b.window_w - median) / np.maximum(1.4826 * mad, self.cfg.scale_floor_w)
        kernel = np.ones(self.cfg.smooth_steps) / self.cfg.smooth_steps
        smooth = np.abs(np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, z))
        return smooth.max(axis=1), smooth

    def fit(self, train: AnomalyBatch, val: AnomalyBatch) -> ZScoreDetector:
        window, point = self._scores(val)
        self.window_threshold = best_f1_threshold(window, val.window_label)
        self.point_threshold = best_f1_threshold(point, val.point_label)
        return self

    def predict(self, batch: AnomalyBatch) -> AnomalyPrediction:
        if self.window_threshold is None:
            raise BaselineError("ZScoreDetector.predict before fit")
        window, point = self._scores(batch)
        return AnomalyPrediction(window, point, window > self.window_threshold, point > self.point_threshold)


class _CNNDetectorNet(nn.Module):
    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv1d(1, channels, kernel, padding=pad), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=pad, dilation=1), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=2 * pad, dilation=2), nn.ReLU(),
        )
        self.point = nn.Conv1d(channels, 1, 1)
        self.window = nn.Linear(2 * channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x.unsqueeze(1))
        pooled = torch.cat([h.mean(-1), h.amax(-1)], dim=-1)
        return self.window(pooled).squeeze(-1), self.point(h).squeeze(1)


@dataclass
class CNNDetectorConfig:
    channels: int = 32
    kernel: int = 5
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, epochs=30))


class CNNDetector:
    """A small 1-D CNN on the instance-normalised window alone (the unified model's input), with a
    window logit and per-point logits; decision thresholds are the best-F1 ones on validation."""

    name = "cnn"

    def __init__(self, cfg: CNNDetectorConfig | None = None) -> None:
        self.cfg = cfg or CNNDetectorConfig()
        self.net: _CNNDetectorNet | None = None

    @staticmethod
    def _x(b: AnomalyBatch) -> np.ndarray:
        mean, std = instance_stats(b.window_w)
        return (b.window_w - mean) / std

    @staticmethod
    def _loss(model: nn.Module, x, yw, yp) -> torch.Tensor:
        window, point = model(x)
        return F.binary_cross_entropy_with_logits(window, yw) + F.binary_cross_entropy_with_logits(point, yp)

    def fit(self, train: AnomalyBatch, val: AnomalyBatch) -> CNNDetector:
        torch.manual_seed(self.cfg.train.seed)
        self.net = _CNNDetectorNet(self.cfg.channels, self.cfg.kernel)
        arrays = [(self._x(b), b.window_label.astype(np.float32), b.point_label.astype(np.float32))
                  for b in (train, val)]
        self.log = train_regressor(self.net, arrays[0], arrays[1], self._loss, self.cfg.train, "cnn-anomaly")
        window, point = predict_batched(self.net, (self._x(val),))
        self.window_threshold = best_f1_threshold(window, val.window_label)
        self.point_threshold = best_f1_threshold(point, val.point_label)
        return self

    def predict(self, batch: AnomalyBatch) -> AnomalyPrediction:
        if self.net is None:
            raise BaselineError("CNNDetector.predict before fit")
        window, point = predict_batched(self.net, (self._x(batch),))
        return AnomalyPrediction(window, point, window > self.window_threshold, point > self.point_threshold)


# ----------------------------------------------------------------------------- NILM


class SignalNILM:
    """Adapter for a classical NILM method of ``edge.signal.nilm``. ``fit_fn(appliance_power_w,
    aggregate_w, ts_s)`` (training series concatenated, at most ``max_fit_samples``) returns a
    ``predict(aggregate_w, ts_s) -> {appliance: {"power_w", "on"}}`` callable, applied to each
    window; appliances the method does not report are predicted OFF at 0 W."""

    def __init__(self, name: str, fit_fn: Callable, max_fit_samples: int = 50_000) -> None:
        self.name = name
        self.fit_fn = fit_fn
        self.max_fit_samples = max_fit_samples
        self.predictor: Callable | None = None

    def fit(self, train: NILMBatch, val: NILMBatch) -> SignalNILM:
        n_win = max(1, self.max_fit_samples // train.load_w.shape[1])
        apps = {a: train.appliance_w[:n_win, j].reshape(-1) for j, a in enumerate(train.appliances)}
        self.predictor = self.fit_fn(apps, train.load_w[:n_win].reshape(-1), train.ts_s[:n_win].reshape(-1))
        return self

    def predict(self, batch: NILMBatch) -> NILMPrediction:
        if self.predictor is None:
            raise BaselineError(f"{self.name}.predict before fit")
        power = np.zeros(batch.appliance_w.shape)
        on = np.zeros(batch.appliance_w.shape, dtype=bool)
        for i in range(len(batch)):
            out = self.predictor(batch.load_w[i], batch.ts_s[i])
            for j, a in enumerate(batch.appliances):
                if a in out:
                    power[i, j] = np.asarray(out[a]["power_w"], dtype=np.float64)
                    on[i, j] = np.asarray(out[a]["on"], dtype=bool)
        return NILMPrediction(power, on)


class _Seq2SeqCNN(nn.Module):
    def __init__(self, n_app: int, channels: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv1d(1, channels, kernel, padding=pad), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=2 * pad, dilation=2), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=4 * pad, dilation=4), nn.ReLU(),
        )
        self.power = nn.Conv1d(channels, n_app, 1)
        self.on = nn.Conv1d(channels, n_app, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x.unsqueeze(1))
        return self.power(h), self.on(h)


@dataclass
class CNNDisaggregatorConfig:
    channels: int = 32
    kernel: int = 5
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, epochs=30))


def on_thresholds(logit: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Per appliance, the best-F1 ON threshold of [N, A, T] logits on validation windows (rare
    appliances would otherwise never cross a logit of 0); 0 where validation has no ON point."""
    out = np.zeros(logit.shape[1])
    for j in range(logit.shape[1]):
        if on[:, j].any():
            out[j] = best_f1_threshold(logit[:, j], on[:, j])
    return out


class CNNDisaggregator:
    """A dilated 1-D CNN, sequence to sequence: per-appliance power (regressed in units of the
    window's scale) and ON/OFF logits from the aggregate window."""

    name = "cnn_seq2seq"

    def __init__(self, cfg: CNNDisaggregatorConfig | None = None) -> None:
        self.cfg = cfg or CNNDisaggregatorConfig()
        self.net: _Seq2SeqCNN | None = None

    @staticmethod
    def _scale(b: NILMBatch) -> np.ndarray:
        return np.maximum(b.load_w.max(axis=1, keepdims=True), 1.0)

    def _arrays(self, b: NILMBatch) -> tuple[np.ndarray, ...]:
        scale = self._scale(b)
        return b.load_w / scale, b.appliance_w / scale[:, :, None], b.on.astype(np.float32)

    @staticmethod
    def _loss(model: nn.Module, x, y, on) -> torch.Tensor:
        power, logit = model(x)
        return F.mse_loss(power, y) + 0.1 * F.binary_cross_entropy_with_logits(logit, on)

    def fit(self, train: NILMBatch, val: NILMBatch) -> CNNDisaggregator:
        torch.manual_seed(self.cfg.train.seed)
        self.net = _Seq2SeqCNN(len(train.appliances), self.cfg.channels, self.cfg.kernel)
        self.log = train_regressor(self.net, self._arrays(train), self._arrays(val), self._loss,
                                   self.cfg.train, "cnn-nilm")
        _, logit = predict_batched(self.net, (val.load_w / self._scale(val),))
        self.on_thresholds = on_thresholds(logit, val.on)
        return self

    def predict(self, batch: NILMBatch) -> NILMPrediction:
        if self.net is None:
            raise BaselineError("CNNDisaggregator.predict before fit")
        power, logit = predict_batched(self.net, (batch.load_w / self._scale(batch),))
        power = np.maximum(power * self._scale(batch)[:, :, None], 0.0)
        return NILMPrediction(power, logit > self.on_thresholds[None, :, None])
