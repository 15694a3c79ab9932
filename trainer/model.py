"""The unified mixture-of-experts model of seed 000, section III-A (one readable file).

    x [B, L] (W) --instance norm--> patches [B, P, L/P] --FC + PE (eq 3)--> tokens [B, P, d_model]
      --> N_model x (multi-head self-attention (eqs 4-5) + MoE feed-forward (eqs 6-12))
      --> variational information bottleneck: mu, sigma, z = mu + sigma * eps (eqs 22-25)
      --> linear recovery head g (eq 1) --> de-normalise --> x_hat [B, L] (W)

Choices where the paper is vague or wrong (each is the sound option, stated once here):
- P is the number of patches (Table I, "the number of data patch"), so the patch length is L / P.
- The patch embedding sees the observed mask as a second channel ([values, observed] -> FC). A
  zero after instance normalisation is the profile mean, so without the channel a hidden point
  and an average point are indistinguishable; with it, pre-training masks (Alg. 2) and missing
  points (imputation) speak the same language. ``observed_channel=False`` gives the paper's FC.
- Instance normalisation uses observed points only and keeps (mean, std) to de-normalise.
  Pre-training's hidden patches are excluded from the statistics too, so nothing about them
  leaks into the input (the model then recovers the whole profile in those units).
- Hidden (pre-training) and missing (imputation) points enter linearly interpolated between
  their observed neighbours (``fill_missing="linear"``), and the recovery head g predicts a
  correction on top of that fill (a residual). The model starts from linear interpolation and
  learns what it misses: daily shape, peaks inside gaps. ``fill_missing="zero"`` is the plain
  zero-fill of the paper.
- Positional encoding (eq 3) is the fixed sinusoidal table of [28].
- Encoder layers are pre-LayerNorm residual blocks (the paper gives no normalisation; pre-LN is
  what trains 8 layers stably without warm-up).
- Eq 9's noise scale is ``Softmax(x W_eps)`` as written (not Shazeer's softplus); noise is added
  only in training, so inference routing is deterministic.
- Eq 25 is the exact KL(N(mu, sigma^2) || N(0, I)) with the 1/2; eq 26 drops the 1/2, which
  only rescales beta. The prior is N(0, I): the printed "N(1, 0)" is degenerate (a typo).
- Eq 26's reconstruction term is the squared L2 norm over the L points in units of the clean
  target's standard deviation (``loss_scale_w``; the paper's normalised space), averaged over
  the batch; the CV^2 balance terms (w_value, w_load) are summed over the MoE layers.
- Eq 12's Except(Noise(x), k, i) is the k-th largest noisy logit among the experts other than
  i: the (k+1)-th largest overall if i is in the top k, else the k-th largest.

Dispatches (``MoEFeedForward.dispatch``, a module attribute: ``model.set_dispatch(name)``) share
the same stacked expert weights [E, d_in, d_out]:
- ``"loop"`` (training): per expert, gather the tokens routed to it, run the expert on those
  tokens only, scatter-add the gated outputs back (Mixtral-style).
- ``"gather"`` (export): ``F.embedding(topk_idx, W.reshape(E, -1))`` fetches each token's k
  expert weight blocks, then batched ``torch.matmul``. Routing stays sparse in the graph
  (TopK + Gather + MatMul) and quantises cleanly.
- ``"moe_op"`` (export, relu experts): the whole layer as one ``unimeter::moe_ffn`` custom op
  (router logits in), which the exporter translates to onnxruntime's ``com.microsoft.MoE``.
- ``"dense"`` (reference): every expert on every token, mixed by the top-k gates (E/k the MACs).

Nothing is stored on the modules during a forward: the MoE layers return their routing
(``RoutingInfo``), ``encode`` returns them in ``Encoded.routing``, and ``forward`` returns the
eq 26 loss with its terms (``Losses``), nanoGPT style: ``out, loss = model(x, targets=x)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.context import (
    CandidateHead,
    Context,
    ContextEmbedding,
    context_norm,
    linear_fill,
    sinusoidal_table,
)

DISPATCHES = ("loop", "gather", "moe_op", "dense")


@dataclass
class ModelConfig:
    """Defaults are seed 000 Table I (P=12, d_model=16, d_k=4, N_e=8, k=2, N_model=8, ...)."""

    seq_len: int = 48  # L: points per input window (a day of 30-min means)
    n_patches: int = 12  # P
    d_model: int = 16
    d_k: int = 4  # per-head dimension of Q, K, V; n_heads = d_model // d_k
    n_experts: int = 8  # N_e
    top_k: int = 2  # k
    n_layers: int = 8  # N_model
    d_expert: int = 32  # hidden width of each expert FFN (not given in the paper)
    dropout: float = 0.1
    beta: float = 0.001  # IB Lagrange penalty (eq 26)
    w_value: float = 0.1
    w_load: float = 0.1
    moe: bool = True  # False: dense FFN of equal active compute (hidden = top_k * d_expert)
    use_ib: bool = True  # False: z = mu, no KL (ablation)
    observed_channel: bool = True
    fill_missing: str = "linear"  # "linear": hidden/missing points enter linearly interpolated; "zero"
    activation: str = "gelu"  # "gelu" | "relu"
    norm_eps: float = 1e-5
    log_sigma_min: float = -7.0
    log_sigma_max: float = 3.0
    # D: days of the household's history before the window (trainer.context): the window and the
    # D days are normalised by the history's statistics, one token per history day, candidate-based
    # recovery head g. 0: the single window of seed 000 (instance normalisation; NILM, and every
    # checkpoint written before the history existed).
    history_days: int = 0

    def __post_init__(self) -> None:
        if self.seq_len % self.n_patches:
            raise ValueError(f"seq_len {self.seq_len} must be divisible by n_patches {self.n_patches}")
        if self.d_model % self.d_k:
            raise ValueError(f"d_model {self.d_model} must be divisible by d_k {self.d_k}")
        if not 1 <= self.top_k <= self.n_experts:
            raise ValueError(f"top_k {self.top_k} must be in [1, n_experts={self.n_experts}]")
        if self.fill_missing not in ("linear", "zero"):
            raise ValueError(f"fill_missing must be 'linear' or 'zero', got {self.fill_missing!r}")
        if self.activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu', got {self.activation!r}")
        if not isinstance(self.history_days, int) or self.history_days < 0:
            raise ValueError(f"history_days must be a whole number >= 0, got {self.history_days!r}")

    @property
    def context(self) -> bool:
        """True for a context model (history_days > 0)."""
        return self.history_days > 0

    @property
    def n_tokens(self) -> int:
        """Tokens the encoder attends over: P window patches plus one per history day."""
        return self.n_patches + self.history_days

    @property
    def patch_len(self) -> int:
        return self.seq_len // self.n_patches

    @property
    def n_heads(self) -> int:
        return self.d_model // self.d_k

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**data)

    # Named configurations -------------------------------------------------------------------
    @classmethod
    def table1(cls, **overrides) -> ModelConfig:
        """Seed 000 Table I, the student that runs on the Pi."""
        return cls(**overrides)

    @classmethod
    def teacher(cls, **overrides) -> ModelConfig:
        """A larger teacher for distillation (~30x the parameters of Table I)."""
        base = dict(d_model=64, d_k=16, n_experts=16, top_k=2, n_layers=8, d_expert=128)
        return cls(**{**base, **overrides})

    @classmethod
    def teacher_large(cls, **overrides) -> ModelConfig:
        base = dict(d_model=128, d_k=32, n_experts=32, top_k=2, n_layers=12, d_expert=256)
        return cls(**{**base, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> ModelConfig:
        """For tests: two layers, four experts."""
        base = dict(d_model=8, d_k=4, n_experts=4, top_k=2, n_layers=2, d_expert=8, dropout=0.0)
        return cls(**{**base, **overrides})

    @classmethod
    def named(cls, name: str, **overrides) -> ModelConfig:
        makers = {"table1": cls.table1, "teacher": cls.teacher,
                  "teacher_large": cls.teacher_large, "tiny": cls.tiny}
        if name not in makers:
            raise ValueError(f"unknown model config {name!r}; choose from {sorted(makers)}")
        return makers[name](**overrides)


# ---------------------------------------------------------------------------------------------
# Patching layer: instance normalisation and patches


@dataclass
class NormStats:
    """Per-sample statistics kept to de-normalise: mean_w, std_w are [B, 1]."""

    mean_w: torch.Tensor
    std_w: torch.Tensor


def instance_norm(x_w: torch.Tensor, observed: torch.Tensor | None, eps: float
                  ) -> tuple[torch.Tensor, NormStats]:
    """Normalise each row of x [B, L] by the mean/std of its observed points; missing -> 0."""
    if observed is None:
        observed = torch.ones_like(x_w)
    count = observed.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (x_w * observed).sum(-1, keepdim=True) / count
    var = (((x_w - mean) * observed) ** 2).sum(-1, keepdim=True) / count
    std = torch.sqrt(var + eps)
    return (x_w - mean) / std * observed, NormStats(mean, std)


def instance_denorm(x_n: torch.Tensor, stats: NormStats) -> torch.Tensor:
    """Inverse of ``instance_norm`` for [B, L] or [B, ..., L] (stats broadcast on dim 0)."""
    shape = (x_n.shape[0],) + (1,) * (x_n.dim() - 1)
    return x_n * stats.std_w.reshape(shape) + stats.mean_w.reshape(shape)


class PatchEmbedding(nn.Module):
    """Eq 3: x_emb = FC(x_p) + PE."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d_in = cfg.patch_len * (2 if cfg.observed_channel else 1)
        self.fc = nn.Linear(d_in, cfg.d_model)
        self.register_buffer("pe", sinusoidal_table(cfg.n_patches, cfg.d_model), persistent=False)

    def forward(self, x_n: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        B = x_n.shape[0]
        P, d_p = self.cfg.n_patches, self.cfg.patch_len
        x_p = x_n.reshape(B, P, d_p)
        if self.cfg.observed_channel:
            x_p = torch.cat([x_p, observed.reshape(B, P, d_p)], dim=-1)
        return self.fc(x_p) + self.pe


# ---------------------------------------------------------------------------------------------
# Encoder: attention and the mixture-of-experts layer


class MultiHeadSelfAttention(nn.Module):
    """Eqs 4-5, written out with matmuls so it exports to plain ONNX ops."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.d_k = cfg.n_heads, cfg.d_k
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)  # W_o
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        # [B, T, 3D] -> [B, 3 n_heads, T, d_k] (q heads, k heads, v heads): one Reshape and one
        # Transpose for all three instead of one each
        qkv = self.qkv(x).reshape(B, T, 3 * self.n_heads, self.d_k).transpose(1, 2)
        q, k, v = qkv.split(self.n_heads, dim=1)
        att = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        att = self.drop(torch.softmax(att, dim=-1))
        y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, D)
        return self.proj(y)


def _activation(name: str):
    return F.gelu if name == "gelu" else F.relu


def cv_squared(v: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation Var/Mean^2 (population variance; 0 when uniform)."""
    return v.var(unbiased=False) / (v.mean() ** 2 + 1e-10)


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


@dataclass
class RoutingInfo:
    """What one MoE layer decided for N tokens (for losses, tests and utilisation plots)."""

    topk_idx: torch.Tensor  # [N, k] long
    gates: torch.Tensor  # [N, k] softmax over the top-k logits
    value: torch.Tensor  # [E] eq 11
    payload: torch.Tensor  # [E] eq 12
    balance_loss: torch.Tensor  # w_value * CV^2(value) + w_load * CV^2(payload)


class NoisyTopKGate(nn.Module):
    """Eqs 8-10 (noisy top-k softmax gate) plus Value (11), Payload (12) and the balance loss."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.w_g = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        self.w_eps = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        nn.init.normal_(self.w_g.weight, std=0.02)  # near-uniform routing, no exact ties
        nn.init.zeros_(self.w_eps.weight)
        self.aux_losses = True  # eval mode: still compute Value/Payload (validation logging)

    def forward(self, x: torch.Tensor) -> RoutingInfo:
        cfg = self.cfg
        E, k = cfg.n_experts, cfg.top_k
        clean = self.w_g(x)  # [N, E]
        if not (self.training or self.aux_losses):  # inference/export: W_eps is not needed
            top_vals, topk_idx = clean.topk(k, dim=-1)
            zero = clean.new_zeros(())
            return RoutingInfo(topk_idx, torch.softmax(top_vals, dim=-1), zero, zero, zero)
        noise_std = torch.softmax(self.w_eps(x), dim=-1)
        noisy = clean + torch.randn_like(clean) * noise_std if self.training else clean
        top_vals, top_idx = noisy.topk(min(k + 1, E), dim=-1)
        topk_idx = top_idx[:, :k]
        gates = torch.softmax(top_vals[:, :k], dim=-1)
        dense = torch.zeros_like(clean).scatter(1, topk_idx, gates)
        value = dense.sum(0)
        payload = self._payload(clean, noisy, noise_std, top_vals) if k < E else \
            torch.full_like(value, float(x.shape[0]))
        balance = cfg.w_value * cv_squared(value) + cfg.w_load * cv_squared(payload)
        return RoutingInfo(topk_idx, gates, value, payload, balance)

    def _payload(self, clean, noisy, noise_std, top_vals) -> torch.Tensor:
        """Eq 12: P(expert i stays in the top k when its noise is re-drawn), summed over tokens."""
        k = self.cfg.top_k
        thr_if_in = top_vals[:, k:k + 1]  # (k+1)-th largest: the k-th among the others
        thr_if_out = top_vals[:, k - 1:k]  # k-th largest
        is_in = noisy > thr_if_in
        thr = torch.where(is_in, thr_if_in, thr_if_out)
        return normal_cdf((clean - thr) / (noise_std + 1e-9)).sum(0)


@torch.library.custom_op("unimeter::moe_ffn", mutates_args=())
def moe_ffn(x: torch.Tensor, logits: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
            b2: torch.Tensor, k: int, activation: str) -> torch.Tensor:
    """One MoE feed-forward layer on x [N, d] or [B, T, d] given its router logits [N, E] (N = B T;
    what onnxruntime's ``com.microsoft.MoE`` computes, 3-D input included): softmax over the top-k
    logits, experts on their routed tokens only. The ``"moe_op"`` dispatch; ``export.onnx_export``
    translates it to the contrib node."""
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    vals, idx = logits.topk(k, dim=-1)
    gates = torch.softmax(vals, dim=-1)
    act = torch.relu if activation == "relu" else F.gelu
    out = torch.zeros_like(x)
    for e in range(w1.shape[0]):
        token, slot = torch.where(idx == e)
        if token.numel():
            y = act(x[token] @ w1[e] + b1[e]) @ w2[e] + b2[e]
            out.index_add_(0, token, y * gates[token, slot, None])
    return out.reshape(shape)


@moe_ffn.register_fake
def _moe_ffn_fake(x, logits, w1, b1, w2, b2, k, activation):
    return torch.empty_like(x)


class MoEFeedForward(nn.Module):
    """Eq 6 with sparse gating: stacked expert weights [E, d_in, d_out]; ``forward(x) -> (y,
    routing)`` with the dispatch of ``self.dispatch`` (see the module docstring)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        E, D, H = cfg.n_experts, cfg.d_model, cfg.d_expert
        self.gate = NoisyTopKGate(cfg)
        self.w1 = nn.Parameter(torch.empty(E, D, H))
        self.b1 = nn.Parameter(torch.zeros(E, H))
        self.w2 = nn.Parameter(torch.empty(E, H, D))
        self.b2 = nn.Parameter(torch.zeros(E, D))
        for w, fan_in in ((self.w1, D), (self.w2, H)):
            nn.init.uniform_(w, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        self.dispatch = "loop"
        self.act = _activation(cfg.activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, RoutingInfo | None]:
        """x [..., d_model] -> (y of the same shape, this layer's routing; None for "moe_op",
        whose routing happens inside the fused op)."""
        shape = x.shape
        if self.dispatch == "moe_op":  # the op takes x as it is ([B, T, d] too): one Reshape fewer
            logits = self.gate.w_g(x).reshape(-1, self.cfg.n_experts)  # eval: no gating noise
            y = torch.ops.unimeter.moe_ffn(x, logits, self.w1, self.b1, self.w2, self.b2,
                                           self.cfg.top_k, self.cfg.activation)
            return y, None
        flat = x.reshape(-1, shape[-1])
        routing = self.gate(flat)
        experts = {"loop": self._loop, "gather": self._gather, "dense": self._dense}[self.dispatch]
        y = experts(flat, routing.topk_idx, routing.gates)
        return y.reshape(shape), routing

    def _loop(self, flat, topk_idx, gates) -> torch.Tensor:
        out = torch.zeros_like(flat)
        for e in range(self.cfg.n_experts):
            token_idx, slot = torch.where(topk_idx == e)
            if token_idx.numel() == 0:
                continue
            h = self.act(flat[token_idx] @ self.w1[e] + self.b1[e])
            y = h @ self.w2[e] + self.b2[e]
            out.index_add_(0, token_idx, y * gates[token_idx, slot, None])
        return out

    def _gather(self, flat, topk_idx, gates) -> torch.Tensor:
        E, D, H = self.cfg.n_experts, self.cfg.d_model, self.cfg.d_expert
        N, k = topk_idx.shape
        w1 = F.embedding(topk_idx, self.w1.reshape(E, D * H)).reshape(N, k, D, H)
        b1 = F.embedding(topk_idx, self.b1)  # [N, k, H]
        w2 = F.embedding(topk_idx, self.w2.reshape(E, H * D)).reshape(N, k, H, D)
        b2 = F.embedding(topk_idx, self.b2)  # [N, k, D]
        xin = flat.reshape(N, 1, 1, D).expand(N, k, 1, D)
        h = self.act(torch.matmul(xin, w1).squeeze(2) + b1)  # [N, k, H]
        y = torch.matmul(h.unsqueeze(2), w2).squeeze(2) + b2  # [N, k, D]
        return (y * gates.unsqueeze(-1)).sum(1)

    def _dense(self, flat, topk_idx, gates) -> torch.Tensor:
        """Every expert on every token ([E, N, ...] batched MatMul over the full expert tables),
        then the top-k gates (zero elsewhere) pick the mix: the sparse result at E/k the MACs."""
        E = self.cfg.n_experts
        h = self.act(torch.matmul(flat.unsqueeze(0), self.w1) + self.b1.unsqueeze(1))  # [E, N, H]
        y = torch.matmul(h, self.w2) + self.b2.unsqueeze(1)  # [E, N, D]
        experts = torch.arange(E, device=flat.device)
        dense_gates = ((topk_idx.unsqueeze(-1) == experts).to(flat.dtype) * gates.unsqueeze(-1)).sum(1)
        return (y * dense_gates.t().unsqueeze(-1)).sum(0)


class DenseFeedForward(nn.Module):
    """Ablation: one FFN with the active compute of the MoE (hidden = top_k * d_expert)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.top_k * cfg.d_expert)
        self.fc2 = nn.Linear(cfg.top_k * cfg.d_expert, cfg.d_model)
        self.act = _activation(cfg.activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.fc2(self.act(self.fc1(x))), None


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = MultiHeadSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ffn = MoEFeedForward(cfg) if cfg.moe else DenseFeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, RoutingInfo | None]:
        x = x + self.drop(self.attn(self.ln1(x)))
        y, routing = self.ffn(self.ln2(x))
        return x + self.drop(y), routing


# ---------------------------------------------------------------------------------------------
# Information bottleneck and the whole model


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Eq 25 per sample: sum_j 1/2 (-1 + mu^2 + sigma^2 - 2 log sigma), summed over all but dim 0."""
    kl = 0.5 * (-1.0 + mu ** 2 + torch.exp(2 * log_sigma) - 2 * log_sigma)
    return kl.reshape(kl.shape[0], -1).sum(-1)


@dataclass
class Encoded:
    """Output of the unified model f: load characteristics z and what is needed around it."""

    z: torch.Tensor  # [B, P, d_model] (sample in training, mu in eval)
    mu: torch.Tensor
    log_sigma: torch.Tensor
    stats: NormStats
    balance_loss: torch.Tensor  # summed over MoE layers
    kl: torch.Tensor  # [B] eq 25 (zeros when use_ib=False)
    fill_n: torch.Tensor  # [B, L] normalised input with hidden/missing points filled
    routing: tuple[RoutingInfo, ...] = ()  # one per MoE layer (none for dense or "moe_op")
    context: Context | None = None  # the normalised window and history (context models)


class Losses(NamedTuple):
    """Eq 26 for one batch: ``total`` is what to minimise; the terms are for logging (tensors,
    turned into numbers by whoever logs them), ``tokens_per_expert`` [n_moe_layers, E] the routed
    token slots of the batch (expert utilisation)."""

    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    balance: torch.Tensor
    tokens_per_expert: torch.Tensor

    def terms(self) -> dict[str, float]:
        """The scalar terms as numbers (one synchronisation), for a log line."""
        values = torch.stack([self.total, self.recon, self.kl, self.balance]).detach().tolist()
        return dict(zip(("loss", "recon", "kl", "balance"), values, strict=True))


class UnifiedModel(nn.Module):
    """The unified model f plus the linear recovery head g (pre-training model of eq 1)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = ContextEmbedding(cfg) if cfg.context else PatchEmbedding(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.ib_mu = nn.Linear(cfg.d_model, cfg.d_model)
        self.ib_log_sigma = nn.Linear(cfg.d_model, cfg.d_model)
        # g: a linear layer (eq 1) on the window's characteristics; for context models the
        # candidate head (softmax over naive fills + a correction, linear in the characteristics)
        self.recovery = CandidateHead(cfg) if cfg.context else nn.Linear(cfg.n_patches * cfg.d_model, cfg.seq_len)

    # -- routing controls -----------------------------------------------------------------------
    def moe_layers(self) -> list[MoEFeedForward]:
        return [m for m in self.modules() if isinstance(m, MoEFeedForward)]

    def set_dispatch(self, dispatch: str) -> UnifiedModel:
        if dispatch not in DISPATCHES:
            raise ValueError(f"dispatch must be one of {DISPATCHES}, got {dispatch!r}")
        for m in self.moe_layers():
            m.dispatch = dispatch
        return self

    def set_aux_losses(self, enabled: bool) -> UnifiedModel:
        """In eval mode, skip W_eps, Value, Payload and the balance loss (inference/export)."""
        for m in self.moe_layers():
            m.gate.aux_losses = enabled
        return self


    # -- forward ---------------------------------------------------------------------------------
    def encode(self, x_w: torch.Tensor, observed: torch.Tensor | None = None,
               patch_mask: torch.Tensor | None = None, noise_std: float = 0.0,
               noise: torch.Tensor | None = None, history_w: torch.Tensor | None = None,
               history_mask: torch.Tensor | None = None) -> Encoded:
        """f: x [B, L] in W (with, for context models, history_w [B, D, L] W and history_mask
        [B, D]; absent = no history day) -> load characteristics.

        observed [B, L] (1 observed, 0 missing); patch_mask [B, P] bool (True = hidden, Alg. 2);
        noise_std adds N(0, noise_std^2) in normalised units before masking (eq 1); ``noise``
        [B, L] (normalised units) gives that noise explicitly (the DDP trainer draws it per global
        batch so every rank sees the slice a single process would). Alg. 2 over the whole context
        also hides history days: the caller zeroes their ``history_mask``.
        """
        cfg = self.cfg
        if x_w.dim() != 2 or x_w.shape[1] != cfg.seq_len:
            raise ValueError(f"expected input [B, {cfg.seq_len}], got {tuple(x_w.shape)}")
        obs = torch.ones_like(x_w) if observed is None else observed.to(x_w.dtype)
        if patch_mask is not None:  # hidden patches count as missing, statistics included
            keep = (~patch_mask).to(x_w.dtype).repeat_interleave(cfg.patch_len, dim=1)
            obs = obs * keep
        ctx = None
        if cfg.context:
            ctx = self._context(x_w, obs, history_w, history_mask, noise_std, noise)
            h, stats, fill_n = self.embed(ctx), NormStats(ctx.mean_w, ctx.std_w), ctx.fill_n
        else:
            h, stats, fill_n = self._embed_window(x_w, obs, noise_std, noise)
        h = self.drop(h)
        balance = x_w.new_zeros(())
        routing = []
        for layer in self.layers:
            h, r = layer(h)
            if r is not None:
                balance = balance + r.balance_loss
                routing.append(r)
        h = self.ln_f(h)
        mu = self.ib_mu(h)
        if not cfg.use_ib:
            return Encoded(mu, mu, torch.zeros_like(mu), stats, balance, x_w.new_zeros(x_w.shape[0]),
                           fill_n, tuple(routing), ctx)
        log_sigma = self.ib_log_sigma(h).clamp(cfg.log_sigma_min, cfg.log_sigma_max)
        z = mu + torch.exp(log_sigma) * torch.randn_like(mu) if self.training else mu
        return Encoded(z, mu, log_sigma, stats, balance, gaussian_kl(mu, log_sigma), fill_n, tuple(routing), ctx)

    def _embed_window(self, x_w: torch.Tensor, obs: torch.Tensor, noise_std: float,
                      noise: torch.Tensor | None) -> tuple[torch.Tensor, NormStats, torch.Tensor]:
        """Seed 000's patching layer: instance normalisation, (noise), linear fill, FC + PE."""
        cfg = self.cfg
        x_n, stats = instance_norm(x_w, obs, cfg.norm_eps)
        if noise is not None:
            x_n = x_n + noise
        elif noise_std > 0:
            x_n = x_n + noise_std * torch.randn_like(x_n)
        x_n = x_n * obs
        fill_n = linear_fill(x_n, obs) if cfg.fill_missing == "linear" else x_n
        return self.embed(fill_n, obs), stats, fill_n

    def _context(self, x_w: torch.Tensor, obs: torch.Tensor, history_w: torch.Tensor | None,
                 history_mask: torch.Tensor | None, noise_std: float, noise: torch.Tensor | None) -> Context:
        """Window and history normalised by the history (``trainer.context.context_norm``); Alg. 2's
        noise on the observed window points and on the history days present."""
        cfg = self.cfg
        B, D, L = x_w.shape[0], cfg.history_days, cfg.seq_len
        if history_w is None:
            history_w, history_mask = x_w.new_zeros(B, D, L), x_w.new_zeros(B, D)
        elif history_mask is None:
            history_mask = x_w.new_ones(B, D)
        if tuple(history_w.shape) != (B, D, L) or tuple(history_mask.shape) != (B, D):
            raise ValueError(f"expected history_w [B, {D}, {L}] and history_mask [B, {D}], got "
                             f"{tuple(history_w.shape)} and {tuple(history_mask.shape)}")
        ctx = context_norm(x_w, obs, history_w, history_mask.to(x_w.dtype))
        if noise is None and noise_std > 0:
            noise = noise_std * torch.randn_like(ctx.fill_n)
        if noise is not None:
            ctx.x_n = (ctx.x_n + noise) * obs
            ctx.fill_n = linear_fill(ctx.x_n, obs, ctx.gap_bounds())
            if D and noise_std > 0:
                ctx.hist_n = ctx.hist_n + noise_std * torch.randn_like(ctx.hist_n) * ctx.history_mask[:, :, None]
        return ctx

    def recover(self, enc: Encoded) -> torch.Tensor:
        """g: the recovered window [B, L] in W."""
        if self.cfg.context:
            return enc.context.denorm(self.recovery(enc))
        return instance_denorm(enc.fill_n + self.recovery(enc.z.reshape(enc.z.shape[0], -1)), enc.stats)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, observed: torch.Tensor | None = None,
                noise_std: float = 0.0, noise: torch.Tensor | None = None,
                history_w: torch.Tensor | None = None, history_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, Losses | None]:
        """x [B, L] W -> (recovered x_hat [B, L] W, eq 26 ``Losses`` if targets [B, L] W are given).

        mask [B, P] bool hides patches (pre-training); observed [B, L] marks missing points;
        history_w [B, D, L] / history_mask [B, D]: the days before the window (context models).
        """
        enc = self.encode(x, observed=observed, patch_mask=mask, noise_std=noise_std, noise=noise,
                          history_w=history_w, history_mask=history_mask)
        out = self.recover(enc)
        if targets is None:
            return out, None
        recon = (((out - targets) / loss_scale_w(targets)) ** 2).sum(-1).mean()
        kl = enc.kl.mean()
        total = recon + self.cfg.beta * kl + enc.balance_loss
        return out, Losses(total, recon, kl, enc.balance_loss, tokens_per_expert(enc.routing, self.cfg.n_experts))


def tokens_per_expert(routing: tuple[RoutingInfo, ...], n_experts: int) -> torch.Tensor:
    """[n_moe_layers, E] routed token slots per expert (float counts, no gradient)."""
    if not routing:
        return torch.zeros(0, n_experts)
    return torch.stack([torch.bincount(r.topk_idx.reshape(-1).detach(), minlength=n_experts).float()
                        for r in routing])


def expert_utilisation(routing: tuple[RoutingInfo, ...], n_experts: int) -> list[list[float]]:
    """Per MoE layer, the share of routed token slots each expert got."""
    counts = tokens_per_expert(routing, n_experts)
    return (counts / counts.sum(1, keepdim=True).clamp_min(1)).tolist()


def loss_scale_w(target_w: torch.Tensor, floor_w: float = 1.0) -> torch.Tensor:
    """[B, 1] scale that makes a loss in W scale-free: the std of the complete target row.

    Losses are measured in these units rather than in the input's instance-norm units: those
    come from the visible points only, and a day whose visible part is flat (std of a few W)
    would turn one hidden kettle spike into a squared error of 10^4 and dominate the batch.
    """
    return target_w.reshape(target_w.shape[0], -1).std(-1, unbiased=False, keepdim=True).clamp_min(floor_w)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
