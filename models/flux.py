"""Scriptable Flux transformer (FLUX.1-dev / schnell family) with GRAT attention.

``FluxTransformer`` computes what diffusers' ``FluxTransformer2DModel`` computes (tested to
1e-4 relative at tiny size) and has exactly its parameter names, so diffusers-format
checkpoints load 1:1. Differences are in the interface, made for a TorchScript service:

* token grid and attention layout are explicit forward arguments (one scripted file serves
  every resolution, batch size and attention mode);
* position ids are built inside from the grid ([text, image] order; text ids 0, image ids
  (0, row, col), as diffusers' FluxPipeline makes them);
* every attention call is ``torch.ops.grat.attention``. With a GRAT pattern (B/X) the image
  tokens (and their RoPE positions) are regrouped into group-major order once at the start of
  forward, stay in it through all blocks, and the output is ungrouped once at the end;
* the single-stream blocks run on one concatenated [text, image] sequence (diffusers
  concatenates and splits in every block; the result is the same);
* the elementwise work around the matrix products runs as fused grat:: ops (issue #18,
  models.attention): q/k RMSNorm + RoPE into the joint sequence, AdaLN, the gated residuals
  (the first one fused with the next AdaLN), GELU writing after the attention output in the
  single blocks. On float32 CPU inputs they compute exactly diffusers' formulas; in bf16 they
  round once instead of after every op.

Forward (scripted signature; the exporter and C++ engine call it positionally)::

    forward(hidden_states: Tensor[B, h*w, 64],   packed 2x2 latents, raster order
            encoder_hidden_states: Tensor[B, T, joint_attention_dim],   T5 sequence
            pooled_projections: Tensor[B, pooled_projection_dim],       CLIP pooled
            timestep: Tensor[B] (or one value),   sigma in [0, 1]; x1000 inside, as diffusers
            guidance: Optional[Tensor[B]],        guidance scale (x1000 inside); required by
                                                  guidance-distilled configs, ignored otherwise
            grid_h: int, grid_w: int,             image tokens per axis (latent size / 2)
            pattern: str = "full",                "full", "B" or "X"
            group_h: int = 16, group_w: int = 16, GRAT group shape (clipped to the grid)
            radius: int = 1,                      GRAT-B radius in groups
            valid_text: Optional[List[int]] = None)  None/[] all text valid, [v] or one per item
        -> Tensor[B, h*w, out_channels] in raster order, dtype of the weights

On CUDA the grat kernels take bf16/fp16 and head dims 64/128 (every preset qualifies); fp32
runs on the CPU reference. Measured on one H100 (FLUX.1-dev size, bf16, random weights,
512 text tokens, 1024^2): scripted under torch.jit.optimized_execution(False) equals eager
bitwise, 0.18 s per forward (GRAT-B), no warm-up; under the default profiling executor
0.16 s once warm, but the first two calls at each new token grid cost about 1 s + 3-5 s
(re-specialisation and fusion), and fusion changes bf16 rounding (about 2% max-abs relative
vs eager at random weights).

Inputs are cast to the weights' dtype. Helpers: ``build_flux``, ``build_flux_random``
(``random_init_``), ``script_flux``, ``load_flux_checkpoint`` / ``load_diffusers_weights``
(strict, diffusers-format safetensors, sharded or not).
"""
import json
import math
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from models import attention as fused
from models.attention import (GratLayout, JointAttention, SingleAttention, image_position_ids,
                              make_layout, rope_cos_sin)
from models.flux_configs import FluxConfig, preset
from models.ops import load_grat_ops


# ----------------------------------------------------------------------------- embeddings

def timestep_sinusoid(t: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    """diffusers' Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0): float32 [B, dim]
    as [cos, sin] of t * exp(-ln(max_period) * i / (dim/2))."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32,
                                                    device=t.device)
    exponent = exponent / half
    emb = t.unsqueeze(1).float() * torch.exp(exponent).unsqueeze(0)
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    return torch.cat([emb[:, half:], emb[:, :half]], dim=-1)


class MLPEmbedder(nn.Module):
    """linear_1 -> SiLU -> linear_2 (diffusers' TimestepEmbedding / PixArtAlphaTextProjection)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class TimeTextEmbed(nn.Module):
    """CombinedTimestepTextProjEmbeddings (schnell): timestep + pooled text."""

    def __init__(self, dim: int, pooled_dim: int):
        super().__init__()
        self.timestep_embedder = MLPEmbedder(256, dim)
        self.text_embedder = MLPEmbedder(pooled_dim, dim)

    def forward(self, timestep: Tensor, guidance: Optional[Tensor], pooled: Tensor) -> Tensor:
        t = self.timestep_embedder(timestep_sinusoid(timestep).to(pooled.dtype))
        return t + self.text_embedder(pooled)


class TimeGuidanceTextEmbed(nn.Module):
    """CombinedTimestepGuidanceTextProjEmbeddings (dev): timestep + guidance + pooled text."""

    def __init__(self, dim: int, pooled_dim: int):
        super().__init__()
        self.timestep_embedder = MLPEmbedder(256, dim)
        self.guidance_embedder = MLPEmbedder(256, dim)
        self.text_embedder = MLPEmbedder(pooled_dim, dim)

    def forward(self, timestep: Tensor, guidance: Optional[Tensor], pooled: Tensor) -> Tensor:
        if guidance is None:
            raise ValueError("flux: this model embeds guidance; pass a guidance tensor")
        t = self.timestep_embedder(timestep_sinusoid(timestep).to(pooled.dtype))
        g = self.guidance_embedder(timestep_sinusoid(guidance).to(pooled.dtype))
        return (t + g) + self.text_embedder(pooled)


# ----------------------------------------------------------------------------- norms, MLP

# Every LayerNorm of the blocks: no affine, eps 1e-6 (diffusers' Flux).
LN_EPS = 1e-6


class AdaLayerNormZero(nn.Module):
    """x -> LN(x) * (1 + scale_msa) + shift_msa; also returns gate_msa, shift/scale/gate_mlp."""

    def __init__(self, dim: int):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, 6 * dim)
        self.eps = LN_EPS

    def forward(self, x: Tensor, emb: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        m = self.linear(self.silu(emb)).chunk(6, dim=1)
        return fused.adaln(x, m[1], m[0], self.eps), m[2], m[3], m[4], m[5]


class AdaLayerNormZeroSingle(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, 3 * dim)
        self.eps = LN_EPS

    def forward(self, x: Tensor, emb: Tensor) -> Tuple[Tensor, Tensor]:
        m = self.linear(self.silu(emb)).chunk(3, dim=1)
        return fused.adaln(x, m[1], m[0], self.eps), m[2]


class AdaLayerNormContinuous(nn.Module):
    """Final norm: LN(x) * (1 + scale) + shift, with (scale, shift) in that order."""

    def __init__(self, dim: int):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, 2 * dim)
        self.eps = LN_EPS

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        m = self.linear(self.silu(emb).to(x.dtype)).chunk(2, dim=1)
        return fused.adaln(x, m[0], m[1], self.eps)


class GeluProj(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return fused.gelu_tanh(self.proj(x), None)


# Token rows per chunk of the MLPs: the 4x-wide hidden activations of a whole 8192^2 sequence
# would take ~13 GB per block; 16384-row GEMMs still run at full speed.
MLP_CHUNK_TOKENS = 16384


class FeedForward(nn.Module):
    """net.0.proj -> GELU(tanh) -> net.2 (net.1 is diffusers' dropout slot), chunk_tokens
    rows at a time."""

    def __init__(self, dim: int, mult: float = 4.0):
        super().__init__()
        inner = int(dim * mult)
        self.net = nn.ModuleList([GeluProj(dim, inner), nn.Identity(), nn.Linear(inner, dim)])
        self.chunk_tokens = MLP_CHUNK_TOKENS

    def _run(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[1]
        if n <= self.chunk_tokens:
            return self._run(x)
        out: List[Tensor] = []
        for s in range(0, n, self.chunk_tokens):
            out.append(self._run(x[:, s:min(n, s + self.chunk_tokens)]))
        return torch.cat(out, dim=1)


def _clip_fp16(x: Tensor) -> Tensor:
    if x.dtype == torch.float16:
        return x.clip(-65504, 65504)
    return x


# ----------------------------------------------------------------------------- blocks

class FluxTransformerBlock(nn.Module):
    """Double-stream block: separate weights for image and text, one joint attention."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim)
        self.norm1_context = AdaLayerNormZero(dim)
        self.attn = JointAttention(dim, heads, head_dim)
        self.ff = FeedForward(dim)
        self.ff_context = FeedForward(dim)
        self.eps = LN_EPS  # norm2 / norm2_context, fused into the first residual

    def forward(self, x: Tensor, ctx: Tensor, temb: Tensor, cos: Tensor, sin: Tensor,
                layout: GratLayout) -> Tuple[Tensor, Tensor]:
        nx, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(x, temb)
        nc, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(ctx, temb)
        attn_x, attn_c = self.attn(nx, nc, cos, sin, layout)

        x, nx = fused.gated_residual_adaln(x, attn_x, gate_msa, scale_mlp, shift_mlp, self.eps)
        x = fused.gated_residual(x, self.ff(nx), gate_mlp)

        ctx, nc = fused.gated_residual_adaln(ctx, attn_c, c_gate_msa, c_scale_mlp, c_shift_mlp,
                                             self.eps)
        ctx = fused.gated_residual(ctx, self.ff_context(nc), c_gate_mlp)
        return _clip_fp16(ctx), x


class FluxSingleTransformerBlock(nn.Module):
    """Single-stream block on the joint [text, image] sequence: attention and MLP in parallel;
    proj_out reads [attention, GELU(mlp)] written by one gelu_tanh (no torch.cat)."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        mlp = int(dim * mlp_ratio)
        self.norm = AdaLayerNormZeroSingle(dim)
        self.proj_mlp = nn.Linear(dim, mlp)
        self.proj_out = nn.Linear(dim + mlp, dim)
        self.attn = SingleAttention(dim, heads, head_dim)
        self.chunk_tokens = MLP_CHUNK_TOKENS

    def _mlp_out(self, nh: Tensor, attn: Tensor) -> Tensor:
        return self.proj_out(fused.gelu_tanh(self.proj_mlp(nh), attn))

    def forward(self, h: Tensor, temb: Tensor, cos: Tensor, sin: Tensor,
                layout: GratLayout) -> Tensor:
        nh, gate = self.norm(h, temb)
        attn = self.attn(nh, cos, sin, layout)
        n = h.shape[1]
        if n <= self.chunk_tokens:
            out = self._mlp_out(nh, attn)
        else:
            parts: List[Tensor] = []
            for s in range(0, n, self.chunk_tokens):
                e = min(n, s + self.chunk_tokens)
                parts.append(self._mlp_out(nh[:, s:e], attn[:, s:e]))
            out = torch.cat(parts, dim=1)
        return _clip_fp16(fused.gated_residual(h, out, gate))


# ----------------------------------------------------------------------------- model

class FluxTransformer(nn.Module):
    """The Flux transformer; see the module docstring for the forward contract."""

    def __init__(self, config: FluxConfig):
        super().__init__()
        load_grat_ops()
        config.validate()
        self.config = config
        dim = config.inner_dim
        heads, head_dim = config.num_attention_heads, config.attention_head_dim
        self.in_channels = config.in_channels
        self.axes_dims: List[int] = [int(d) for d in config.axes_dims_rope]
        self.rope_theta = float(config.rope_theta)
        embed_cls = TimeGuidanceTextEmbed if config.guidance_embeds else TimeTextEmbed
        self.time_text_embed = embed_cls(dim, config.pooled_projection_dim)
        self.context_embedder = nn.Linear(config.joint_attention_dim, dim)
        self.x_embedder = nn.Linear(config.in_channels, dim)
        self.transformer_blocks = nn.ModuleList(
            [FluxTransformerBlock(dim, heads, head_dim) for _ in range(config.num_layers)])
        self.single_transformer_blocks = nn.ModuleList(
            [FluxSingleTransformerBlock(dim, heads, head_dim, config.mlp_ratio)
             for _ in range(config.num_single_layers)])
        self.norm_out = AdaLayerNormContinuous(dim)
        self.proj_out = nn.Linear(dim, config.patch_size ** 2 * config.out_channels)

    def forward(self, hidden_states: Tensor, encoder_hidden_states: Tensor,
                pooled_projections: Tensor, timestep: Tensor, guidance: Optional[Tensor],
                grid_h: int, grid_w: int, pattern: str = "full", group_h: int = 16,
                group_w: int = 16, radius: int = 1,
                valid_text: Optional[List[int]] = None) -> Tensor:
        dtype = self.x_embedder.weight.dtype
        device = hidden_states.device
        batch = hidden_states.shape[0]
        if hidden_states.dim() != 3 or hidden_states.shape[1] != grid_h * grid_w:
            raise ValueError("flux: hidden_states must be [batch, grid_h * grid_w, channels]")
        if hidden_states.shape[2] != self.in_channels:
            raise ValueError("flux: hidden_states has the wrong channel count")
        if encoder_hidden_states.dim() != 3 or encoder_hidden_states.shape[0] != batch:
            raise ValueError("flux: encoder_hidden_states must be [batch, text_tokens, dim]")
        text = encoder_hidden_states.shape[1]
        layout = make_layout([grid_h, grid_w], [group_h, group_w], pattern, radius, text, True,
                             valid_text)

        x = hidden_states.to(dtype)
        img_ids = image_position_ids(grid_h, grid_w, device)
        if layout.grouped:  # group-major from here on, through every block
            x = torch.ops.grat.regroup(x, layout.grid, layout.group, 1, 0, True)
            img_ids = torch.ops.grat.regroup(img_ids, layout.grid, layout.group, 0, 0, True)
        ids = torch.cat([torch.zeros(text, 3, dtype=img_ids.dtype, device=device), img_ids])
        cos, sin = rope_cos_sin(ids, self.axes_dims, self.rope_theta)

        x = self.x_embedder(x)
        t = timestep.reshape(-1)
        if t.shape[0] == 1 and batch != 1:
            t = t.expand(batch)
        t = t.to(dtype) * 1000
        g: Optional[Tensor] = None
        if guidance is not None:
            g = guidance.reshape(-1)
            if g.shape[0] == 1 and batch != 1:
                g = g.expand(batch)
            g = g.to(dtype) * 1000
        temb = self.time_text_embed(t, g, pooled_projections.to(dtype))
        ctx = self.context_embedder(encoder_hidden_states.to(dtype))

        for block in self.transformer_blocks:
            ctx, x = block(x, ctx, temb, cos, sin, layout)
        h = torch.cat([ctx, x], dim=1)
        for block in self.single_transformer_blocks:
            h = block(h, temb, cos, sin, layout)
        out = self.proj_out(self.norm_out(h[:, text:], temb))
        if layout.grouped:
            out = torch.ops.grat.ungroup(out, layout.grid, layout.group, 1, 0, True)
        return out


# ----------------------------------------------------------------------------- helpers

def build_flux(config: Union[str, FluxConfig], dtype: torch.dtype = torch.float32,
               device: Union[str, torch.device] = "cpu") -> FluxTransformer:
    """A FluxTransformer from a preset name or config, default (PyTorch) initialisation.
    device="meta" builds it without memory (for shape checks or checkpoint loading)."""
    cfg = preset(config) if isinstance(config, str) else config
    with torch.device(device):
        model = FluxTransformer(cfg)
    return model.to(dtype).eval()


def random_init_(model: nn.Module, seed: int = 0, std: float = 0.02) -> nn.Module:
    """Deterministic random weights that keep activations tame at full size: weights
    N(0, std), biases 0, norm weights 1. Drawn on the parameters' device (fast on a GPU;
    values depend on the device type). For benchmarks and demos without a checkpoint."""
    gens: Dict[str, torch.Generator] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                key = str(p.device)
                if key not in gens:
                    gens[key] = torch.Generator(device=p.device).manual_seed(seed)
                p.normal_(0.0, std, generator=gens[key])
    return model


def build_flux_random(config: Union[str, FluxConfig], dtype: torch.dtype = torch.bfloat16,
                      device: Union[str, torch.device] = "cpu", seed: int = 0) -> FluxTransformer:
    """A FluxTransformer with random_init_ weights allocated once, directly in `dtype` on
    `device` (the full-size preset needs 24 GB in bf16 and never exists in fp32)."""
    model = build_flux(config, dtype=dtype, device="meta").to_empty(device=device)
    return random_init_(model, seed=seed).eval()


def script_flux(model: FluxTransformer) -> torch.jit.ScriptModule:
    """torch.jit.script the model (one scripted module for every resolution and batch)."""
    load_grat_ops()
    return torch.jit.script(model.eval())


_SINGLE = ("diffusion_pytorch_model.safetensors", "model.safetensors")
_INDEX = tuple(name + ".index.json" for name in _SINGLE)


def checkpoint_files(path: str) -> List[str]:
    """Safetensors files of a diffusers-format transformer: `path` may be a .safetensors
    file, a *.safetensors.index.json, a folder holding either, or a pipeline folder with a
    transformer/ subfolder."""
    if os.path.isdir(path):
        sub = os.path.join(path, "transformer")
        if not any(os.path.exists(os.path.join(path, n)) for n in _SINGLE + _INDEX) \
                and os.path.isdir(sub):
            path = sub
        for name in _INDEX + _SINGLE:
            candidate = os.path.join(path, name)
            if os.path.exists(candidate):
                return checkpoint_files(candidate)
        raise FileNotFoundError(f"flux checkpoint: no {' / '.join(_INDEX + _SINGLE)} in {path}")
    if path.endswith(".index.json"):
        with open(path) as f:
            weight_map: Dict[str, str] = json.load(f)["weight_map"]
        folder = os.path.dirname(path)
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not os.path.exists(os.path.join(folder, f))]
        if missing:
            raise FileNotFoundError(f"flux checkpoint: shards listed in {path} are missing: "
                                    f"{missing}")
        return [os.path.join(folder, f) for f in files]
    if path.endswith(".safetensors") and os.path.exists(path):
        return [path]
    raise FileNotFoundError(f"flux checkpoint: {path} is not a safetensors file, index or folder")


def _describe(names: Iterable[str], limit: int = 12) -> str:
    names = sorted(names)
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


_BFL_PREFIX = "model.diffusion_model."


def is_bfl_layout(keys: Iterable[str]) -> bool:
    """True for the original Black Forest Labs layout (flux1-dev.safetensors style names)."""
    return any(k.startswith(("double_blocks.", "single_blocks.", _BFL_PREFIX)) for k in keys)


def bfl_to_diffusers(state: Dict[str, Tensor], config: FluxConfig) -> Dict[str, Tensor]:
    """Renames/splits an original-layout (BFL) Flux state dict into diffusers names, as
    diffusers' convert_flux_transformer_checkpoint_to_diffusers does (any width): fused qkv
    and linear1 split into q/k/v(/mlp), final adaLN (shift, scale) swapped to (scale, shift).
    Missing source keys raise KeyError naming them; unused ones come back unchanged (they
    then fail the strict load as unexpected)."""
    src = {(k[len(_BFL_PREFIX):] if k.startswith(_BFL_PREFIX) else k): v
           for k, v in state.items()}
    out: Dict[str, Tensor] = {}
    missing: List[str] = []
    dim = config.inner_dim

    def take(name: str) -> Optional[Tensor]:
        if name not in src:
            missing.append(name)
            return None
        return src.pop(name)

    def put(dst: str, name: str, suffixes=(".weight", ".bias")) -> None:
        for suffix in suffixes:
            t = take(name + suffix)
            if t is not None:
                out[dst + suffix.replace(".scale", ".weight")] = t

    def split(dsts: List[str], name: str, sizes: List[int]) -> None:
        for suffix in (".weight", ".bias"):
            t = take(name + suffix)
            if t is not None:
                for dst, part in zip(dsts, torch.split(t, sizes, dim=0)):
                    out[dst + suffix] = part

    emb = "time_text_embed."
    for ours, theirs in (("timestep_embedder", "time_in"), ("text_embedder", "vector_in")) + (
            (("guidance_embedder", "guidance_in"),) if config.guidance_embeds else ()):
        put(emb + ours + ".linear_1", theirs + ".in_layer")
        put(emb + ours + ".linear_2", theirs + ".out_layer")
    put("context_embedder", "txt_in")
    put("x_embedder", "img_in")
    for i in range(config.num_layers):
        b, o = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        put(o + "norm1.linear", b + "img_mod.lin")
        put(o + "norm1_context.linear", b + "txt_mod.lin")
        split([o + "attn.to_q", o + "attn.to_k", o + "attn.to_v"], b + "img_attn.qkv", [dim] * 3)
        split([o + "attn.add_q_proj", o + "attn.add_k_proj", o + "attn.add_v_proj"],
              b + "txt_attn.qkv", [dim] * 3)
        for stream, q, k in (("img", "norm_q", "norm_k"), ("txt", "norm_added_q", "norm_added_k")):
            put(o + "attn." + q, b + stream + "_attn.norm.query_norm", (".scale",))
            put(o + "attn." + k, b + stream + "_attn.norm.key_norm", (".scale",))
        for stream, ff in (("img", "ff"), ("txt", "ff_context")):
            put(o + ff + ".net.0.proj", b + stream + "_mlp.0")
            put(o + ff + ".net.2", b + stream + "_mlp.2")
        put(o + "attn.to_out.0", b + "img_attn.proj")
        put(o + "attn.to_add_out", b + "txt_attn.proj")
    mlp = int(dim * config.mlp_ratio)
    for i in range(config.num_single_layers):
        b, o = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        put(o + "norm.linear", b + "modulation.lin")
        split([o + "attn.to_q", o + "attn.to_k", o + "attn.to_v", o + "proj_mlp"], b + "linear1",
              [dim, dim, dim, mlp])
        put(o + "attn.norm_q", b + "norm.query_norm", (".scale",))
        put(o + "attn.norm_k", b + "norm.key_norm", (".scale",))
        put(o + "proj_out", b + "linear2")
    put("proj_out", "final_layer.linear")
    for suffix in (".weight", ".bias"):
        t = take("final_layer.adaLN_modulation.1" + suffix)
        if t is not None:
            shift, scale = t.chunk(2, dim=0)
            out["norm_out.linear" + suffix] = torch.cat([scale, shift], dim=0)
    if missing:
        raise KeyError(f"flux checkpoint (original layout) lacks keys [{_describe(missing)}]")
    out.update(src)
    return out


def load_diffusers_weights(model: nn.Module, path: str, dtype: Optional[torch.dtype] = None,
                           device: Union[str, torch.device, None] = None) -> nn.Module:
    """Loads a checkpoint into `model` strictly: every parameter must be present with its
    shape, and no extra tensor may exist (error names the keys). Diffusers names load as they
    are; the original BFL layout (flux1-dev.safetensors) is converted first (needs `model` to
    be a FluxTransformer). Tensors are cast to `dtype` (default: the model's) and put on
    `device` (default: the model's, or CPU for a model on the meta device, whose parameters
    are then replaced, not copied)."""
    from safetensors import safe_open

    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    first = next(iter(params.values()))
    dtype = dtype or first.dtype
    if device is None:
        device = "cpu" if first.is_meta else first.device
    files = checkpoint_files(path)

    def read_all() -> Dict[str, Tensor]:
        state: Dict[str, Tensor] = {}
        for file in files:
            with safe_open(file, framework="pt", device="cpu") as f:
                for key in f.keys():
                    state[key] = f.get_tensor(key).to(device=device, dtype=dtype)
        return state

    shapes: Dict[str, List[int]] = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                shapes[key] = list(f.get_slice(key).get_shape())
    state: Optional[Dict[str, Tensor]] = None
    if is_bfl_layout(shapes):
        if not isinstance(model, FluxTransformer):
            raise TypeError("flux checkpoint: the original layout needs a FluxTransformer")
        state = bfl_to_diffusers(read_all(), model.config)
        shapes = {k: list(v.shape) for k, v in state.items()}
    missing = set(params) - set(shapes)
    unexpected = set(shapes) - set(params)
    if missing or unexpected:
        raise KeyError(f"flux checkpoint {path} does not match the model: missing keys "
                       f"[{_describe(missing)}]; unexpected keys [{_describe(unexpected)}]")
    bad = [f"{k}: checkpoint {shapes[k]} vs model {list(p.shape)}" for k, p in params.items()
           if shapes[k] != list(p.shape)]
    if bad:
        raise ValueError(f"flux checkpoint {path}: shape mismatch: {'; '.join(bad[:12])}")
    model.load_state_dict(read_all() if state is None else state, strict=True, assign=True)
    return model


def transformer_config_json(path: str, what: str) -> Dict[str, Any]:
    """The config.json of a diffusers-format transformer: beside `path` (a folder or a
    safetensors file) or in its transformer/ subfolder (a pipeline folder)."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.exists(cfg_path) and os.path.isdir(os.path.join(folder, "transformer")):
        cfg_path = os.path.join(folder, "transformer", "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(f"{what} checkpoint: no config.json beside {path}; pass config")
    with open(cfg_path) as f:
        return json.load(f)


def load_flux_checkpoint(path: str, config: Optional[FluxConfig] = None,
                         dtype: torch.dtype = torch.bfloat16,
                         device: Union[str, torch.device] = "cpu") -> FluxTransformer:
    """Builds a FluxTransformer from a diffusers-format transformer folder (config.json +
    safetensors) without allocating random weights first, then loads it strictly. For an
    original-layout file (flux1-dev.safetensors) pass `config` (e.g. preset("flux-dev"))."""
    if config is None:
        config = FluxConfig.from_diffusers(transformer_config_json(path, "flux"))
    model = build_flux(config, dtype=dtype, device="meta")
    return load_diffusers_weights(model, path, dtype=dtype, device=device).eval()
