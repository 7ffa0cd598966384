"""FLUX.1 VAE decoder (diffusers AutoencoderKL's decoder, 16 latent channels), written for torch.jit.script.

Same computation and parameter names (`decoder.*`) as diffusers' AutoencoderKL with FLUX.1's config
(block_out_channels 128/256/512/512, 2 resnets per block (+1 in the decoder), mid-block attention, GroupNorm 32,
no quant / post-quant conv). One scripted file serves any batch size and latent size.

    vae = VAEDecoder(flux_vae_config())
    image = vae(latents, tile_latent)         # [B, 16, h, w] diffusion-space latents -> [B, 3, 8h, 8w] in ~[-1, 1]
    rgb = vae.decode_image(latents, tile_latent)  # -> uint8 [B, 8h, 8w, 3]
    image = vae.decode(z, tile_latent)         # raw VAE latents (already z / scaling + shift)

`forward` undoes the pipeline's latent normalisation (z = latents / scaling_factor + shift_factor) exactly as
diffusers' FluxPipeline does before vae.decode. `tile_latent` = 0 decodes in one piece; > 0 decodes latents
larger than tile_latent on either axis in overlapping tiles of tile_latent^2 latents (overlap 1/4, linear
blend), exactly diffusers' AutoencoderKL.tiled_decode with tile_latent_min_size = tile_latent, so an 8192^2
image (1024^2 latents) decodes with memory bounded by one tile (FLUX's default tile: 128 latents = 1024 px)
plus one row of blend margins and the output. Tiles see only their own area (GroupNorm statistics and
mid-block attention are per tile), so tiled output differs from untiled output: the blend hides the seams.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.encoder_configs import VAEDecoderConfig, checkpoint_keys, load_checkpoint_strict


class ResnetBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.conv_shortcut: Optional[nn.Conv2d] = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)
            if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = self.conv_shortcut
        if shortcut is not None:
            x = shortcut(x)
        return x + h


class VAEAttention(nn.Module):
    """diffusers Attention as the VAE mid block builds it: GroupNorm, one head over all channels, residual."""

    def __init__(self, channels: int, groups: int, eps: float = 1e-6):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps, affine=True)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.group_norm(x.view(b, c, h * w)).transpose(1, 2)  # [B, HW, C]
        q = self.to_q(t).unsqueeze(1)
        k = self.to_k(t).unsqueeze(1)
        v = self.to_v(t).unsqueeze(1)
        o = F.scaled_dot_product_attention(q, k, v).squeeze(1)
        o = self.to_out[0](o)
        return o.transpose(1, 2).reshape(b, c, h, w) + x


class UNetMidBlock2D(nn.Module):
    def __init__(self, channels: int, groups: int, add_attention: bool):
        super().__init__()
        self.attentions = nn.ModuleList([VAEAttention(channels, groups)] if add_attention else [])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups),
                                      ResnetBlock2D(channels, channels, groups)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class Upsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UpDecoderBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int, add_upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups)
                                      for i in range(num_layers)])
        self.upsamplers: Optional[nn.ModuleList] = (
            nn.ModuleList([Upsample2D(out_channels)]) if add_upsample else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        upsamplers = self.upsamplers
        if upsamplers is not None:
            for up in upsamplers:
                x = up(x)
        return x


class Decoder(nn.Module):
    def __init__(self, cfg: VAEDecoderConfig):
        super().__init__()
        ch = list(cfg.block_out_channels)
        g = cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[-1], kernel_size=3, stride=1, padding=1)
        self.mid_block = UNetMidBlock2D(ch[-1], g, cfg.mid_block_add_attention)
        rev = list(reversed(ch))
        blocks = []
        prev = rev[0]
        for i, out in enumerate(rev):
            blocks.append(UpDecoderBlock2D(prev, out, cfg.layers_per_block + 1, g, i != len(ch) - 1))
            prev = out
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


def _blend_v(a: torch.Tensor, b: torch.Tensor, extent: int) -> torch.Tensor:
    """b's top rows fade in from a's bottom rows (diffusers AutoencoderKL.blend_v), in place on b."""
    e = min(a.shape[2], b.shape[2], extent)
    if e > 0:
        w = (torch.arange(e, device=b.device, dtype=torch.float32) / e).view(1, 1, e, 1)
        top = a[:, :, a.shape[2] - e:, :].float() * (1.0 - w) + b[:, :, :e, :].float() * w
        b[:, :, :e, :] = top.to(b.dtype)
    return b


def _blend_h(a: torch.Tensor, b: torch.Tensor, extent: int) -> torch.Tensor:
    """b's left columns fade in from a's right columns (diffusers AutoencoderKL.blend_h), in place on b."""
    e = min(a.shape[3], b.shape[3], extent)
    if e > 0:
        w = (torch.arange(e, device=b.device, dtype=torch.float32) / e).view(1, 1, 1, e)
        left = a[:, :, :, a.shape[3] - e:].float() * (1.0 - w) + b[:, :, :, :e].float() * w
        b[:, :, :, :e] = left.to(b.dtype)
    return b


class VAEDecoder(nn.Module):
    """diffusers AutoencoderKL's decoder half (names `decoder.*`), with FLUX's latent normalisation and tiling.

    forward(latents [B, C, h, w], tile_latent: int = 0) -> image [B, 3, h*8, w*8] (diffusers' decode output,
    not clamped; ~[-1, 1]). decode(z, tile_latent) takes raw VAE latents; decode_image(latents, tile_latent)
    gives uint8 [B, H, W, 3] as diffusers' image processor would (x/2+0.5, clamp, *255, round)."""

    def __init__(self, cfg: VAEDecoderConfig):
        super().__init__()
        self.scaling_factor = float(cfg.scaling_factor)
        self.shift_factor = float(cfg.shift_factor)
        self.latent_channels = cfg.latent_channels
        self.out_channels = cfg.out_channels
        self.upscale = cfg.upscale
        self.default_tile_latent = cfg.tile_latent_size
        self.decoder = Decoder(cfg)

    def forward(self, latents: torch.Tensor, tile_latent: int = 0) -> torch.Tensor:
        return self.decode(latents / self.scaling_factor + self.shift_factor, tile_latent)

    @torch.jit.export
    def decode(self, z: torch.Tensor, tile_latent: int = 0) -> torch.Tensor:
        if z.dim() != 4 or z.shape[1] != self.latent_channels:
            raise ValueError("VAEDecoder: latents must be [batch, latent_channels, height, width]")
        if tile_latent > 0 and (z.shape[2] > tile_latent or z.shape[3] > tile_latent):
            return self.tiled_decode(z, tile_latent)
        return self.decoder(z)

    @torch.jit.export
    def decode_image(self, latents: torch.Tensor, tile_latent: int = 0) -> torch.Tensor:
        x = self.forward(latents, tile_latent)
        x = (x / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0
        return x.round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    @torch.jit.export
    def tiled_decode(self, z: torch.Tensor, tile_latent: int) -> torch.Tensor:
        """diffusers' AutoencoderKL.tiled_decode (tile_latent_min_size = tile_latent, tile_sample_min_size =
        tile_latent * 8, overlap 1/4), streamed: tiles are decoded in raster order, blended with the finished
        tile above and to the left, cropped and written into the output; only the previous row's bottom
        margins are kept."""
        if tile_latent < 4 or tile_latent % 4 != 0:
            raise ValueError("VAEDecoder: tile_latent must be a positive multiple of 4")
        tile_sample = tile_latent * self.upscale
        stride = tile_latent * 3 // 4  # int(tile_latent * (1 - 1/4)): exact for multiples of 4
        blend = tile_sample // 4  # int(tile_sample * 1/4)
        row_limit = tile_sample - blend
        b, _, h, w = z.shape
        out = torch.empty([b, self.out_channels, h * self.upscale, w * self.upscale], dtype=z.dtype,
                          device=z.device)
        prev_row: List[torch.Tensor] = []
        y0 = 0
        for i in range(0, h, stride):
            row: List[torch.Tensor] = []
            x0 = 0
            crop_h = 0
            left = torch.empty([0])
            for jj, j in enumerate(range(0, w, stride)):
                tile = self.decoder(z[:, :, i:i + tile_latent, j:j + tile_latent])
                if i > 0:
                    tile = _blend_v(prev_row[jj], tile, blend)
                if j > 0:
                    tile = _blend_h(left, tile, blend)
                left = tile
                row.append(tile[:, :, tile.shape[2] - min(blend, tile.shape[2]):, :])
                crop = tile[:, :, :row_limit, :row_limit]
                out[:, :, y0:y0 + crop.shape[2], x0:x0 + crop.shape[3]] = crop.to(out.dtype)
                x0 += crop.shape[3]
                crop_h = crop.shape[2]
            y0 += crop_h
            prev_row = row
        return out


_LDM_PREFIXES = ("first_stage_model.", "vae.")
_LDM_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def vae_ldm_checkpoint_key(key: str, num_up_blocks: int) -> Optional[str]:
    """Original (Black Forest Labs `ae.safetensors` / LDM) VAE key -> VAEDecoder name, as diffusers'
    convert_ldm_vae_checkpoint maps it: mid.block_{1,2} -> mid_block.resnets.{0,1}, mid.attn_1 (1x1 convs)
    -> mid_block.attentions.0, up.{b} -> up_blocks.{n-1-b}, nin_shortcut -> conv_shortcut, norm_out ->
    conv_norm_out. None for the encoder half and quant_conv."""
    for prefix in _LDM_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    if key.startswith("encoder.") or key.startswith("quant_conv."):
        return None
    parts = key.split(".")
    if parts[0] != "decoder" or len(parts) < 3:
        return key
    if parts[1] == "norm_out":
        return "decoder.conv_norm_out." + ".".join(parts[2:])
    if parts[1] == "mid" and parts[2] in ("block_1", "block_2") and len(parts) >= 5:
        layer = parts[3].replace("nin_shortcut", "conv_shortcut")
        return f"decoder.mid_block.resnets.{int(parts[2][-1]) - 1}.{layer}." + ".".join(parts[4:])
    if parts[1] == "mid" and parts[2] == "attn_1" and len(parts) == 5 and parts[3] in _LDM_ATTN:
        return f"decoder.mid_block.attentions.0.{_LDM_ATTN[parts[3]]}.{parts[4]}"
    if parts[1] == "up" and len(parts) >= 5 and parts[2].isdigit():
        i = num_up_blocks - 1 - int(parts[2])
        if parts[3] == "block" and len(parts) >= 6:
            layer = parts[5].replace("nin_shortcut", "conv_shortcut")
            return f"decoder.up_blocks.{i}.resnets.{parts[4]}.{layer}." + ".".join(parts[6:])
        if parts[3] == "upsample":
            return f"decoder.up_blocks.{i}.upsamplers.0." + ".".join(parts[4:])
    return key


def is_ldm_vae_checkpoint(keys: List[str]) -> bool:
    return any(".mid.block_1." in k or ".up.0.block." in k for k in keys)


def vae_checkpoint_key(key: str) -> Optional[str]:
    """diffusers AutoencoderKL key -> VAEDecoder name; the encoder half and the (unused by FLUX) quant convs
    are not part of the decoder. A post_quant_conv in the file is refused (FLUX's VAE has none)."""
    if key.startswith("encoder.") or key.startswith("quant_conv."):
        return None
    return key


def load_vae_checkpoint(model: VAEDecoder, path: str, dtype: Optional[torch.dtype] = None) -> None:
    """Strictly loads the decoder of a diffusers AutoencoderKL checkpoint (vae/diffusion_pytorch_model.safetensors)
    or of the original FLUX layout (ae.safetensors), told apart by their key names."""
    if is_ldm_vae_checkpoint(checkpoint_keys(path)):
        n = len(model.decoder.up_blocks)
        load_checkpoint_strict(model, path, lambda k: vae_ldm_checkpoint_key(k, n), dtype)
    else:
        load_checkpoint_strict(model, path, vae_checkpoint_key, dtype)
