"""NILM baselines: the CNN seq2seq disaggregator and the edge.signal adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.trainer.baselines.conftest import fast, mae
from trainer import baselines as b


def nilm_batch(n: int, seed: int, length: int = 64) -> b.NILMBatch:
    """Two appliances: a 2 kW kettle (short pulses) and a 150 W fridge (long cycles) + base load."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    kettle = np.zeros((n, length))
    for i in range(n):
        s = rng.integers(0, length - 4)
        if rng.random() < 0.7:
            kettle[i, s : s + 4] = 2000
    phase = rng.integers(0, 32, (n, 1))
    fridge = 150.0 * (((t[None, :] + phase) // 16) % 2 == 0)
    apps = np.stack([kettle, fridge], 1)
    load = apps.sum(1) + 80 + rng.normal(0, 5, (n, length))
    ts = 1_700_000_000 + 60 * t[None, :].repeat(n, 0)
    return b.NILMBatch(load, apps, apps > 10, ts, ["kettle", "fridge"], 60)


def test_cnn_disaggregator_beats_predicting_nothing():
    train, val, test = nilm_batch(300, 1), nilm_batch(60, 2), nilm_batch(100, 3)
    cfg = b.CNNDisaggregatorConfig(channels=16, train=fast(lr=3e-3, epochs=15))
    pred = b.CNNDisaggregator(cfg).fit(train, val).predict(test)
    assert mae(pred.appliance_w, test.appliance_w) < 0.6 * mae(0, test.appliance_w)
    kettle_on = test.on[:, 0]
    assert np.mean(pred.on[:, 0][kettle_on]) > 0.7  # recall of kettle ON points


def test_signal_nilm_adapter_runs_the_fhmm():
    from edge.signal import nilm

    def fit(apps, agg, ts):
        model = nilm.FHMM().fit(apps, agg)
        return lambda x, t: model.predict(x)

    train, val, test = nilm_batch(40, 1), nilm_batch(5, 2), nilm_batch(10, 3)
    pred = b.SignalNILM("signal_fhmm", fit).fit(train, val).predict(test)
    assert pred.appliance_w.shape == test.appliance_w.shape
    # the kettle's 2 kW steps are unmistakable: the FHMM must find most of them
    assert np.mean(pred.on[:, 0][test.on[:, 0]]) > 0.7


def test_seq2point_predicts_each_sample_from_the_window_centred_on_it():
    train, val, test = nilm_batch(300, 1), nilm_batch(60, 2), nilm_batch(100, 3)
    cfg = b.Seq2PointConfig(window=41, hidden=16, train=fast(lr=3e-3, epochs=15))
    model = b.Seq2Point(cfg).fit(train, val)
    pred = model.predict(test)
    assert pred.appliance_w.shape == test.appliance_w.shape
    assert not np.any(pred.appliance_w[~pred.on])  # off is 0 W
    assert np.mean(pred.on[:, 0][test.on[:, 0]]) > 0.7  # recall of kettle ON points
    # one pass over a series equals one call per window centred on each sample (the paper's form)
    x = model._inputs(test.load_w[:1])[0]
    t = 30
    single = model.net(torch.as_tensor(x[None, t:t + 41]))[0, :, 0].detach().numpy()
    whole = model.net(torch.as_tensor(x[None]))[0, :, t].detach().numpy()
    assert np.allclose(single, whole, atol=1e-5)


def test_seq2point_refuses_an_even_window():
    with pytest.raises(b.BaselineError, match="odd"):
        b.Seq2Point(b.Seq2PointConfig(window=40))
