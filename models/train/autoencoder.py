"""The 16-channel 8x autoencoder of the default model: a training-only encoder (diffusers'
AutoencoderKL Encoder layout: conv_in, down blocks of ResnetBlock2D + stride-2 conv, mid
resnets, GroupNorm, SiLU, conv_out to mean and log-variance) and the bundle's decoder, the
unchanged models/vae.py VAEDecoder, trained together as a KL-regularised autoencoder.

After training, `latent_stats` measures the latents' mean and standard deviation; they become
the decoder config's shift_factor and scaling_factor (diffusion latents = (z - shift) * scale,
as FluxPipeline uses them), so the transformer sees unit-variance latents.
"""
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.encoder_configs import VAEDecoderConfig
from models.vae import ResnetBlock2D, VAEDecoder


class Downsample2D(nn.Module):
    """diffusers' encoder downsampler: pad (0, 1, 0, 1), 3x3 conv stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Encoder(nn.Module):
    def __init__(self, cfg: VAEDecoderConfig):
        super().__init__()
        ch = list(cfg.block_out_channels)
        g = cfg.norm_num_groups
        self.conv_in = nn.Conv2d(3, ch[0], kernel_size=3, padding=1)
        blocks: List[nn.Module] = []
        prev = ch[0]
        for i, out in enumerate(ch):
            layers: List[nn.Module] = []
            for j in range(cfg.layers_per_block):
                layers.append(ResnetBlock2D(prev if j == 0 else out, out, g))
            if i != len(ch) - 1:
                layers.append(Downsample2D(out))
            blocks.append(nn.Sequential(*layers))
            prev = out
        self.down = nn.Sequential(*blocks)
        self.mid = nn.Sequential(ResnetBlock2D(ch[-1], ch[-1], g), ResnetBlock2D(ch[-1], ch[-1], g))
        self.norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg.latent_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(x)))


class AutoEncoder(nn.Module):
    """encode(x in [-1, 1]) -> (mean, logvar) of raw latents; decode(z) -> image."""

    def __init__(self, cfg: VAEDecoderConfig):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.vae = VAEDecoder(cfg)

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decoder(z)


def autoencoder_loss(model: AutoEncoder, x: torch.Tensor, kl_weight: float,
                     generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, Dict]:
    mean, logvar = model.encode(x)
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    z = mean + torch.exp(0.5 * logvar) * eps
    rec = model.decode(z).float()
    l1 = (rec - x).abs().mean()
    mse = ((rec - x) ** 2).mean()
    kl = 0.5 * (mean.float() ** 2 + logvar.float().exp() - 1 - logvar.float()).mean()
    loss = l1 + mse + kl_weight * kl
    return loss, {"l1": float(l1.detach()), "mse": float(mse.detach()), "kl": float(kl.detach())}


def random_crops(imgs: np.ndarray, crop: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random crop x crop patches from uint8 [N, H, W, 3] images (H, W >= crop)."""
    out = np.empty((n, crop, crop, 3), np.uint8)
    idx = rng.integers(0, len(imgs), n)
    for k, i in enumerate(idx):
        h, w = imgs[i].shape[:2]
        y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        out[k] = imgs[i, y:y + crop, x:x + crop]
    return out


def scene_pools(cfg, renderer) -> Tuple[List[int], int, List[np.ndarray]]:
    """The autoencoder's scenes: (sizes vae_crop x 1, 2, 4, scenes per size, a uint8 pool of
    scenes rendered at each size)."""
    from models.train.data import seeds

    sizes = [cfg.vae_crop, 2 * cfg.vae_crop, 4 * cfg.vae_crop]
    per = max(1, cfg.vae_scenes // len(sizes))
    return sizes, per, [renderer.render(seeds("autoencoder", per, k), s, s)[0]
                        for k, s in enumerate(sizes)]


def train_autoencoder(cfg, pools: List[np.ndarray], device: str,
                      log: Callable[[str], None]) -> Tuple[AutoEncoder, List[Dict]]:
    """Train on random crops of the image pools (uint8 arrays of scenes at several
    resolutions, sampled in turn); returns the model and its loss curve."""
    from models.train.data import to_unit

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 1])
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    model = AutoEncoder(cfg.vae).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.vae_lr, betas=(0.9, 0.99),
                            weight_decay=0.0)
    curve: List[Dict] = []
    amp = cfg.amp and device.startswith("cuda")
    t0 = time.time()
    for step in range(cfg.vae_steps):
        if (time.time() - t0) / 60 > cfg.vae_max_minutes:
            log(f"autoencoder: wall-time budget of {cfg.vae_max_minutes} min reached at step "
                f"{step}")
            curve.append({"step": step, "stopped": True, "loss": curve[-1]["loss"] if curve
                          else float("nan"), "s": time.time() - t0})
            break
        lr = cfg.vae_lr * min(1.0, (step + 1) / 100) * (1 - 0.9 * step / max(1, cfg.vae_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        pool = pools[step % len(pools)]
        x = to_unit(random_crops(pool, cfg.vae_crop, cfg.vae_batch, rng)).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss, parts = autoencoder_loss(model, x, cfg.vae_kl, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.vae_steps - 1:
            curve.append({"step": step, "loss": loss.item(), **parts, "s": time.time() - t0})
            log(f"autoencoder {step}/{cfg.vae_steps} loss {loss.item():.4f} l1 {parts['l1']:.4f}"
                f" kl {parts['kl']:.1f} ({time.time() - t0:.0f} s)")
    return model.eval(), curve


@torch.no_grad()
def encode_mean(encoder: nn.Module, imgs: np.ndarray, device: str, batch: int = 32,
                amp: bool = False) -> torch.Tensor:
    """Raw latent means [N, C, H/8, W/8] (float32, on `device`) of uint8 images, by an
    autoencoder's `encoder` (AutoEncoder.encode's mean: the first half of its channels)."""
    from models.train.data import to_unit

    out = []
    for i in range(0, len(imgs), batch):
        x = to_unit(imgs[i:i + batch]).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out.append(encoder(x).chunk(2, dim=1)[0].float())
    return torch.cat(out)


def latent_stats(z: torch.Tensor) -> Tuple[float, float]:
    """(shift_factor, scaling_factor) = (mean, 1 / std) over every latent value."""
    mean = float(z.mean())
    std = float(z.std())
    return mean, 1.0 / max(std, 1e-6)


@torch.no_grad()
def reconstruction_psnr(model: AutoEncoder, imgs: np.ndarray, device: str) -> float:
    """PSNR (dB) of decode(encode mean) against the images, in 8-bit pixel units."""
    from models.train.data import to_unit

    x = to_unit(imgs).to(device)
    rec = model.decode(model.encode(x)[0]).float().clamp(-1, 1)
    mse = float(((rec - x) * 127.5).pow(2).mean())
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))
