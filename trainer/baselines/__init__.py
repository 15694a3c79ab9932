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
* NILM: `SignalNILM` (wraps ``edge.signal`` NILM methods) and `CNNDisaggregator` (seq2seq CNN),
  `Seq2Point` (Zhang et al. 2018).

Learned baselines normalise each window by its own history (instance normalisation, like the
unified model) instead of seed 004's global MinMaxScaler: households differ in level by an order
of magnitude, and a global scaler would hand the unified model an unfair advantage.

Modules: ``batches`` (the shared batch types), ``training`` (the learned baselines' schedule),
``forecast``, ``imputation``, ``anomaly``, ``nilm``. Everything public is importable from
``trainer.baselines``.
"""

from trainer.baselines.anomaly import (
    CNNDetector,
    CNNDetectorConfig,
    ZScoreConfig,
    ZScoreDetector,
    best_f1_threshold,
)
from trainer.baselines.batches import (
    STEPS_PER_DAY,
    AnomalyBatch,
    AnomalyPrediction,
    BaselineError,
    ForecastBatch,
    ForecastPrediction,
    ImputationBatch,
    NILMBatch,
    NILMPrediction,
)
from trainer.baselines.forecast import (
    DLinearConfig,
    DLinearForecaster,
    LSTMConfig,
    LSTMForecaster,
    SeasonalNaive,
    WeeklyNaive,
    moving_average,
)
from trainer.baselines.imputation import (
    BiLSTMImputer,
    BiLSTMImputerConfig,
    LinearInterpolation,
    SeasonalImputer,
    SignalFiller,
    interpolate_rows,
    training_masks,
)
from trainer.baselines.nilm import (
    CNNDisaggregator,
    CNNDisaggregatorConfig,
    Seq2Point,
    Seq2PointConfig,
    SignalNILM,
    on_thresholds,
)
from trainer.baselines.training import (
    TrainConfig,
    evaluate_loss,
    instance_stats,
    predict_batched,
    train_regressor,
)

__all__ = ['AnomalyBatch', 'AnomalyPrediction', 'BaselineError', 'ForecastBatch', 'ForecastPrediction', 'ImputationBatch', 'NILMBatch', 'NILMPrediction', 'STEPS_PER_DAY', 'TrainConfig', 'evaluate_loss', 'instance_stats', 'predict_batched', 'train_regressor', 'DLinearConfig', 'DLinearForecaster', 'LSTMConfig', 'LSTMForecaster', 'SeasonalNaive', 'WeeklyNaive', 'moving_average', 'BiLSTMImputer', 'BiLSTMImputerConfig', 'LinearInterpolation', 'SeasonalImputer', 'SignalFiller', 'interpolate_rows', 'training_masks', 'CNNDetector', 'CNNDetectorConfig', 'ZScoreConfig', 'ZScoreDetector', 'best_f1_threshold', 'CNNDisaggregator', 'CNNDisaggregatorConfig', 'Seq2Point', 'Seq2PointConfig', 'SignalNILM', 'on_thresholds']
