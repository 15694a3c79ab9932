"""The unified model of seed 000: gating, balance losses, IB, instance norm, dispatch equality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.model import (
    DISPATCHES,
    ModelConfig,
    MoEFeedForward,
    NoisyTopKGate,
    UnifiedModel,
    count_parameters,
    cv_squared,
    expert_utilisation,
    gaussian_kl,
    instance_denorm,
    instance_norm,
    tokens_per_expert,
)
from trainer.pretrain import random_patch_mask


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _loads(b: int = 8, length: int = 48) -> torch.Tensor:
    t = torch.linspace(0, 6.28, length)
    return 300 + 200 * torch.sin(t)[None, :] * torch.rand(b, 1) + 50 * torch.rand(b, length)


def test_table1_defaults():
    cfg = ModelConfig()
    assert (cfg.n_patches, cfg.d_model, cfg.d_k, cfg.n_experts, cfg.top_k, cfg.n_layers) == (12, 16, 4, 8, 2, 8)
    assert (cfg.beta, cfg.w_value, cfg.w_load) == (0.001, 0.1, 0.1)
    assert cfg.patch_len == 4 and cfg.n_heads == 4
    assert count_parameters(UnifiedModel(ModelConfig.teacher())) > 10 * count_parameters(UnifiedModel(cfg))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("bad", [dict(seq_len=50), dict(d_model=18), dict(top_k=9), dict(activation="tanh")])
def test_config_rejects_inconsistent_values(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad)


@pytest.mark.parametrize("training", [True, False])
def test_exactly_k_nonzero_gate_weights_per_token(training):
    cfg = ModelConfig()
    gate = NoisyTopKGate(cfg).train(training)
    torch.nn.init.normal_(gate.w_g.weight)
    r = gate(torch.randn(200, cfg.d_model))
    dense = torch.zeros(200, cfg.n_experts).scatter(1, r.topk_idx, r.gates)
    assert ((dense > 0).sum(1) == cfg.top_k).all()
    torch.testing.assert_close(dense.sum(1), torch.ones(200))
    assert r.topk_idx.unique(dim=1).shape[1] == cfg.top_k  # k distinct experts per token


def test_gradients_reach_w_g_and_w_eps():
    model = UnifiedModel(ModelConfig.tiny()).train()
    x = _loads()
    _, loss = model(x, targets=x, noise_std=0.1)
    loss.total.backward()
    for moe in model.moe_layers():
        assert moe.gate.w_g.weight.grad.abs().sum() > 0
        assert moe.gate.w_eps.weight.grad.abs().sum() > 0


def test_balance_loss_larger_for_skewed_than_uniform_routing():
    cfg = ModelConfig()
    x = torch.randn(512, cfg.d_model)
    x[:, 0] = 1.0
    uniform = NoisyTopKGate(cfg).train()
    torch.nn.init.zeros_(uniform.w_g.weight)  # only the noise decides: near-uniform routing
    skewed = NoisyTopKGate(cfg).train()
    with torch.no_grad():
        skewed.w_g.weight.zero_()
        skewed.w_g.weight[:2, 0] = torch.tensor([8.0, 7.0])  # experts 0 and 1 always win
    bu, bs = uniform(x).balance_loss, skewed(x).balance_loss
    assert bs > 10 * bu
    assert cv_squared(torch.ones(8)) == 0
    assert tokens_per_expert((skewed(x),), cfg.n_experts)[0, :2].sum() == 2 * 512


def test_payload_is_probability_mass_of_selection():
    cfg = ModelConfig()
    gate = NoisyTopKGate(cfg).train()
    torch.nn.init.normal_(gate.w_g.weight)
    r = gate(torch.randn(300, cfg.d_model))
    assert (r.payload >= 0).all() and (r.payload <= 300).all()
    # in expectation k experts are selected per token, so payloads sum to about k * N
    assert abs(r.payload.sum().item() - cfg.top_k * 300) < 0.25 * cfg.top_k * 300
    torch.testing.assert_close(r.value.sum(), torch.tensor(300.0))


def test_kl_equals_closed_form():
    mu, log_sigma = torch.randn(4, 12, 16), 0.3 * torch.randn(4, 12, 16)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, log_sigma.exp()), torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl(mu, log_sigma), ref.reshape(4, -1).sum(-1))
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


def test_loss_is_eq26_sum_of_terms():
    model = UnifiedModel(ModelConfig.tiny(beta=0.5)).train()
    x = _loads()
    _, loss = model(x, targets=x)
    t = loss.terms()
    assert t["kl"] > 0 and t["recon"] > 0 and t["balance"] >= 0
    assert loss.total.item() == pytest.approx(t["recon"] + 0.5 * t["kl"] + t["balance"], rel=1e-5)
    assert t["loss"] == pytest.approx(loss.total.item())
    # routing comes back with the loss (8 x 12 tokens, k = 2 slots each), nothing is stored
    assert loss.tokens_per_expert.shape == (2, 4) and (loss.tokens_per_expert.sum(1) == 8 * 12 * 2).all()
    assert not any(hasattr(m, "last_routing") for m in model.modules()) and not hasattr(model, "last_losses")


@pytest.mark.parametrize("ratio", [0.25, 0.4, 0.5])
def test_masking_rate_honoured(ratio):
    mask = random_patch_mask(64, 12, ratio, torch.Generator().manual_seed(1))
    assert (mask.sum(1) == round(ratio * 12)).all()
    assert mask.any(0).all()  # every patch position gets masked somewhere


def test_masked_patches_do_not_reach_the_model():
    model = UnifiedModel(ModelConfig.tiny()).eval()
    x = _loads(4)
    mask = random_patch_mask(4, 12, 0.4, torch.Generator().manual_seed(2))
    hidden = mask.repeat_interleave(4, dim=1)
    x2 = torch.where(hidden, x * 5 + 1000, x)
    with torch.no_grad():
        a, _ = model(x, mask=mask)
        b, _ = model(x2, mask=mask)
        c, _ = model(x2)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1.0


def test_instance_norm_round_trips():
    x = _loads(6) * 3 - 100
    xn, stats = instance_norm(x, None, 1e-5)
    torch.testing.assert_close(xn.mean(-1), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(xn.std(-1, unbiased=False), torch.ones(6), atol=1e-3, rtol=0)
    torch.testing.assert_close(instance_denorm(xn, stats), x)
    obs = (torch.rand(6, 48) > 0.3).float()
    xn, stats = instance_norm(x * obs, obs, 1e-5)
    assert (xn[obs == 0] == 0).all()
    torch.testing.assert_close(instance_denorm(xn, stats)[obs == 1], x[obs == 1], rtol=1e-5, atol=1e-3)
    # statistics come from observed points only
    torch.testing.assert_close(stats.mean_w[:, 0], (x * obs).sum(1) / obs.sum(1))


@pytest.mark.parametrize("name", ["tiny", "table1"])
def test_dispatches_agree(name):
    model = UnifiedModel(ModelConfig.named(name)).eval()
    for moe in model.moe_layers():
        torch.nn.init.normal_(moe.gate.w_g.weight)  # a trained-looking, decisive router
    x = _loads(16)
    with torch.no_grad():
        a, _ = model.set_dispatch("loop")(x)
        b, _ = model.set_dispatch("gather")(x)
        c, _ = model.set_dispatch("dense")(x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-3)
    assert set(DISPATCHES) == {"loop", "gather", "moe_op", "dense"}
    with pytest.raises(ValueError):
        model.set_dispatch("sideways")


def test_moe_op_dispatch_matches_the_loop_for_relu_experts():
    model = UnifiedModel(ModelConfig.tiny(activation="relu")).eval().set_aux_losses(False)
    for moe in model.moe_layers():
        torch.nn.init.normal_(moe.gate.w_g.weight)
    x = _loads(16)
    with torch.no_grad():
        a, _ = model.set_dispatch("loop")(x)
        b, _ = model.set_dispatch("moe_op")(x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
    assert MoEFeedForward.forward is MoEFeedForward.__dict__["forward"]  # nothing patched the class


def test_loop_dispatch_computes_only_routed_tokens():
    cfg = ModelConfig.tiny(n_experts=4, top_k=1)
    moe = MoEFeedForward(cfg).eval()
    with torch.no_grad():
        moe.gate.w_g.weight.zero_()
        moe.gate.w_g.weight[2, 0] = 10.0  # every token routes to expert 2
        moe.w1[[0, 1, 3]] = float("nan")  # an expert that ran would poison the output
    x = torch.randn(5, 7, cfg.d_model)
    x[..., 0] = 1.0
    y, _ = moe(x)
    assert torch.isfinite(y).all()


def test_ablations_run():
    x = _loads()
    dense = UnifiedModel(ModelConfig.tiny(moe=False)).train()
    _, loss = dense(x, targets=x)
    assert dense.moe_layers() == [] and loss.balance == 0 and loss.tokens_per_expert.shape == (0, 4)
    no_ib = UnifiedModel(ModelConfig.tiny(use_ib=False)).train()
    _, loss = no_ib(x, targets=x)
    assert loss.kl == 0 and torch.isfinite(loss.total)


def test_bad_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="expected input"):
        UnifiedModel(ModelConfig.tiny())(torch.zeros(2, 47))


def test_inference_routing_without_aux_losses_is_identical():
    model = UnifiedModel(ModelConfig.tiny()).eval()
    for moe in model.moe_layers():
        torch.nn.init.normal_(moe.gate.w_g.weight)
    x = _loads()
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model.set_aux_losses(False)(x)
        enc = model.encode(x)
    torch.testing.assert_close(a, b)
    assert all(float(r.balance_loss) == 0 for r in enc.routing)  # no W_eps, Value, Payload
    assert sum(expert_utilisation(enc.routing, 4)[0]) == pytest.approx(1.0)


def test_linear_fill_matches_numpy_interp():
    from trainer.model import linear_fill

    g = torch.Generator().manual_seed(3)
    x = torch.rand(32, 48, generator=g) * 1000
    obs = (torch.rand(32, 48, generator=g) > 0.5).float()
    obs[:, 0] = obs[:, -1] = 1  # np.interp holds the end values, like linear_fill does
    obs[5] = 0
    filled = linear_fill(x * obs, obs)
    for i in range(32):
        o = obs[i].numpy() > 0
        ref = np.interp(np.arange(48), np.flatnonzero(o), x[i].numpy()[o]) if o.any() else np.zeros(48)
        np.testing.assert_allclose(filled[i].numpy(), ref, rtol=1e-5, atol=1e-3)
    edge = linear_fill(torch.tensor([[0.0, 3.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]]))
    assert edge.tolist() == [[3.0, 3.0, 3.0]]
