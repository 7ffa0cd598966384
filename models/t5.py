"""T5 v1.1 encoder (FLUX's text_encoder_2, google/t5-v1_1-xxl), written for torch.jit.script.

Same computation and parameter names as transformers' T5EncoderModel: RMS-style T5LayerNorm, gated-gelu
(tanh) FFN, unscaled attention scores plus a relative position bias computed by the first layer and shared by
all layers. One scripted file serves any batch size and any length up to the model's positions (T5 has no
absolute positions; the relative bias is computed for the length it is given).

    model = T5Encoder(t5_xxl_config())
    hidden = model(input_ids, attention_mask)   # [B, L] int64, optional [B, L] (1 keep, 0 pad) -> [B, L, d_model]

Names: `shared.weight` is the token embedding; transformers ties `encoder.embed_tokens.weight` to it, and
checkpoints may carry either or both: `load_t5_checkpoint` accepts both spellings.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.encoder_configs import T5EncoderConfig, load_checkpoint_strict


class T5LayerNorm(nn.Module):
    """RMS norm without bias or mean subtraction; statistics in fp32 (as transformers)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype == torch.float16 or self.weight.dtype == torch.bfloat16:
            x = x.to(self.weight.dtype)
        return self.weight * x


class T5DenseGatedActDense(nn.Module):
    def __init__(self, cfg: T5EncoderConfig):
        super().__init__()
        self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x)
        # transformers keeps `wo` in fp32 for half-precision T5 (_keep_in_fp32_modules): follow its dtype.
        return self.wo(h.to(self.wo.weight.dtype))


class T5LayerFF(nn.Module):
    def __init__(self, cfg: T5EncoderConfig):
        super().__init__()
        self.DenseReluDense = T5DenseGatedActDense(cfg)
        self.layer_norm = T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.DenseReluDense(self.layer_norm(x))


def relative_position_bucket(relative_position: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5 bucketing (Mesh TensorFlow): half the buckets for each sign, exact up to
    num_buckets/4, logarithmic up to max_distance, saturated beyond."""
    num_buckets = num_buckets // 2
    buckets = (relative_position > 0).to(torch.long) * num_buckets
    relative_position = torch.abs(relative_position)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    if_large = max_exact + (torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact)
                            * (num_buckets - max_exact)).to(torch.long)
    if_large = torch.clamp(if_large, max=num_buckets - 1)
    return buckets + torch.where(is_small, relative_position, if_large)


class T5Attention(nn.Module):
    def __init__(self, cfg: T5EncoderConfig, has_relative_attention_bias: bool):
        super().__init__()
        self.n_heads = cfg.num_heads
        self.d_kv = cfg.d_kv
        self.num_buckets = cfg.relative_attention_num_buckets
        self.max_distance = cfg.relative_attention_max_distance
        inner = cfg.num_heads * cfg.d_kv
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.relative_attention_bias: Optional[nn.Embedding] = (
            nn.Embedding(cfg.relative_attention_num_buckets, cfg.num_heads) if has_relative_attention_bias else None)

    def compute_bias(self, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """[1, heads, L, L] relative position bias (zeros for layers without the table)."""
        emb = self.relative_attention_bias
        if emb is None:
            return torch.zeros([1, self.n_heads, length, length], device=device, dtype=dtype)
        pos = torch.arange(length, dtype=torch.long, device=device)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
        return emb(buckets).permute([2, 0, 1]).unsqueeze(0)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.q(x).view(b, n, self.n_heads, self.d_kv).transpose(1, 2)
        k = self.k(x).view(b, n, self.n_heads, self.d_kv).transpose(1, 2)
        v = self.v(x).view(b, n, self.n_heads, self.d_kv).transpose(1, 2)
        # T5 does not scale scores: scale=1; `bias` = position bias + padding mask, shared by all layers.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
        return self.o(out.transpose(1, 2).reshape(b, n, self.n_heads * self.d_kv))


class T5LayerSelfAttention(nn.Module):
    def __init__(self, cfg: T5EncoderConfig, has_relative_attention_bias: bool):
        super().__init__()
        self.SelfAttention = T5Attention(cfg, has_relative_attention_bias)
        self.layer_norm = T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return x + self.SelfAttention(self.layer_norm(x), bias)


class T5Block(nn.Module):
    def __init__(self, cfg: T5EncoderConfig, has_relative_attention_bias: bool):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(cfg, has_relative_attention_bias), T5LayerFF(cfg)])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = _clamp_fp16(self.layer[0](x, bias))
        return _clamp_fp16(self.layer[1](x))


def _most_negative(dtype: torch.dtype) -> float:
    # torch.finfo(dtype).min (not scriptable): the additive mask value transformers uses for padded keys.
    if dtype == torch.float16:
        return -65504.0
    if dtype == torch.bfloat16:
        return -3.3895313892515355e38
    return -3.4028234663852886e38


def _clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    # transformers clamps fp16 activations after every layer to keep them finite.
    if x.dtype == torch.float16:
        big = 65504.0 - 1000.0 if bool(torch.isinf(x).any()) else 65504.0
        x = torch.clamp(x, min=-big, max=big)
    return x


class T5Stack(nn.Module):
    def __init__(self, cfg: T5EncoderConfig):
        super().__init__()
        self.block = nn.ModuleList([T5Block(cfg, i == 0) for i in range(cfg.num_layers)])
        self.final_layer_norm = T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, x: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
        b, n, _ = x.shape
        bias = torch.zeros([1], device=x.device, dtype=x.dtype)
        for i, blk in enumerate(self.block):
            if i == 0:
                bias = blk.layer[0].SelfAttention.compute_bias(n, x.device, blk.layer[0].SelfAttention.q.weight.dtype)
                if attention_mask is not None:
                    keep = attention_mask.to(torch.bool).view(b, 1, 1, n)
                    bias = bias.masked_fill(torch.logical_not(keep), _most_negative(bias.dtype))
            x = blk(x, bias)
        return self.final_layer_norm(x)


class T5Encoder(nn.Module):
    """transformers.T5EncoderModel's computation and names. forward(input_ids [B,L] int64,
    attention_mask Optional[B,L] (nonzero = token, 0 = padding)) -> last hidden state [B, L, d_model]."""

    def __init__(self, cfg: T5EncoderConfig):
        super().__init__()
        self.d_model = cfg.d_model
        self.max_length = cfg.max_length
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = T5Stack(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError("T5Encoder: input_ids must be [batch, length]")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError("T5Encoder: attention_mask must have the shape of input_ids")
        return self.encoder(self.shared(input_ids), attention_mask)


def t5_checkpoint_key(key: str) -> Optional[str]:
    """Checkpoint key -> T5Encoder name (None: not part of the encoder, e.g. a full T5's decoder / lm_head)."""
    if key.startswith("decoder.") or key.startswith("lm_head."):
        return None
    if key == "encoder.embed_tokens.weight":
        return "shared.weight"  # tied alias
    return key


def load_t5_checkpoint(model: T5Encoder, path: str, dtype: Optional[torch.dtype] = None) -> None:
    """Strictly loads a transformers T5EncoderModel / T5 checkpoint (safetensors, sharded or not)."""
    load_checkpoint_strict(model, path, t5_checkpoint_key, dtype)
