"""``unimeter train evaluate``: the unified model against task-specific baselines, honestly.

One simulated fleet is split **by household** into train / validation / test (6:2:2, seed 000's
fine-tuning ratio; ``edge.data.split``, the project's one splitter). Every method (baselines and
the unified model) is fitted on the training households, makes its choices (early stopping,
thresholds, seasonal lag) on the validation households, and is scored once on the test households.
The test split is never used for a choice.

Tasks and metrics (seed 000 §IV-A; every metric from ``edge.signal.metrics``):

* forecast: day-ahead (48 x 30 min) and hour-ahead (2 x 30 min) MAE / RMSE / MAPE, with the
  calendar and weather covariates of ``edge.features`` (the temperature "forecast" is the
  simulated temperature: a perfect weather forecast, the same for every method).
* imputation: MAE / RMSE / MAPE on the missing points only, at each missing rate, for random
  points and for one contiguous block per day.
* anomaly: window accuracy / precision / recall / F1 (and point F1) for scaling and ramp_ii
  (up-then-down ramping) attacks (Cui et al. 2019, seed 000 ref [34]; ``edge.sim.inject``), each
  scored against the same clean windows.
* NILM: per-appliance ON/OFF F1 and energy MAE (Wh per window) on high-rate windows.

Ablations (seed 000 §IV-C, on imputation as in the paper): no MoE (dense FFN of equal active
compute, ``ModelConfig.moe=False``) and no IB (``use_ib=False``, i.e. beta = 0).

MAPE divides by the true value; household loads are never far from zero at night, so points with
a true value under ``mape_floor_w`` are left out of MAPE (MAE and RMSE use every point).

Modules: ``config`` (what a run depends on), ``data`` (the fleet and each task's windows, built on
``trainer.data``, ``edge.sim.inject`` and ``edge.data.split``), ``methods`` (the baselines by
name), ``unified`` (the unified model and its ablations as methods), ``run`` (fit, predict,
score), ``targets`` (seed 000's targets), ``report`` and ``plots`` (JSON, markdown, PNG),
``cli``. The package itself imports nothing: ``cli`` builds its parser without torch (the
``unimeter`` plugin rule); ``trainer.evaluation.run.evaluate(cfg)`` is the Python entry point.
"""
