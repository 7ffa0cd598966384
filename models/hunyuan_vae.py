"""HunyuanVideo causal 3-D VAE decoder (diffusers AutoencoderKLHunyuanVideo's decoder half), for torch.jit.script.

Same computation and parameter names (`post_quant_conv.*`, `decoder.*`) as diffusers' AutoencoderKLHunyuanVideo:
causal Conv3d (replicate padding, 2 frames in front), GroupNorm 32, block_out_channels 128/256/512/512, 3 resnets
per up block, a mid-block attention that is causal over frames (a token sees its own and earlier frames),
x8 spatial / x4 temporal upsampling (frame 0 is upsampled spatially only, so t latent frames give 4(t-1)+1 frames).
One scripted file serves any batch size, frame count and size.

    vae = HunyuanVAEDecoder(preset("hunyuan-vae"))
    video = vae.decode(latents)          # [B, 16, t, h, w] scaled latents -> [B, 3, 4(t-1)+1, 8h, 8w], ~[-1, 1]
    video = vae.decode_tiled(latents)    # diffusers' decode after enable_tiling(): chunks/tiles above thresholds
    rgb = vae.decode_video(latents)      # uint8 [B, F, H, W, 3], tiled above the thresholds (the engine's call)

`latents` are what the transformer produces: like HunyuanVideoPipeline, they are cast to the weights' dtype and
divided by scaling_factor first. Tiling follows diffusers exactly (same results as `enable_tiling(...)` with the
same settings, given in video pixels / frames as there): latents longer than tile_sample_min_num_frames / 4 are
decoded in chunks of that many + 1 latent frames every tile_sample_stride_num_frames / 4, the overlap blended
linearly over (min - stride) frames; in each chunk, latents wider or taller than tile_sample_min / 8 are decoded
in tiles of that size every stride / 8, blended over (min - stride) pixels. GroupNorm statistics and attention
are per tile / chunk, so tiled output differs from untiled output (as in diffusers): the blend hides the seams.
Unlike diffusers, tiles are streamed into one preallocated output (only blend margins are kept), the batch is
decoded one video at a time, and decode_video converts to uint8 chunk by chunk.

Defaults are installed diffusers' (0.42): tiles 256 px with stride 192, chunks 16 frames with stride 12. The
original Tencent code used 64-frame chunks (tile_sample_min_num_frames=64, stride 48): set_tiling() takes them.

Memory (full size, 720x1280x129 = latents 16x33x90x160, default tiles, bf16, B=1). One tile x chunk is 32x32
latents x 5 frames; activations grow to 17 x 256 x 256 pixels in up_blocks.2's upsampler. The largest tensors:
  up_blocks.3.resnets.0 input x: 256 ch x 17 x 256 x 256          = 285.2 M elements (kept for the shortcut)
  silu(norm1(x)) (silu in place)                                    = 285.2 M
  its causal replicate padding: 256 x 19 x 258 x 258                = 323.8 M  (largest single activation)
  conv1 output: 128 x 17 x 256 x 256                                = 142.6 M
  peak while padding: 285.2 + 285.2 + 323.8 = 894.2 M elements = 1.79 GB (3.58 GB fp32);
  up_blocks.2 upsampler: 37.7 (input) + 285.2 (upsampled) + 323.8 (padded) = 646.7 M.
Attention (mid block, 5 x 32 x 32 = 5120 tokens x 512) runs one query frame at a time, no N^2 mask: < 30 MB.
Beside the tile: output 3 x 129 x 720 x 1280 = 356.6 M (0.71 GB bf16; decode_video: 0.36 GB uint8), one chunk
3 x 17 x 720 x 1280 = 47 M (94 MB; + 188 MB fp32 in decode_video), decoder weights 146.1 M (0.29 GB). Total about
3.2 GB + cuDNN workspace, well under the 20 GB budget. 64-frame chunks (17 latent frames, 65 frames) scale the
tile terms by 67/19 for the padding and 65/17 otherwise: about 6.6 GB + output.
Measured (H200, bf16, random weights, scripted, optimized execution off): one tile x chunk peaks 2.27 GiB above
the weights (eager: 3.01); decode_video of 720x1280x129 takes 55 s and peaks 2.75 GiB above the 0.33 GiB of
weights + latents (4.9 GiB reserved); with 64-frame chunks 49 s, 9.2 GiB (17.7 GiB reserved).
"""
import dataclasses
import math
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from models.encoder_configs import load_checkpoint_strict

UP_BLOCK = "HunyuanVideoUpBlock3D"


@dataclasses.dataclass(frozen=True)
class HunyuanVAEConfig:
    """The decoder-relevant keys of diffusers' AutoencoderKLHunyuanVideo config (vae/config.json), plus its
    tiling attributes (not config keys in diffusers; given in video pixels / frames)."""
    latent_channels: int = 16
    out_channels: int = 3
    up_block_types: Tuple[str, ...] = (UP_BLOCK,) * 4
    block_out_channels: Tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    act_fn: str = "silu"
    norm_num_groups: int = 32
    scaling_factor: float = 0.476986
    spatial_compression_ratio: int = 8
    temporal_compression_ratio: int = 4
    mid_block_add_attention: bool = True
    tile_sample_min_height: int = 256
    tile_sample_min_width: int = 256
    tile_sample_min_num_frames: int = 16
    tile_sample_stride_height: int = 192
    tile_sample_stride_width: int = 192
    tile_sample_stride_num_frames: int = 12

    _ENCODER_KEYS = ("in_channels", "down_block_types")  # encoder half only: accepted and ignored

    @classmethod
    def from_diffusers(cls, cfg: Dict[str, Any]) -> "HunyuanVAEConfig":
        """From diffusers' config dict (vae/config.json); '_'-keys and encoder-only keys are ignored, any other
        unknown key is an error naming it."""
        name = cfg.get("_class_name", "AutoencoderKLHunyuanVideo")
        if name != "AutoencoderKLHunyuanVideo":
            raise ValueError(f"HunyuanVAEConfig: config is for {name!r}, not AutoencoderKLHunyuanVideo")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: Dict[str, Any] = {}
        for key, value in cfg.items():
            if key.startswith("_") or key in cls._ENCODER_KEYS:
                continue
            if key not in known:
                raise ValueError(f"HunyuanVAEConfig: unknown diffusers config key {key!r}")
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs).validate()

    def up_factors(self) -> List[Tuple[int, int]]:
        """(temporal, spatial) upsampling factor of each up block, by diffusers' HunyuanVideoDecoder3D rule."""
        n = len(self.block_out_channels)
        n_s = int(math.log2(self.spatial_compression_ratio))
        n_t = int(math.log2(self.temporal_compression_ratio))
        return [(2 if (i >= n - 1 - n_t and i != n - 1) else 1, 2 if i < n_s else 1) for i in range(n)]

    def validate(self) -> "HunyuanVAEConfig":
        n = len(self.block_out_channels)
        if tuple(self.up_block_types) != (UP_BLOCK,) * n:
            raise ValueError(f"HunyuanVAEConfig: up_block_types must be {n} x {UP_BLOCK!r}, "
                             f"got {self.up_block_types}")
        if self.act_fn not in ("silu", "swish"):
            raise ValueError(f"HunyuanVAEConfig: act_fn {self.act_fn!r} unsupported (silu only)")
        if self.temporal_compression_ratio != 4:  # diffusers' decoder raises for anything else too
            raise ValueError("HunyuanVAEConfig: temporal_compression_ratio must be 4")
        f = self.up_factors()
        if math.prod(s for _, s in f) != self.spatial_compression_ratio or \
                math.prod(t for t, _ in f) != self.temporal_compression_ratio:
            raise ValueError(f"HunyuanVAEConfig: {n} blocks cannot give spatial_compression_ratio "
                             f"{self.spatial_compression_ratio} / temporal {self.temporal_compression_ratio}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError("HunyuanVAEConfig: norm_num_groups must divide every block_out_channels entry")
        return self

    def reference_kwargs(self) -> dict:
        """kwargs of diffusers.AutoencoderKLHunyuanVideo (tiling attributes are set by enable_tiling)."""
        n = len(self.block_out_channels)
        return dict(in_channels=3, out_channels=self.out_channels, latent_channels=self.latent_channels,
                    down_block_types=("HunyuanVideoDownBlock3D",) * n, up_block_types=tuple(self.up_block_types),
                    block_out_channels=tuple(self.block_out_channels), layers_per_block=self.layers_per_block,
                    act_fn=self.act_fn, norm_num_groups=self.norm_num_groups, scaling_factor=self.scaling_factor,
                    spatial_compression_ratio=self.spatial_compression_ratio,
                    temporal_compression_ratio=self.temporal_compression_ratio,
                    mid_block_add_attention=self.mid_block_add_attention)

    def tiling_kwargs(self) -> dict:
        """kwargs of diffusers' AutoencoderKLHunyuanVideo.enable_tiling (and of HunyuanVAEDecoder.set_tiling)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name.startswith("tile_")}


HUNYUAN_VAE = HunyuanVAEConfig()
# CPU sized: same x8 / x4 compression and block layout; 16 -> 32 channels so conv_shortcut is exercised.
HUNYUAN_VAE_TINY = HunyuanVAEConfig(block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8)

PRESETS: Dict[str, HunyuanVAEConfig] = {"hunyuan-vae": HUNYUAN_VAE, "hunyuan-vae-tiny": HUNYUAN_VAE_TINY}


def preset(name: str) -> HunyuanVAEConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown HunyuanVideo VAE preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].validate()


class CausalConv3d(nn.Module):
    """diffusers HunyuanVideoCausalConv3d: replicate padding, k-1 frames in front (causal), k//2 on each side."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        k = kernel_size
        self.padding = [k // 2, k // 2, k // 2, k // 2, k - 1, 0]
        self.padded = k > 1
        self.conv = nn.Conv3d(in_channels, out_channels, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padded:  # 1x1x1: padding by 0 is a copy for nothing
            x = F.pad(x, self.padding, mode="replicate")
        return self.conv(x)


class ResnetBlockCausal3D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.conv_shortcut: Optional[CausalConv3d] = (
            CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # silu in place on the fresh norm output and add_ into h: two full-size buffers fewer
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        shortcut = self.conv_shortcut
        if shortcut is not None:
            x = shortcut(x)
        return h.add_(x)


class CausalFrameAttention(nn.Module):
    """diffusers Attention as HunyuanVideo's mid block builds it (GroupNorm, one head over all channels, residual)
    with its frame-causal mask. Run one query frame at a time against frames 0..f: the same result without the
    [N, N] mask, half the work, and fused SDPA kernels stay usable."""

    def __init__(self, channels: int, groups: int, eps: float = 1e-6):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps, affine=True)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        hw = h * w
        tokens = x.permute(0, 2, 3, 4, 1).reshape(b, t * hw, c)  # (t, h, w) token order, as diffusers
        n = self.group_norm(x).permute(0, 2, 3, 4, 1).reshape(b, t * hw, c)
        q = self.to_q(n).unsqueeze(1)
        k = self.to_k(n).unsqueeze(1)
        v = self.to_v(n).unsqueeze(1)
        o = torch.empty_like(q)
        for f in range(t):
            o[:, :, f * hw:(f + 1) * hw] = F.scaled_dot_product_attention(
                q[:, :, f * hw:(f + 1) * hw], k[:, :, :(f + 1) * hw], v[:, :, :(f + 1) * hw])
        o = self.to_out[0](o.squeeze(1)).add_(tokens)
        return o.view(b, t, h, w, c).permute(0, 4, 1, 2, 3).contiguous()


class MidBlock3D(nn.Module):
    def __init__(self, channels: int, groups: int, add_attention: bool):
        super().__init__()
        self.attentions = nn.ModuleList([CausalFrameAttention(channels, groups)] if add_attention else [])
        self.resnets = nn.ModuleList([ResnetBlockCausal3D(channels, channels, groups),
                                      ResnetBlockCausal3D(channels, channels, groups)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class UpsampleCausal3D(nn.Module):
    """Nearest upsampling by (ft, fs, fs), frame 0 spatially only, then a causal conv. Written straight into
    one buffer (no interpolate + cat copies); nearest x2 is index // 2, so it equals F.interpolate exactly."""

    def __init__(self, channels: int, time_factor: int, space_factor: int):
        super().__init__()
        self.ft = time_factor
        self.fs = space_factor
        self.conv = CausalConv3d(channels, channels, 3)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        ft, fs = self.ft, self.fs
        out = torch.empty([b, c, 1 + (t - 1) * ft, h * fs, w * fs], dtype=x.dtype, device=x.device)
        out[:, :, :1].view(b, c, 1, h, fs, w, fs).copy_(
            x[:, :, :1].unsqueeze(4).unsqueeze(6).expand(b, c, 1, h, fs, w, fs))
        if t > 1:
            out.narrow(2, 1, (t - 1) * ft).view(b, c, t - 1, ft, h, fs, w, fs).copy_(
                x[:, :, 1:].unsqueeze(3).unsqueeze(5).unsqueeze(7).expand(b, c, t - 1, ft, h, fs, w, fs))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self._upsample(x))


class UpBlock3D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int,
                 time_factor: int, space_factor: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlockCausal3D(in_channels if i == 0 else out_channels, out_channels,
                                                          groups) for i in range(num_layers)])
        self.upsamplers: Optional[nn.ModuleList] = (
            nn.ModuleList([UpsampleCausal3D(out_channels, time_factor, space_factor)])
            if time_factor > 1 or space_factor > 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        upsamplers = self.upsamplers
        if upsamplers is not None:
            for up in upsamplers:
                x = up(x)
        return x


class Decoder3D(nn.Module):
    """diffusers HunyuanVideoDecoder3D."""

    def __init__(self, cfg: HunyuanVAEConfig):
        super().__init__()
        ch = list(cfg.block_out_channels)
        g = cfg.norm_num_groups
        self.conv_in = CausalConv3d(cfg.latent_channels, ch[-1], 3)
        self.mid_block = MidBlock3D(ch[-1], g, cfg.mid_block_add_attention)
        rev = list(reversed(ch))
        blocks = []
        prev = rev[0]
        for i, (ft, fs) in enumerate(cfg.up_factors()):
            blocks.append(UpBlock3D(prev, rev[i], cfg.layers_per_block + 1, g, ft, fs))
            prev = rev[i]
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=1e-6)
        self.conv_out = CausalConv3d(ch[0], cfg.out_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))


def _blend(a: torch.Tensor, b: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """diffusers' blend_t / blend_v / blend_h along `dim`: b's first e slices fade in from a's last e, in place on
    b (a may be just a's last margin). Weights in fp32."""
    e = min(a.size(dim), b.size(dim), extent)
    if e > 0:
        shape = [1] * b.dim()
        shape[dim] = e
        wt = (torch.arange(e, device=b.device, dtype=torch.float32) / e).view(shape)
        head = b.narrow(dim, 0, e)
        mixed = a.narrow(dim, a.size(dim) - e, e).float() * (1.0 - wt) + head.float() * wt
        head.copy_(mixed)
    return b


def _tail(x: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """The last min(extent, size) slices along dim, as a copy (does not keep x alive)."""
    e = min(extent, x.size(dim))
    return x.narrow(dim, x.size(dim) - e, e).clone()


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, F, H, W] in ~[-1, 1] -> uint8 [B, F, H, W, 3], as diffusers' video processor (x/2+0.5, clamp,
    *255, round), in fp32."""
    x = (x.float() / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0
    return x.round().to(torch.uint8).permute(0, 2, 3, 4, 1)


class HunyuanVAEDecoder(nn.Module):
    """diffusers AutoencoderKLHunyuanVideo's decoder half (names `post_quant_conv.*`, `decoder.*`), with
    HunyuanVideoPipeline's latent scaling and diffusers' tiling. See the module docstring."""

    def __init__(self, cfg: HunyuanVAEConfig):
        super().__init__()
        cfg = cfg.validate()
        self.scaling_factor = float(cfg.scaling_factor)
        self.latent_channels = cfg.latent_channels
        self.out_channels = cfg.out_channels
        self.spatial_ratio = cfg.spatial_compression_ratio
        self.temporal_ratio = cfg.temporal_compression_ratio
        self.tile_sample_min_height = 0
        self.tile_sample_min_width = 0
        self.tile_sample_min_num_frames = 0
        self.tile_sample_stride_height = 0
        self.tile_sample_stride_width = 0
        self.tile_sample_stride_num_frames = 0
        self.set_tiling(cfg.tile_sample_min_height, cfg.tile_sample_min_width, cfg.tile_sample_min_num_frames,
                        cfg.tile_sample_stride_height, cfg.tile_sample_stride_width,
                        cfg.tile_sample_stride_num_frames)
        self.post_quant_conv = nn.Conv3d(cfg.latent_channels, cfg.latent_channels, kernel_size=1)
        self.decoder = Decoder3D(cfg)

    @torch.jit.export
    def set_tiling(self, tile_sample_min_height: int, tile_sample_min_width: int, tile_sample_min_num_frames: int,
                   tile_sample_stride_height: int, tile_sample_stride_width: int,
                   tile_sample_stride_num_frames: int) -> None:
        """The default tile settings (diffusers' enable_tiling arguments, video pixels / frames)."""
        self._check_tiling(tile_sample_min_height, tile_sample_stride_height, self.spatial_ratio, "height")
        self._check_tiling(tile_sample_min_width, tile_sample_stride_width, self.spatial_ratio, "width")
        self._check_tiling(tile_sample_min_num_frames, tile_sample_stride_num_frames, self.temporal_ratio,
                           "num_frames")
        self.tile_sample_min_height = tile_sample_min_height
        self.tile_sample_min_width = tile_sample_min_width
        self.tile_sample_min_num_frames = tile_sample_min_num_frames
        self.tile_sample_stride_height = tile_sample_stride_height
        self.tile_sample_stride_width = tile_sample_stride_width
        self.tile_sample_stride_num_frames = tile_sample_stride_num_frames

    def _check_tiling(self, size: int, stride: int, ratio: int, axis: str) -> None:
        # multiples of the compression so latent and sample grids line up (diffusers assumes it silently)
        if stride < ratio or size < stride or size % ratio != 0 or stride % ratio != 0:
            raise ValueError("HunyuanVAEDecoder: tile_sample_min_" + axis + " / tile_sample_stride_" + axis +
                             " must be multiples of " + str(ratio) + " with 0 < stride <= min, got " +
                             str(size) + " / " + str(stride))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """decode_tiled with the module's settings."""
        return self._decode_tiled_into(latents, False, None, None, None, None, None, None, True, True)

    def _prepare(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.dim() != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError("HunyuanVAEDecoder: latents must be [batch, latent_channels, frames, height, width]")
        return latents.to(self.post_quant_conv.weight.dtype) / self.scaling_factor

    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    def _num_frames(self, t: int) -> int:
        return (t - 1) * self.temporal_ratio + 1

    @torch.jit.export
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Untiled, the whole clip at once: [B, 16, t, h, w] -> [B, 3, 4(t-1)+1, 8h, 8w]."""
        return self._decode_raw(self._prepare(latents))

    @torch.jit.export
    def decode_tiled(self, latents: torch.Tensor, tile_sample_min_height: Optional[int] = None,
                     tile_sample_min_width: Optional[int] = None, tile_sample_min_num_frames: Optional[int] = None,
                     tile_sample_stride_height: Optional[int] = None, tile_sample_stride_width: Optional[int] = None,
                     tile_sample_stride_num_frames: Optional[int] = None, spatial: bool = True,
                     temporal: bool = True) -> torch.Tensor:
        """diffusers' decode: temporal chunks above tile_sample_min_num_frames / 4 latent frames (`temporal`,
        diffusers' use_framewise_decoding, on there by default), spatial tiles above tile_sample_min / 8 latents
        (`spatial`, diffusers' enable_tiling). None = the module's setting."""
        return self._decode_tiled_into(latents, False, tile_sample_min_height, tile_sample_min_width,
                                       tile_sample_min_num_frames, tile_sample_stride_height,
                                       tile_sample_stride_width, tile_sample_stride_num_frames, spatial, temporal)

    @torch.jit.export
    def decode_video(self, latents: torch.Tensor, tiled: bool = True) -> torch.Tensor:
        """uint8 [B, 4(t-1)+1, 8h, 8w, 3]; tiled = decode_tiled with the module's settings."""
        if not tiled:
            return _to_uint8(self.decode(latents)).contiguous()
        return self._decode_tiled_into(latents, True, None, None, None, None, None, None, True, True)

    def _decode_tiled_into(self, latents: torch.Tensor, uint8: bool, min_h: Optional[int], min_w: Optional[int],
                           min_f: Optional[int], stride_h: Optional[int], stride_w: Optional[int],
                           stride_f: Optional[int], spatial: bool, temporal: bool) -> torch.Tensor:
        mh = self.tile_sample_min_height if min_h is None else min_h
        mw = self.tile_sample_min_width if min_w is None else min_w
        mf = self.tile_sample_min_num_frames if min_f is None else min_f
        sh = self.tile_sample_stride_height if stride_h is None else stride_h
        sw = self.tile_sample_stride_width if stride_w is None else stride_w
        sf = self.tile_sample_stride_num_frames if stride_f is None else stride_f
        self._check_tiling(mh, sh, self.spatial_ratio, "height")
        self._check_tiling(mw, sw, self.spatial_ratio, "width")
        self._check_tiling(mf, sf, self.temporal_ratio, "num_frames")
        z = self._prepare(latents)
        b, _, t, h, w = z.shape
        r = self.spatial_ratio
        frames = self._num_frames(t)
        if uint8:
            out = torch.empty([b, frames, h * r, w * r, self.out_channels], dtype=torch.uint8, device=z.device)
        else:
            out = torch.empty([b, self.out_channels, frames, h * r, w * r], dtype=z.dtype, device=z.device)
        tile_spatial = spatial and (h > mh // r or w > mw // r)
        for i in range(b):  # one video at a time: the footprint does not grow with the batch
            zi = z[i:i + 1]
            oi = out[i:i + 1]
            if temporal and t > mf // self.temporal_ratio:
                self._temporal_tiled(zi, oi, uint8, tile_spatial, mh, mw, mf, sh, sw, sf)
            elif tile_spatial:
                self._write(oi, self._spatial_tiled(zi, mh, mw, sh, sw), 0, uint8)
            else:
                self._write(oi, self._decode_raw(zi), 0, uint8)
        return out

    def _write(self, out: torch.Tensor, x: torch.Tensor, f0: int, uint8: bool) -> None:
        n = x.size(2)
        if uint8:
            out[:, f0:f0 + n] = _to_uint8(x)
        else:
            out[:, :, f0:f0 + n] = x

    def _temporal_tiled(self, z: torch.Tensor, out: torch.Tensor, uint8: bool, tile_spatial: bool, mh: int,
                        mw: int, mf: int, sh: int, sw: int, sf: int) -> None:
        """diffusers' _temporal_tiled_decode, streamed: chunks of mf/4 + 1 latent frames every sf/4; each drops
        its first frame (after the first chunk), is blended with the previous chunk's last (mf - sf) frames
        (after that chunk's own blend, as diffusers' in-place blend leaves it) and its first sf (+1 for chunk 0)
        frames are written."""
        t = z.size(2)
        tl = mf // self.temporal_ratio
        stride = sf // self.temporal_ratio
        blend = mf - sf
        frames = self._num_frames(t)
        prev = torch.empty([0])
        f0 = 0
        for i in range(0, t, stride):
            if i > 0 and t - i == 1:
                continue  # one latent frame decodes to the frame diffusers drops: nothing to add
            chunk = z[:, :, i:i + tl + 1]
            if tile_spatial:
                dec = self._spatial_tiled(chunk, mh, mw, sh, sw)
            else:
                dec = self._decode_raw(chunk)
            keep = sf + 1
            if i > 0:
                dec = _blend(prev, dec[:, :, 1:], blend, 2)
                keep = sf
            prev = _tail(dec, blend, 2)
            keep = min(keep, dec.size(2), frames - f0)
            self._write(out, dec[:, :, :keep], f0, uint8)
            f0 += keep

    def _spatial_tiled(self, z: torch.Tensor, mh: int, mw: int, sh: int, sw: int) -> torch.Tensor:
        """diffusers' tiled_decode, streamed: tiles of mh/8 x mw/8 latents every sh/8, sw/8, in raster order,
        blended with the (already blended) tile above and to the left over mh - sh / mw - sw pixels, cropped to
        sh x sw and written; only the previous row's bottom margins and the left tile's right margin are kept."""
        r = self.spatial_ratio
        b, _, t, h, w = z.shape
        tlh, tlw = mh // r, mw // r
        slh, slw = sh // r, sw // r
        blend_h, blend_w = mh - sh, mw - sw
        out = torch.empty([b, self.out_channels, self._num_frames(t), h * r, w * r], dtype=z.dtype,
                          device=z.device)
        prev_row: List[torch.Tensor] = []
        y0 = 0
        for i in range(0, h, slh):
            row: List[torch.Tensor] = []
            left = torch.empty([0])
            x0 = 0
            crop_h = 0
            for jj, j in enumerate(range(0, w, slw)):
                tile = self._decode_raw(z[:, :, :, i:i + tlh, j:j + tlw])
                if i > 0:
                    tile = _blend(prev_row[jj], tile, blend_h, 3)
                if j > 0:
                    tile = _blend(left, tile, blend_w, 4)
                left = _tail(tile, blend_w, 4)
                row.append(_tail(tile, blend_h, 3))
                crop = tile[:, :, :, :sh, :sw]
                out[:, :, :, y0:y0 + crop.size(3), x0:x0 + crop.size(4)] = crop
                x0 += crop.size(4)
                crop_h = crop.size(3)
            y0 += crop_h
            prev_row = row
        return out


def hunyuan_vae_checkpoint_key(key: str) -> Optional[str]:
    """diffusers AutoencoderKLHunyuanVideo key -> HunyuanVAEDecoder name; None for the encoder half and
    quant_conv (known, unused by decoding)."""
    if key.startswith("encoder.") or key.startswith("quant_conv."):
        return None
    return key


def load_hunyuan_vae_checkpoint(module: HunyuanVAEDecoder, path: str, dtype: Optional[torch.dtype] = None) -> None:
    """Strictly loads the vae/ of a diffusers-format HunyuanVideo checkpoint (a .safetensors file, a folder with
    diffusion_pytorch_model.safetensors, or a sharded *.safetensors.index.json): missing, unknown and mis-shaped
    keys raise CheckpointError naming them. A module built on the meta device is filled by assignment."""
    load_checkpoint_strict(module, path, hunyuan_vae_checkpoint_key, dtype)
