"""PyPOTS SAITS as the learned imputation baseline of a user's meter (``train all --compare-saits``).

SAITS: W. Du, D. Cote, Y. Liu (2023), "SAITS: Self-attention-based imputation for time series",
Expert Systems with Applications 219:119619; the PyPOTS implementation (``pypots.imputation.SAITS``,
pinned in the ``dev`` extra) is used as it is, with its joint ORT + MIT training (20 % of the
observed points masked artificially in every training batch).

It is fitted per run on the SAME days the model trains on (the training days; early-stopped on the
validation days with the report's masks) and sees, for each case, what the model sees: the day with
its gaps and the ``context_days`` complete days before it (never the day after). Inputs are scaled by
each meter's mean training load (W -> unitless) and the fill is scaled back to W.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import numpy as np

from edge.data import userdata as U
from trainer.baselines.batches import BaselineError


@dataclass
class SaitsConfig:
    """SAITS sizes (the paper's small setting) and the training budget."""

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_k: int = 16
    d_v: int = 16
    d_ffn: int = 128
    dropout: float = 0.1
    epochs: int = 40
    patience: int = 5
    batch_size: int = 32
    windows_per_day: int = 4  # training windows start every L / 4 points
    seed: int = 0


def _import_saits():
    """``pypots.imputation.SAITS``; PyPOTS prints a banner on import, sent to stderr here so that
    a command's stdout keeps only its result."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            from pypots.imputation import SAITS
    except ImportError as e:
        raise BaselineError("the SAITS baseline needs PyPOTS: pip install 'unimeter[dev]' (pypots==1.5)") from e
    return SAITS


def saits_model(c: SaitsConfig, n_steps: int, early_stopping: bool):
    """An untrained ``pypots.imputation.SAITS`` of ``c``'s sizes for windows of ``n_steps`` x 1
    feature, on the CPU, saving nothing."""
    SAITS = _import_saits()
    return SAITS(n_steps=n_steps, n_features=1, n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads,
                 d_k=c.d_k, d_v=c.d_v, d_ffn=c.d_ffn, dropout=c.dropout, batch_size=c.batch_size,
                 epochs=c.epochs, patience=min(c.patience, c.epochs) if early_stopping else None, device="cpu",
                 saving_path=None, model_saving_strategy=None, verbose=False)


class SaitsImputer:
    """SAITS on the evaluation's ``ImputationBatch`` (``fit(train, val)`` / ``predict(batch)``, the
    protocol of ``trainer.baselines``): each case is the complete day before (``previous_w``) and
    the day with its gaps, [T = 2 L, 1], as the naive fillers and ``SaitsFiller`` see it, scaled by
    the mean of the case's observed points (households differ in level by an order of magnitude;
    that mean is known at run time) and the fill scaled back to W. Trained on up to
    ``max_train_windows`` training-household days with SAITS's own ORT + MIT masking,
    early-stopped on the validation households' days with 30 % hidden (points or blocks)."""

    name = "saits"

    def __init__(self, cfg: SaitsConfig | None = None, max_train_windows: int | None = None) -> None:
        self.cfg, self.max_train_windows = cfg or SaitsConfig(), max_train_windows
        self.model = None

    @staticmethod
    def _scaled(batch, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([N, 2L] scaled window with NaN where hidden, [N, 1] scale W)."""
        x = np.concatenate([batch.previous_w, np.where(observed, batch.load_w, np.nan)], 1)
        scale = np.maximum(np.nanmean(x, axis=1, keepdims=True), 1.0)
        return (x / scale).astype(np.float32), scale

    def fit(self, train, val) -> SaitsImputer:
        import torch

        from trainer.baselines.imputation import training_masks

        c = self.cfg
        rng = np.random.default_rng([c.seed, 0x5A1])
        n = len(train.load_w)
        keep = np.sort(rng.choice(n, self.max_train_windows, replace=False)) \
            if self.max_train_windows and n > self.max_train_windows else np.arange(n)
        X, _ = self._scaled(train, np.ones_like(train.observed, bool))
        L = train.load_w.shape[1]
        obs = training_masks(len(val.load_w), L, (0.3,), rng)
        Xv, scale = self._scaled(val, obs)
        Xo = np.concatenate([val.previous_w, val.load_w], 1) / scale
        torch.manual_seed(c.seed)
        self.model = saits_model(c, 2 * L, early_stopping=True)
        with contextlib.redirect_stdout(sys.stderr):
            self.model.fit({"X": X[keep][..., None]}, {"X": Xv[..., None], "X_ori": Xo.astype(np.float32)[..., None]})
        return self

    def predict(self, batch) -> np.ndarray:
        if self.model is None:
            raise BaselineError("SaitsImputer.predict before fit")
        X, scale = self._scaled(batch, batch.observed)
        with contextlib.redirect_stdout(sys.stderr):
            imputed = self.model.predict({"X": X[..., None]})["imputation"]
        fill = np.maximum(np.asarray(imputed, np.float64)[:, -batch.load_w.shape[1]:, 0] * scale, 0.0)
        return np.where(batch.observed, batch.load_w, fill)


class SaitsFiller:
    """``fill(prof, cases) -> [N, L]`` W for ``trainer.user_eval.evaluate_imputation(saits=...)``.

    ``data``: a ``trainer.user_eval.UserData``; ``context_days``: complete days before each case's
    day that SAITS sees (>= 1). A window is ``context_days + 1`` days, [T = (context_days + 1) * L, 1].
    """

    def __init__(self, data, context_days: int = 1, cfg: SaitsConfig | None = None) -> None:
        if context_days < 1:
            raise BaselineError(f"context_days must be >= 1, got {context_days}")
        self.data, self.context_days, self.cfg = data, context_days, cfg or SaitsConfig()
        self.L = data.steps_per_day
        self.T = (context_days + 1) * self.L
        self.scale = {}
        for m, prof in enumerate(data.profiles):
            a, b = data.splits[m].train
            level = float(np.nanmean(prof.load_w[a:b]))
            if not np.isfinite(level) or level <= 0:
                raise BaselineError(f"meter {prof.household_id}: no positive load in its training days to scale by")
            self.scale[prof.household_id] = level
        self.model = None

    def _windows(self, part: str) -> np.ndarray:
        """[N, T] scaled windows ending on a day of ``part`` (NaN where the meter had no reading)."""
        out = []
        stride = max(1, self.L // self.cfg.windows_per_day)
        for m, prof in enumerate(self.data.profiles):
            a, b = getattr(self.data.splits[m], part)
            x = prof.load_w.reshape(-1) / self.scale[prof.household_id]
            first = max(a - self.context_days, 0) * self.L
            starts = np.arange(first, b * self.L - self.T + 1, stride if part == "train" else self.L)
            out += [x[s:s + self.T] for s in starts if np.isfinite(x[s:s + self.T]).mean() > 0.5]
        return np.asarray(out, np.float32).reshape(-1, self.T)

    def fit(self) -> SaitsFiller:
        """Train SAITS on the training days' windows, early-stopped on the validation days' windows
        with 4-12-sample blocks and random points hidden (30 %)."""
        import torch

        train = self._windows("train")
        val = self._windows("val")
        if len(train) < 2:
            raise BaselineError(f"SAITS needs training windows of {self.context_days + 1} days; got {len(train)}")
        torch.manual_seed(self.cfg.seed)
        c = self.cfg
        self.model = saits_model(c, self.T, early_stopping=bool(len(val)))
        val_set = None
        if len(val):
            rng = np.random.default_rng([c.seed, 0x5A1])
            hide = np.stack([self._val_mask(rng) for _ in range(len(val))])
            val_set = {"X": np.where(hide, np.nan, val)[..., None], "X_ori": val[..., None]}
        with contextlib.redirect_stdout(sys.stderr):
            self.model.fit({"X": train[..., None]}, val_set)
        return self

    def _val_mask(self, rng: np.random.Generator) -> np.ndarray:
        """bool [T], True = hidden: 30 % of the last day, points or blocks as the report hides them."""
        day = U.point_mask(self.L, 0.3, rng) if rng.random() < 0.5 else U.block_mask(self.L, 0.3, rng)
        return np.concatenate([np.zeros(self.T - self.L, bool), day])

    def __call__(self, prof, cases) -> np.ndarray:
        """Fill ``cases`` (``edge.data.userdata.ImputationCases`` of ``prof``): [N, L] W; observed
        points are kept as given. Raises ``BaselineError`` before :meth:`fit` or for a case without
        ``context_days`` complete days before it."""
        if self.model is None:
            raise BaselineError("SaitsFiller.fit() first")
        scale = self.scale[prof.household_id]
        x = prof.load_w / scale
        k = self.context_days
        rows = []
        for d, target, obs in zip(cases.day, cases.target_w, cases.observed, strict=True):
            before = x[max(d - k, 0):d].reshape(-1)
            if len(before) < k * self.L:
                raise BaselineError(f"imputation case on day {d} has fewer than {k} days before it")
            rows.append(np.concatenate([before, np.where(obs > 0.5, target / scale, np.nan)]))
        X = np.asarray(rows, np.float32)[..., None]
        with contextlib.redirect_stdout(sys.stderr):
            imputed = self.model.predict({"X": X})["imputation"]
        fill = np.asarray(imputed, np.float64)[:, -self.L:, 0] * scale
        return np.where(cases.observed > 0.5, cases.target_w, fill)
