"""The one training loop: early stopping, best weights, clipping, max_steps, and resume that
continues exactly where an interrupted run stopped (for fine-tuning, distillation and the
learned baselines as for pre-training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.loop import LoopConfig, ResumeError, TrainingError, TrainLoop


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(256, 1, generator=g)
    return x, y


def _fit(tmp_path, cfg: LoopConfig, *, checkpoint=None, val_losses=None, crash_at=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = _problem()
    loop = TrainLoop(model, opt, cfg, checkpoint=checkpoint, fingerprint={"lr": 0.05})

    def batches(epoch, skip):  # the order is a function of the epoch: a resume sees the same one
        order = np.random.default_rng([0, epoch]).permutation(len(x))
        for b in range(skip, len(x) // 32):
            idx = torch.as_tensor(order[b * 32:(b + 1) * 32])
            yield x[idx], y[idx]

    def step_loss(batch, state):
        if crash_at is not None and state.step == crash_at:
            raise KeyboardInterrupt  # the run is killed here
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1])

    scripted = iter(val_losses) if val_losses is not None else None

    def validate():
        return next(scripted) if scripted is not None else float(torch.nn.functional.mse_loss(model(x), y))

    state = loop.fit(batches, len(x) // 32, step_loss, validate)
    return model, state


def test_early_stopping_keeps_the_best_weights(tmp_path):
    seen = []
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = _problem()
    loop = TrainLoop(model, opt, LoopConfig(epochs=20, patience=2, progress=False))
    vals = iter([3.0, 1.0, 2.0, 2.5, 0.5, 9.0])

    def validate():
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(vals)

    state = loop.fit(lambda e, s: [(x, y)], 1, lambda b, st: torch.nn.functional.mse_loss(model(b[0]), b[1]),
                     validate)
    assert [h["val_loss"] for h in state.history] == [3.0, 1.0, 2.0, 2.5]  # stopped 2 epochs after the best
    assert state.best_epoch == 1 and state.best_loss == 1.0 and state.stopped
    assert all(torch.equal(model.state_dict()[k], seen[1][k]) for k in seen[1])


def test_max_steps_stops_mid_epoch_and_clipping_bounds_the_step(tmp_path):
    model, state = _fit(tmp_path, LoopConfig(epochs=5, max_steps=11, grad_clip=1e-3, progress=False))
    assert state.step == 11 and state.epoch == 1 and state.batch_in_epoch == 3
    torch.manual_seed(0)
    start = torch.nn.Linear(4, 1)
    moved = torch.cat([(a - b).flatten() for a, b in zip(model.parameters(), start.parameters(), strict=True)])
    assert float(moved.norm()) <= 11 * 0.05 * 1e-3 + 1e-6  # every step's gradient was clipped


def test_an_interrupted_run_resumes_exactly(tmp_path):
    cfg = LoopConfig(epochs=4, patience=10, ckpt_every=3, progress=False)
    full, full_state = _fit(tmp_path, cfg, checkpoint=tmp_path / "full.pt")
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, cfg, checkpoint=tmp_path / "part.pt", crash_at=13)  # killed mid-epoch 1
    resumed, state = _fit(tmp_path, cfg, checkpoint=tmp_path / "part.pt")
    assert state.step == full_state.step == 32
    assert [h["epoch"] for h in state.history] == [0, 1, 2, 3]
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_resume_refuses_another_configuration(tmp_path):
    _fit(tmp_path, LoopConfig(epochs=1, progress=False), checkpoint=tmp_path / "run.pt")
    model = torch.nn.Linear(4, 1)
    loop = TrainLoop(model, torch.optim.SGD(model.parameters(), lr=0.1),
                     LoopConfig(epochs=1, progress=False), checkpoint=tmp_path / "run.pt",
                     fingerprint={"lr": 0.1})
    with pytest.raises(ResumeError, match="another configuration"):
        loop.resume()


def test_a_non_finite_loss_stops_training(tmp_path):
    model = torch.nn.Linear(4, 1)
    loop = TrainLoop(model, torch.optim.SGD(model.parameters(), lr=0.1), LoopConfig(epochs=1, progress=False))
    with pytest.raises(TrainingError, match="step 0"):
        loop.fit(lambda e, s: [torch.zeros(2, 4)], 1, lambda b, st: torch.tensor(math.nan, requires_grad=True))


def test_finetune_and_distill_resume_after_an_interruption(tmp_path):
    """The trainers' own runs resume too: a fine-tuning run cut by max_steps continues to the same
    weights as an uninterrupted one."""
    from trainer.checkpoint import load_checkpoint
    from trainer.data import imputation_set, synthetic_profiles
    from trainer.finetune import FinetuneConfig, finetune
    from trainer.model import ModelConfig

    train = imputation_set(synthetic_profiles(128, seed=0), seed=1)
    val = imputation_set(synthetic_profiles(32, seed=1), seed=2)

    def cfg(out, **kw):
        return FinetuneConfig(task="imputation", out_dir=str(out), epochs=2, batch_size=32, plot=False,
                              progress=False, model=ModelConfig.tiny(), patience=5, **kw)

    full = finetune(cfg(tmp_path / "full"), None, train, val)
    finetune(cfg(tmp_path / "part", max_steps=5), None, train, val)  # stops in epoch 1
    resumed = finetune(cfg(tmp_path / "part"), None, train, val)
    a, b = load_checkpoint(full)["state_dict"], load_checkpoint(resumed)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
