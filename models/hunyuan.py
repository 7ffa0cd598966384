"""Scriptable HunyuanVideo transformer (text-to-video) with 3-D GRAT attention.

``HunyuanVideoTransformer`` computes what diffusers' ``HunyuanVideoTransformer3DModel``
computes (tested to 1e-4 relative at tiny size) and has exactly its parameter names, so
diffusers-format checkpoints load 1:1. The double- and single-stream blocks are Flux's
(models/flux.py: same parameter names and arithmetic) with the token order [video, text]; what
is HunyuanVideo's own is here: the token refiner over the LLM text, the 1x2x2 patch embedding,
3-D RoPE over (t, h, w) with theta 256 (text tokens get no rotation: cos 1, sin 0), and
padded text masked through ``valid_text`` (the kernels drop padding keys; no boolean mask).

Forward (scripted signature; the exporter and C++ engine call it positionally)::

    forward(hidden_states: Tensor[B, C, t, h, w],     latents (C = 16); the token grid is
                                                      (t, h/2, w/2) and comes from the shape
            encoder_hidden_states: Tensor[B, L, text_embed_dim],  LLM hidden states (cropped)
            pooled_projections: Tensor[B, pooled_projection_dim], CLIP pooled
            timestep: Tensor[B] (or one value),   sigma in [0, 1]; x1000 inside, as diffusers
            guidance: Optional[Tensor[B]],        embedded guidance scale (x1000 inside)
            pattern: str = "full",                "full", "B" or "X"
            group_t: int = 4, group_h: int = 8, group_w: int = 8,  GRAT group (clipped to grid)
            radius: int = 1,                      GRAT-B radius in groups
            valid_text: Optional[List[int]] = None)  None/[] all text valid, [v] or one per item
        -> Tensor[B, C, t, h, w], dtype of the weights

With a GRAT pattern the video tokens (and their RoPE angles) are regrouped into group-major
order once after the patch embedding, stay in it through every block, and the output is
ungrouped once before unpatchifying. Helpers: ``build_hunyuan``, ``build_hunyuan_random``,
``script_hunyuan``, ``load_hunyuan_checkpoint`` (strict, diffusers-format safetensors).
"""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import make_layout
from models.flux import (AdaLayerNormContinuous, FluxSingleTransformerBlock,
                         FluxTransformerBlock, TimeGuidanceTextEmbed, TimeTextEmbed,
                         checkpoint_files, is_bfl_layout, load_diffusers_weights, random_init_,
                         transformer_config_json)
from models.hunyuan_configs import HunyuanConfig, preset
from models.ops import load_grat_ops


def video_rope_cos_sin(t: int, h: int, w: int, axes_dim: List[int], theta: float,
                       device: torch.device) -> Tuple[Tensor, Tensor]:
    """cos, sin [t*h*w, sum(axes_dim)] float32 in raster (t, h, w) order, computed as diffusers'
    HunyuanVideoRotaryPosEmbed does (float32 frequencies, interleaved pairs)."""
    sizes = [t, h, w]
    grids = torch.meshgrid([torch.arange(0, s, dtype=torch.float32, device=device)
                            for s in sizes], indexing="ij")
    cos_out: List[Tensor] = []
    sin_out: List[Tensor] = []
    for i in range(3):
        d = axes_dim[i]
        exps = torch.arange(0, d, 2, dtype=torch.float32, device=device) / d
        freqs = 1.0 / torch.pow(torch.full_like(exps, theta), exps)
        angles = torch.outer(grids[i].reshape(-1), freqs)
        cos_out.append(angles.cos().repeat_interleave(2, dim=1))
        sin_out.append(angles.sin().repeat_interleave(2, dim=1))
    return torch.cat(cos_out, dim=1), torch.cat(sin_out, dim=1)


def valid_mask(valid_text: List[int], batch: int, length: int, device: torch.device) -> Tensor:
    """[B, L] bool: True for the first valid_text[b] text tokens (right padding)."""
    if len(valid_text) == 0:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    # Rows built by fills, not torch.tensor(list): a host-to-device copy blocks the launching
    # thread and cannot be captured in a CUDA graph (the engine's step graphs).
    pos = torch.arange(length, device=device)
    rows = [pos < v for v in valid_text]
    if len(rows) == 1:
        return rows[0].unsqueeze(0).expand(batch, length)
    return torch.stack(rows)


# ----------------------------------------------------------------------------- token refiner

class RefinerAttention(nn.Module):
    """diffusers' Attention(bias=True) with its default SDPA processor: to_q/k/v, to_out.0."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])

    def _heads(self, y: Tensor) -> Tensor:
        return y.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        out = F.scaled_dot_product_attention(self._heads(self.to_q(x)),
                                             self._heads(self.to_k(x)),
                                             self._heads(self.to_v(x)), attn_mask=mask)
        out = out.transpose(1, 2).flatten(2).to(x.dtype)
        for proj in self.to_out:
            out = proj(out)
        return out


class SiluProj(nn.Module):
    """diffusers' LinearActivation(activation="silu"): proj then SiLU."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(self.proj(x))


class RefinerFeedForward(nn.Module):
    """FeedForward(activation_fn="linear-silu"): net.0 (proj + SiLU), net.1 dropout, net.2."""

    def __init__(self, dim: int, mult: float = 4.0):
        super().__init__()
        inner = int(dim * mult)
        self.net = nn.ModuleList([SiluProj(dim, inner), nn.Identity(), nn.Linear(inner, dim)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class AdaGates(nn.Module):
    """HunyuanVideoAdaNorm: linear(silu(temb)) -> (gate_msa, gate_mlp)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)

    def forward(self, temb: Tensor) -> Tuple[Tensor, Tensor]:
        g = self.linear(F.silu(temb)).chunk(2, dim=1)
        return g[0].unsqueeze(1), g[1].unsqueeze(1)


class RefinerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefinerAttention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ff = RefinerFeedForward(dim, mlp_ratio)
        self.norm_out = AdaGates(dim)

    def forward(self, x: Tensor, temb: Tensor, mask: Optional[Tensor]) -> Tensor:
        attn = self.attn(self.norm1(x), mask)
        gate_msa, gate_mlp = self.norm_out(temb)
        x = x + attn * gate_msa
        return x + self.ff(self.norm2(x)) * gate_mlp


class IndividualTokenRefiner(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, layers: int):
        super().__init__()
        self.refiner_blocks = nn.ModuleList(
            [RefinerBlock(dim, heads, head_dim) for _ in range(layers)])

    def forward(self, x: Tensor, temb: Tensor, valid: Optional[Tensor]) -> Tensor:
        mask: Optional[Tensor] = None
        if valid is not None:
            # Query and key both valid; key 0 always, so padded query rows stay finite.
            m = valid.unsqueeze(1) & valid.unsqueeze(2)
            m[:, :, 0] = True
            mask = m.unsqueeze(1)
        for block in self.refiner_blocks:
            x = block(x, temb, mask)
        return x


class TokenRefiner(nn.Module):
    """HunyuanVideoTokenRefiner: LLM hidden states -> model width, refined with a
    timestep + mean-pooled-text conditioning."""

    def __init__(self, text_dim: int, heads: int, head_dim: int, layers: int):
        super().__init__()
        dim = heads * head_dim
        self.time_text_embed = TimeTextEmbed(dim, text_dim)
        self.proj_in = nn.Linear(text_dim, dim)
        self.token_refiner = IndividualTokenRefiner(dim, heads, head_dim, layers)

    def forward(self, ctx: Tensor, timestep: Tensor, valid: Optional[Tensor]) -> Tensor:
        if valid is None:
            pooled = ctx.mean(dim=1)
        else:
            m = valid.float().unsqueeze(-1)
            pooled = ((ctx * m).sum(dim=1) / m.sum(dim=1)).to(ctx.dtype)
        temb = self.time_text_embed(timestep, None, pooled)
        return self.token_refiner(self.proj_in(ctx), temb, valid)


class PatchEmbed(nn.Module):
    def __init__(self, patch: List[int], in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


# ----------------------------------------------------------------------------- model

class HunyuanVideoTransformer(nn.Module):
    """The HunyuanVideo transformer; see the module docstring for the forward contract."""

    def __init__(self, config: HunyuanConfig):
        super().__init__()
        load_grat_ops()
        config.validate()
        self.config = config
        dim = config.inner_dim
        heads, head_dim = config.num_attention_heads, config.attention_head_dim
        self.in_channels = config.in_channels
        self.out_channels = config.out_channels
        self.patch = config.patch_size
        self.axes_dims: List[int] = [int(d) for d in config.rope_axes_dim]
        self.rope_theta = float(config.rope_theta)
        self.x_embedder = PatchEmbed([config.patch_size_t, config.patch_size, config.patch_size],
                                     config.in_channels, dim)
        self.context_embedder = TokenRefiner(config.text_embed_dim, heads, head_dim,
                                             config.num_refiner_layers)
        embed_cls = TimeGuidanceTextEmbed if config.guidance_embeds else TimeTextEmbed
        self.time_text_embed = embed_cls(dim, config.pooled_projection_dim)
        self.transformer_blocks = nn.ModuleList(
            [FluxTransformerBlock(dim, heads, head_dim) for _ in range(config.num_layers)])
        self.single_transformer_blocks = nn.ModuleList(
            [FluxSingleTransformerBlock(dim, heads, head_dim, config.mlp_ratio)
             for _ in range(config.num_single_layers)])
        self.norm_out = AdaLayerNormContinuous(dim)
        self.proj_out = nn.Linear(dim, config.patch_size ** 2 * config.out_channels)

    def forward(self, hidden_states: Tensor, encoder_hidden_states: Tensor,
                pooled_projections: Tensor, timestep: Tensor, guidance: Optional[Tensor],
                pattern: str = "full", group_t: int = 4, group_h: int = 8, group_w: int = 8,
                radius: int = 1, valid_text: Optional[List[int]] = None) -> Tensor:
        dtype = self.proj_out.weight.dtype
        device = hidden_states.device
        if hidden_states.dim() != 5 or hidden_states.shape[1] != self.in_channels:
            raise ValueError("hunyuan: hidden_states must be [batch, channels, t, h, w]")
        batch, t, h, w = (hidden_states.shape[0], hidden_states.shape[2],
                          hidden_states.shape[3], hidden_states.shape[4])
        p = self.patch
        if h % p != 0 or w % p != 0:
            raise ValueError("hunyuan: latent height and width must be multiples of the patch")
        if encoder_hidden_states.dim() != 3 or encoder_hidden_states.shape[0] != batch:
            raise ValueError("hunyuan: encoder_hidden_states must be [batch, text_tokens, dim]")
        gh, gw = h // p, w // p
        n = t * gh * gw
        text = encoder_hidden_states.shape[1]
        valid: List[int] = [] if valid_text is None else valid_text
        layout = make_layout([t, gh, gw], [group_t, group_h, group_w], pattern, radius, text,
                             False, valid)

        x = self.x_embedder(hidden_states.to(dtype))
        cos_v, sin_v = video_rope_cos_sin(t, gh, gw, self.axes_dims, self.rope_theta, device)
        if layout.grouped:  # group-major from here on, through every block
            x = torch.ops.grat.regroup(x, layout.grid, layout.group, 1, 0, False)
            cos_v = torch.ops.grat.regroup(cos_v, layout.grid, layout.group, 0, 0, False)
            sin_v = torch.ops.grat.regroup(sin_v, layout.grid, layout.group, 0, 0, False)
        # Text is not rotated: cos 1, sin 0 leave it bit-exact.
        cos = torch.cat([cos_v, torch.ones(text, cos_v.shape[1], device=device)])
        sin = torch.cat([sin_v, torch.zeros(text, sin_v.shape[1], device=device)])

        tsteps = timestep.reshape(-1).float()
        if tsteps.shape[0] == 1 and batch != 1:
            tsteps = tsteps.expand(batch)
        tsteps = tsteps * 1000
        g: Optional[Tensor] = None
        if guidance is not None:
            g = guidance.reshape(-1)
            if g.shape[0] == 1 and batch != 1:
                g = g.expand(batch)
            g = g.to(dtype) * 1000
        text_valid: Optional[Tensor] = None
        if len(valid) > 0:
            text_valid = valid_mask(valid, batch, text, device)
        ctx = self.context_embedder(encoder_hidden_states.to(dtype), tsteps, text_valid)
        temb = self.time_text_embed(tsteps, g, pooled_projections.to(dtype))

        for block in self.transformer_blocks:
            ctx, x = block(x, ctx, temb, cos, sin, layout)
        hs = torch.cat([x, ctx], dim=1)
        for block in self.single_transformer_blocks:
            hs = block(hs, temb, cos, sin, layout)
        out = self.proj_out(self.norm_out(hs[:, :n], temb))
        if layout.grouped:
            out = torch.ops.grat.ungroup(out, layout.grid, layout.group, 1, 0, False)
        out = out.reshape(batch, t, gh, gw, self.out_channels, p, p)
        return out.permute(0, 4, 1, 2, 5, 3, 6).reshape(batch, self.out_channels, t, h, w)


# ----------------------------------------------------------------------------- helpers

def build_hunyuan(config: Union[str, HunyuanConfig], dtype: torch.dtype = torch.float32,
                  device: Union[str, torch.device] = "cpu") -> HunyuanVideoTransformer:
    """A HunyuanVideoTransformer from a preset name or config, default initialisation;
    device="meta" builds it without memory."""
    cfg = preset(config) if isinstance(config, str) else config
    with torch.device(device):
        model = HunyuanVideoTransformer(cfg)
    return model.to(dtype).eval()


def build_hunyuan_random(config: Union[str, HunyuanConfig], dtype: torch.dtype = torch.bfloat16,
                         device: Union[str, torch.device] = "cpu",
                         seed: int = 0) -> HunyuanVideoTransformer:
    """random_init_ weights allocated once, directly in `dtype` on `device` (the full-size
    preset is 25.6 GB in bf16)."""
    model = build_hunyuan(config, dtype=dtype, device="meta").to_empty(device=device)
    return random_init_(model, seed=seed).eval()


def script_hunyuan(model: HunyuanVideoTransformer) -> torch.jit.ScriptModule:
    load_grat_ops()
    return torch.jit.script(model.eval())


def load_hunyuan_checkpoint(path: str, config: Optional[HunyuanConfig] = None,
                            dtype: torch.dtype = torch.bfloat16,
                            device: Union[str, torch.device] = "cpu") -> HunyuanVideoTransformer:
    """Builds the model from a diffusers-format transformer folder (config.json + safetensors,
    sharded or not) on the meta device, then loads it strictly (errors name the keys)."""
    if config is None:
        config = HunyuanConfig.from_diffusers(transformer_config_json(path, "hunyuan"))
    from safetensors import safe_open
    for file in checkpoint_files(path):
        with safe_open(file, framework="pt") as f:
            if is_bfl_layout(f.keys()):
                raise KeyError(f"hunyuan checkpoint {file} is in the original Tencent layout "
                               "(double_blocks.*); convert it to diffusers format first")
    model = build_hunyuan(config, dtype=dtype, device="meta")
    return load_diffusers_weights(model, path, dtype=dtype, device=device).eval()
